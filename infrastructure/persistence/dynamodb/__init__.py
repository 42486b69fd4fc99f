"""The DynamoDB storage engine (EDGEWISE_STORE=dynamodb), through aioboto3's low-level client.

- ``attributes``: the item format every module uses — the low-level wire format
  (``{"S": "..."}``, ``{"N": "42"}``), never boto3's TypeSerializer/Decimal — and small
  typed constructors/getters.
- ``keys``: the one spelling of every pk/sk string, GSI key and value encoding (ADR 0009).
- ``client``: ``DynamoClient``, one per process: metered, error-mapped calls,
  ``batch_get`` / ``batch_write`` / ``transact_write`` with the retry rules of DESIGN §4-5.
- ``capacity``: ``CapacityMeter`` and the per-RPC ``capacity_scope()``.
- ``errors``: what a call raises besides domain errors (``ConditionFailed``,
  ``TransactionCancelled``) for an adapter to map to the domain's errors.
- ``admin``: create / check / delete the tables of deploy/dynamodb/tables.py.

The write side (command service, ADR 0009 "The write side"):

- ``write_store``: ``DynamoWriteStore`` and ``DynamoUnitOfWork`` — consistent reads,
  staged changes, ONE TransactWriteItems per commit (retried only when the log head moved).
- ``write_repositories``: schema, node, edge, idempotency and cascade-job repositories:
  identity maps, staging, the item codecs and each item's condition.
- ``transaction``: ``TransactionBuilder`` and ``Guard`` (item index -> the domain error
  its failed condition means).
- ``event_log``: ``DynamoEventLog`` — per-graph shards of commit records.

The read side (query service, ADR 0012):

- ``read_items``: the read table's item layouts (node views, edge views, adjacency heads,
  directories and sealed chunks, schema views, checkpoints, leases; ADR 0012).
- ``read_model``: ``DynamoReadModel``, the query side's ReadModel port.
- ``projection``: ``DynamoProjectionStore``, the projector's writer (ProjectionStore port).
- ``lease``: ``DynamoProjectionLease``, one projecting process per shard (ProjectionLease port).
"""
