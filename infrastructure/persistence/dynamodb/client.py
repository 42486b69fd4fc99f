"""``DynamoClient``: the one DynamoDB client of a process, that every adapter calls.

A thin, typed wrapper around ONE aioboto3 low-level client (``session.client("dynamodb")``,
no resource layer). Items and keys are in the wire format (``attributes.Item``). Every
call:

- passes ``ReturnConsumedCapacity="TOTAL"`` (where the operation takes it) and records the
  call and its capacity in ``meter`` and in the caller's ``capacity_scope()``;
- maps every failure to a domain error or a ``DynamoOutcome`` (see ``errors``) — no
  botocore exception type or AWS message leaves this module (messages are logged at
  DEBUG, exceptions are raised ``from None``).

Retries: botocore's "standard" retry mode retries throttling, 5xx and connection errors
inside one call (``ClientOptions.sdk_max_attempts`` attempts in total, with its own retry
quota); ``batch_get`` / ``batch_write`` retry unprocessed keys/items themselves (
``ClientOptions.unprocessed_retry``, exponential backoff with full jitter). Whatever is
still failing after that is ``Unavailable`` (retryable by the caller). The RPC-level retry
budget and circuit breaker of DESIGN §7 sit above this module.

Lifecycle::

    async with await DynamoClient.open(settings.dynamodb) as client:
        await client.check_tables()          # one-line Unavailable if unusable
        items = await client.batch_get(client.tables.read, keys)
"""

from __future__ import annotations

import asyncio
import logging
import random
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Awaitable, Literal, Mapping, Sequence, TypeVar

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from deploy.dynamodb.tables import LOG_TABLE, READ_TABLE, TABLES, WRITE_TABLE, Table
from domain.errors import Internal, Reason, Unavailable, ValidationFailed

from infrastructure.config import DynamoDBSettings
from infrastructure.persistence.dynamodb.attributes import AttributeValue, Item, Key, key_tuple
from infrastructure.persistence.dynamodb.capacity import CapacityMeter
from infrastructure.persistence.dynamodb.errors import (
    NO_REASON,
    RETRYABLE_CANCELLATION_CODES,
    CancellationReason,
    ConditionFailed,
    TransactionCancelled,
)

log = logging.getLogger(__name__)

# DynamoDB's own limits.
MAX_BATCH_GET_KEYS = 100
MAX_BATCH_WRITE_ITEMS = 25
MAX_TRANSACTION_ITEMS = 100

# Error codes (ClientError.response["Error"]["Code"]) that mean "try again later".
RETRYABLE_ERROR_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "Throttling", "RequestLimitExceeded",
    "TransactionConflictException", "TransactionInProgressException", "InternalServerError",
    "InternalFailure", "ServiceUnavailable", "LimitExceededException",
})
# Codes that mean the store cannot be used as configured (credentials, tables).
UNUSABLE_ERROR_CODES = frozenset({
    "ResourceNotFoundException", "AccessDeniedException", "UnrecognizedClientException",
    "InvalidSignatureException", "MissingAuthenticationToken", "MissingAuthenticationTokenException",
    "ExpiredTokenException", "IncompleteSignature", "IncompleteSignatureException", "InvalidClientTokenId",
})

T = TypeVar("T")
ReturnValues = Literal["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: before retry ``n`` (1, 2, ...) sleep a random
    time in [0, min(max_delay, base_delay * 2**n)]; at most ``max_attempts`` calls."""

    max_attempts: int = 6
    base_delay: float = 0.025
    max_delay: float = 1.0

    def delay(self, retry: int) -> float:
        return random.uniform(0.0, min(self.max_delay, self.base_delay * (2 ** retry)))


@dataclass(frozen=True)
class ClientOptions:
    """Tuning of one ``DynamoClient``; the defaults suit a service process."""

    # BatchGetItem / BatchWriteItem requests one batch call runs at once
    batch_concurrency: int = 8
    # Query requests one ``gather_bounded`` call runs at once (a BFS frontier's adjacency
    # reads); keep it <= max_pool_connections
    query_concurrency: int = 32
    # retries of UnprocessedKeys / UnprocessedItems
    unprocessed_retry: RetryPolicy = field(default_factory=RetryPolicy)
    # botocore "standard" mode: attempts per call in total (1 = no SDK retry)
    sdk_max_attempts: int = 3
    connect_timeout: float = 2.0
    read_timeout: float = 10.0
    # HTTP connections kept to the endpoint (botocore's default of 10 would queue a
    # traversal level's concurrent reads)
    max_pool_connections: int = 64


@dataclass(frozen=True)
class StaticCredentials:
    """Fixed credentials, for tests and local stand-ins (moto, DynamoDB Local) only.
    Services use the AWS default chain (``DynamoClient.open`` without credentials)."""

    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:
        return "StaticCredentials(<hidden>)"


@dataclass(frozen=True)
class TableNames:
    """The full names of Edgewise's tables for a prefix (deploy/dynamodb/tables.py)."""

    write: str
    read: str
    log: str

    @classmethod
    def for_prefix(cls, prefix: str) -> "TableNames":
        by_suffix = {table.suffix: table.name(prefix) for table in TABLES}
        return cls(write=by_suffix[WRITE_TABLE], read=by_suffix[READ_TABLE], log=by_suffix[LOG_TABLE])


@dataclass(frozen=True)
class Page:
    """One page of a Query or Scan; ``last_key`` is None on the last page."""

    items: list[Item]
    last_key: Key | None
    count: int = 0  # items matched (after a filter); with select_count only this is set


def _projection(names: Sequence[str] | None, expression_names: dict[str, str]) -> dict[str, Any]:
    """ProjectionExpression params for top-level attribute names; pk and sk are always
    included so a caller can tell which key each item answers."""
    if names is None:
        return {}
    placeholders = []
    for i, name in enumerate(dict.fromkeys(["pk", "sk", *names])):
        placeholder = f"#_p{i}"
        expression_names[placeholder] = name
        placeholders.append(placeholder)
    return {"ProjectionExpression": ", ".join(placeholders)}


def _expression_params(condition: str | None, names: Mapping[str, str] | None,
                       values: Mapping[str, AttributeValue] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if condition is not None:
        params["ConditionExpression"] = condition
    if names:
        params["ExpressionAttributeNames"] = dict(names)
    if values:
        params["ExpressionAttributeValues"] = dict(values)
    return params


class DynamoClient:
    """One per process. Create with ``await DynamoClient.open(...)``; close with
    ``await client.close()`` or ``async with``. Safe for concurrent use by many tasks
    of one event loop."""

    def __init__(self, raw: Any, stack: AsyncExitStack, settings: DynamoDBSettings, options: ClientOptions,
                 meter: CapacityMeter) -> None:
        """Use ``open``."""
        self._client = raw
        self._stack = stack
        self.settings = settings
        self.options = options
        self.meter = meter
        self.tables = TableNames.for_prefix(settings.table_prefix)
        self._closed = False

    @classmethod
    async def open(cls, settings: DynamoDBSettings, *, options: ClientOptions | None = None,
                   meter: CapacityMeter | None = None,
                   credentials: StaticCredentials | None = None) -> "DynamoClient":
        """Create the client (no network call yet: ``check_tables`` is the start-up check)."""
        options = options or ClientOptions()
        if credentials is None:
            session = aioboto3.Session(region_name=settings.region)
        else:
            session = aioboto3.Session(aws_access_key_id=credentials.access_key_id,
                                       aws_secret_access_key=credentials.secret_access_key,
                                       region_name=settings.region)
        config = AioConfig(connect_timeout=options.connect_timeout, read_timeout=options.read_timeout,
                           max_pool_connections=options.max_pool_connections,
                           retries={"mode": "standard", "total_max_attempts": max(1, options.sdk_max_attempts)})
        stack = AsyncExitStack()
        try:
            raw = await stack.enter_async_context(session.client(
                "dynamodb", region_name=settings.region, endpoint_url=settings.endpoint or None, config=config))
        except Exception as exc:  # e.g. an endpoint URL botocore refuses
            await stack.aclose()
            raise Unavailable(f"cannot create a DynamoDB client for {settings.describe_endpoint()}: "
                              f"{type(exc).__name__}", reason=Reason.STORAGE_UNAVAILABLE) from None
        return cls(raw, stack, settings, options, meter or CapacityMeter())

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._stack.aclose()

    async def __aenter__(self) -> "DynamoClient":
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # --- the one place a request is sent ------------------------------------------------

    async def _call(self, operation: str, method: str, params: dict[str, Any], *,
                    metered: bool = True) -> dict[str, Any]:
        """Send one request; record it; map every failure."""
        if metered:
            params["ReturnConsumedCapacity"] = "TOTAL"
        consumed: Any = None
        try:
            response: dict[str, Any] = await getattr(self._client, method)(**params)
            consumed = response.get("ConsumedCapacity")
            return response
        except ClientError as exc:
            raise self._client_error(operation, exc) from None
        except (BotoConnectionError, HTTPClientError, OSError, asyncio.TimeoutError) as exc:
            log.debug("DynamoDB %s: %s: %s", operation, type(exc).__name__, exc)
            raise Unavailable(f"DynamoDB at {self.settings.describe_endpoint()} is unreachable "
                              f"({operation}: {type(exc).__name__})", reason=Reason.STORAGE_UNAVAILABLE,
                              metadata={"operation": operation}) from None
        except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
            raise Unavailable(f"DynamoDB {operation}: no usable AWS credentials ({type(exc).__name__}); the "
                              "default chain reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a role",
                              reason=Reason.STORAGE_UNAVAILABLE, metadata={"operation": operation}) from None
        except BotoCoreError as exc:  # ParamValidationError and the like: a request we built wrong
            log.debug("DynamoDB %s: %s: %s", operation, type(exc).__name__, exc)
            raise Internal(f"DynamoDB {operation} failed ({type(exc).__name__})",
                           metadata={"operation": operation}) from None
        finally:
            self.meter.record(operation, consumed)

    def _client_error(self, operation: str, exc: Any) -> Exception:
        response: dict[str, Any] = getattr(exc, "response", None) or {}
        error = response.get("Error") or {}
        code = str(error.get("Code") or "Unknown")
        status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        log.debug("DynamoDB %s: %s (HTTP %s): %s", operation, code, status, error.get("Message"))
        metadata = {"operation": operation, "code": code}
        if code == "ConditionalCheckFailedException":
            return ConditionFailed(operation, response.get("Item"))
        if code == "TransactionCanceledException":
            return self._cancelled(operation, response.get("CancellationReasons") or [])
        if code in RETRYABLE_ERROR_CODES or status >= 500:
            return Unavailable(f"DynamoDB {operation}: {code}, retry later", reason=Reason.STORAGE_UNAVAILABLE,
                               metadata=metadata)
        if code in UNUSABLE_ERROR_CODES:
            what = "a table does not exist" if code == "ResourceNotFoundException" else "access refused"
            return Unavailable(f"DynamoDB {operation} at {self.settings.describe_endpoint()}: {code} ({what})",
                               reason=Reason.STORAGE_UNAVAILABLE, metadata=metadata)
        return Internal(f"DynamoDB refused {operation} ({code})", metadata=metadata)

    def _cancelled(self, operation: str, raw_reasons: list[Any]) -> Exception:
        reasons = [CancellationReason(index=i, code=str((r or {}).get("Code") or NO_REASON),
                                      item=(r or {}).get("Item"))
                   for i, r in enumerate(raw_reasons)]
        failing = {r.code for r in reasons if r.code != NO_REASON}
        if failing and failing <= RETRYABLE_CANCELLATION_CODES:
            return Unavailable(f"DynamoDB {operation} cancelled: {', '.join(sorted(failing))}, retry later",
                               reason=Reason.STORAGE_UNAVAILABLE,
                               metadata={"operation": operation, "code": ",".join(sorted(failing))})
        return TransactionCancelled(reasons)

    # --- single items ---------------------------------------------------------------------

    async def get_item(self, table: str, key: Key, *, projection: Sequence[str] | None = None,
                       consistent: bool = False) -> Item | None:
        names: dict[str, str] = {}
        params: dict[str, Any] = {"TableName": table, "Key": key, "ConsistentRead": consistent,
                                  **_projection(projection, names)}
        if names:
            params["ExpressionAttributeNames"] = names
        response = await self._call("GetItem", "get_item", params)
        item: Item | None = response.get("Item")
        return item

    async def put_item(self, table: str, item: Item, *, condition: str | None = None,
                       names: Mapping[str, str] | None = None, values: Mapping[str, AttributeValue] | None = None,
                       return_old_on_failure: bool = False) -> None:
        """Put ``item``; ConditionFailed when ``condition`` is false (with the stored item
        when ``return_old_on_failure``)."""
        params: dict[str, Any] = {"TableName": table, "Item": item, **_expression_params(condition, names, values)}
        if return_old_on_failure:
            params["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        await self._call("PutItem", "put_item", params)

    async def update_item(self, table: str, key: Key, *, update: str, condition: str | None = None,
                          names: Mapping[str, str] | None = None, values: Mapping[str, AttributeValue] | None = None,
                          return_values: ReturnValues = "NONE", return_old_on_failure: bool = False) -> Item | None:
        """Apply ``update`` (an UpdateExpression); returns the attributes ``return_values`` asks for."""
        params: dict[str, Any] = {"TableName": table, "Key": key, "UpdateExpression": update,
                                  "ReturnValues": return_values, **_expression_params(condition, names, values)}
        if return_old_on_failure:
            params["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        response = await self._call("UpdateItem", "update_item", params)
        attributes: Item | None = response.get("Attributes")
        return attributes

    async def delete_item(self, table: str, key: Key, *, condition: str | None = None,
                          names: Mapping[str, str] | None = None, values: Mapping[str, AttributeValue] | None = None,
                          return_old: bool = False, return_old_on_failure: bool = False) -> Item | None:
        """Delete the item; returns it when ``return_old`` (None when there was none)."""
        params: dict[str, Any] = {"TableName": table, "Key": key, "ReturnValues": "ALL_OLD" if return_old else "NONE",
                                  **_expression_params(condition, names, values)}
        if return_old_on_failure:
            params["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        response = await self._call("DeleteItem", "delete_item", params)
        attributes: Item | None = response.get("Attributes")
        return attributes

    # --- ranges -------------------------------------------------------------------------------

    async def query(self, table: str, *, key_condition: str, values: Mapping[str, AttributeValue],
                    names: Mapping[str, str] | None = None, index: str | None = None,
                    filter: str | None = None, projection: Sequence[str] | None = None,
                    limit: int | None = None, forward: bool = True, consistent: bool = False,
                    start_key: Key | None = None, select_count: bool = False) -> Page:
        """One Query page. ``limit`` bounds the items *evaluated* (before ``filter``), as in
        DynamoDB; a page may also end at 1 MB. ``projection`` names top-level attributes."""
        expression_names = dict(names or {})
        params: dict[str, Any] = {"TableName": table, "KeyConditionExpression": key_condition,
                                  "ExpressionAttributeValues": dict(values), "ScanIndexForward": forward,
                                  "ConsistentRead": consistent}
        if select_count:
            params["Select"] = "COUNT"
        else:
            params.update(_projection(projection, expression_names))
        if expression_names:
            params["ExpressionAttributeNames"] = expression_names
        if index is not None:
            params["IndexName"] = index
        if filter is not None:
            params["FilterExpression"] = filter
        if limit is not None:
            params["Limit"] = limit
        if start_key is not None:
            params["ExclusiveStartKey"] = start_key
        response = await self._call("Query", "query", params)
        items: list[Item] = response.get("Items", [])
        return Page(items=items, last_key=response.get("LastEvaluatedKey"), count=int(response.get("Count", 0)))

    async def query_all(self, table: str, *, key_condition: str, values: Mapping[str, AttributeValue],
                        names: Mapping[str, str] | None = None, index: str | None = None,
                        filter: str | None = None, projection: Sequence[str] | None = None,
                        forward: bool = True, consistent: bool = False, max_items: int | None = None,
                        page_size: int | None = None) -> list[Item]:
        """Follow LastEvaluatedKey until the range (or ``max_items`` matching items) is read."""
        items: list[Item] = []
        start: Key | None = None
        while True:
            remaining = None if max_items is None else max_items - len(items)
            limit = page_size if remaining is None else min(remaining, page_size or remaining)
            page = await self.query(table, key_condition=key_condition, values=values, names=names, index=index,
                                    filter=filter, projection=projection, limit=limit, forward=forward,
                                    consistent=consistent, start_key=start)
            items.extend(page.items)
            start = page.last_key
            if start is None or (max_items is not None and len(items) >= max_items):
                return items[:max_items] if max_items is not None else items

    async def scan(self, table: str, *, filter: str | None = None, names: Mapping[str, str] | None = None,
                   values: Mapping[str, AttributeValue] | None = None, projection: Sequence[str] | None = None,
                   index: str | None = None, limit: int | None = None, start_key: Key | None = None,
                   consistent: bool = False, segment: int | None = None,
                   total_segments: int | None = None) -> Page:
        """One Scan page (tools, tests, rebuilds — never a request path)."""
        expression_names = dict(names or {})
        params: dict[str, Any] = {"TableName": table, "ConsistentRead": consistent,
                                  **_projection(projection, expression_names)}
        if expression_names:
            params["ExpressionAttributeNames"] = expression_names
        if values:
            params["ExpressionAttributeValues"] = dict(values)
        if filter is not None:
            params["FilterExpression"] = filter
        if index is not None:
            params["IndexName"] = index
        if limit is not None:
            params["Limit"] = limit
        if start_key is not None:
            params["ExclusiveStartKey"] = start_key
        if segment is not None and total_segments is not None:
            params.update(Segment=segment, TotalSegments=total_segments)
        response = await self._call("Scan", "scan", params)
        items: list[Item] = response.get("Items", [])
        return Page(items=items, last_key=response.get("LastEvaluatedKey"), count=int(response.get("Count", 0)))

    # --- batches ------------------------------------------------------------------------------

    async def batch_get(self, table: str, keys: Sequence[Key], *, projection: Sequence[str] | None = None,
                        consistent: bool = False) -> list[Item]:
        """The items that exist among ``keys``, in no particular order (match them by
        ``attributes.key_tuple``). Duplicate keys are read once; chunks of <= 100 keys run
        ``options.batch_concurrency`` at a time; UnprocessedKeys are retried with backoff
        and full jitter, then Unavailable."""
        unique = list({key_tuple(key): key for key in keys}.values())
        if not unique:
            return []
        chunks = [unique[i:i + MAX_BATCH_GET_KEYS] for i in range(0, len(unique), MAX_BATCH_GET_KEYS)]
        names: dict[str, str] = {}
        request: dict[str, Any] = {"ConsistentRead": consistent, **_projection(projection, names)}
        if names:
            request["ExpressionAttributeNames"] = names
        results = await self._bounded([self._batch_get_chunk(table, chunk, request) for chunk in chunks])
        return [item for chunk_items in results for item in chunk_items]

    async def _batch_get_chunk(self, table: str, keys: list[Key], request: dict[str, Any]) -> list[Item]:
        items: list[Item] = []
        pending: dict[str, Any] = {table: {**request, "Keys": keys}}
        policy = self.options.unprocessed_retry
        attempt = 1
        while True:
            response = await self._call("BatchGetItem", "batch_get_item", {"RequestItems": pending})
            items.extend((response.get("Responses") or {}).get(table, []))
            unprocessed = response.get("UnprocessedKeys") or {}
            left = len((unprocessed.get(table) or {}).get("Keys") or [])
            if not left:
                return items
            if attempt >= policy.max_attempts:
                raise Unavailable(f"DynamoDB BatchGetItem: {left} of {len(keys)} keys still unprocessed after "
                                  f"{attempt} attempts (throttled), retry later", reason=Reason.STORAGE_UNAVAILABLE,
                                  metadata={"operation": "BatchGetItem", "unprocessed": str(left)})
            await asyncio.sleep(policy.delay(attempt))
            attempt += 1
            pending = {table: {**request, "Keys": unprocessed[table]["Keys"]}}

    async def batch_write(self, table: str, *, puts: Sequence[Item] = (), deletes: Sequence[Key] = ()) -> None:
        """Put and delete items, not atomically (each item is), in chunks of <= 25 run
        ``options.batch_concurrency`` at a time; UnprocessedItems are retried like
        ``batch_get``'s keys. A key may appear once only (ValueError otherwise)."""
        requests: list[dict[str, Any]] = [{"PutRequest": {"Item": item}} for item in puts]
        requests += [{"DeleteRequest": {"Key": key}} for key in deletes]
        seen: set[tuple[str, str]] = set()
        for key in [*puts, *deletes]:
            identity = key_tuple(key)
            if identity in seen:
                raise ValueError(f"batch_write: key {identity} appears twice")
            seen.add(identity)
        chunks = [requests[i:i + MAX_BATCH_WRITE_ITEMS] for i in range(0, len(requests), MAX_BATCH_WRITE_ITEMS)]
        await self._bounded([self._batch_write_chunk(table, chunk) for chunk in chunks])

    async def _batch_write_chunk(self, table: str, requests: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {table: requests}
        policy = self.options.unprocessed_retry
        attempt = 1
        while True:
            response = await self._call("BatchWriteItem", "batch_write_item", {"RequestItems": pending})
            unprocessed = response.get("UnprocessedItems") or {}
            left = len(unprocessed.get(table) or [])
            if not left:
                return
            if attempt >= policy.max_attempts:
                raise Unavailable(f"DynamoDB BatchWriteItem: {left} of {len(requests)} items still unprocessed "
                                  f"after {attempt} attempts (throttled), retry later",
                                  reason=Reason.STORAGE_UNAVAILABLE,
                                  metadata={"operation": "BatchWriteItem", "unprocessed": str(left)})
            await asyncio.sleep(policy.delay(attempt))
            attempt += 1
            pending = {table: unprocessed[table]}

    async def gather_bounded(self, calls: Sequence[Awaitable[T]], *, concurrency: int | None = None) -> list[T]:
        """Run independent calls (e.g. one ``query_all`` per frontier node) at most
        ``concurrency`` (default ``options.query_concurrency``) at a time; results in
        order. The first failure cancels the rest and is raised as is."""
        return await self._bounded(list(calls), concurrency or self.options.query_concurrency)

    async def _bounded(self, calls: list[Awaitable[T]], concurrency: int | None = None) -> list[T]:
        """Run ``calls`` at most ``concurrency`` (default ``options.batch_concurrency``) at
        a time; the first failure cancels the rest and is raised as is."""
        if not calls:
            return []
        if len(calls) == 1:
            return [await calls[0]]
        semaphore = asyncio.Semaphore(max(1, concurrency or self.options.batch_concurrency))

        async def limited(call: Awaitable[T]) -> T:
            async with semaphore:
                return await call

        tasks = [asyncio.ensure_future(limited(call)) for call in calls]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    # --- transactions ---------------------------------------------------------------------

    async def transact_write(self, items: Sequence[Mapping[str, Any]], *, client_token: str | None = None) -> None:
        """One TransactWriteItems: every item lands or none does.

        ``items`` are TransactItems in the low-level shape (``{"Put": {...}}``,
        ``{"Update": ...}``, ``{"Delete": ...}``, ``{"ConditionCheck": ...}``, each with its
        ``TableName``). More than 100 is refused with ValidationFailed (BATCH_TOO_LARGE,
        INVALID_ARGUMENT) before any call: DESIGN §3 never splits a unit of work. Two items
        on one key are refused by DynamoDB (Internal): merge them first. A condition that
        fails raises TransactionCancelled with per-item reasons; a cancellation only for
        conflicts or throttling raises Unavailable. ``client_token`` makes a retry within
        10 minutes idempotent (ClientRequestToken)."""
        if len(items) > MAX_TRANSACTION_ITEMS:
            raise ValidationFailed(
                f"this change needs {len(items)} storage writes; one transaction holds at most "
                f"{MAX_TRANSACTION_ITEMS}: send it in smaller batches", reason=Reason.BATCH_TOO_LARGE,
                metadata={"items": str(len(items)), "limit": str(MAX_TRANSACTION_ITEMS)})
        if not items:
            return
        params: dict[str, Any] = {"TransactItems": [dict(item) for item in items]}
        if client_token is not None:
            params["ClientRequestToken"] = client_token
        await self._call("TransactWriteItems", "transact_write_items", params)

    async def transact_get(self, gets: Sequence[tuple[str, Key]]) -> list[Item | None]:
        """One TransactGetItems (<= 100 (table, key) pairs): a serialisable snapshot of the
        items, in request order (None where absent)."""
        if len(gets) > MAX_TRANSACTION_ITEMS:
            raise ValidationFailed(f"at most {MAX_TRANSACTION_ITEMS} items in one transactional read, "
                                   f"got {len(gets)}", reason=Reason.BATCH_TOO_LARGE)
        if not gets:
            return []
        response = await self._call("TransactGetItems", "transact_get_items",
                                    {"TransactItems": [{"Get": {"TableName": t, "Key": k}} for t, k in gets]})
        return [r.get("Item") for r in response.get("Responses", [])]

    # --- tables (control plane) ---------------------------------------------------------

    async def describe_table(self, name: str) -> dict[str, Any] | None:
        """The table's description, or None when it does not exist."""
        try:
            response = await self._call("DescribeTable", "describe_table", {"TableName": name}, metered=False)
        except Unavailable as exc:
            if exc.metadata.get("code") == "ResourceNotFoundException":
                return None
            raise
        table: dict[str, Any] = response["Table"]
        return table

    async def create_table(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """CreateTable with a deploy/dynamodb/tables.py input; returns the description."""
        response = await self._call("CreateTable", "create_table", dict(request), metered=False)
        table: dict[str, Any] = response["TableDescription"]
        return table

    async def delete_table(self, name: str) -> bool:
        """Delete the table; False when it did not exist."""
        try:
            await self._call("DeleteTable", "delete_table", {"TableName": name}, metered=False)
        except Unavailable as exc:
            if exc.metadata.get("code") == "ResourceNotFoundException":
                return False
            raise
        return True

    async def time_to_live(self, name: str) -> dict[str, Any]:
        """DescribeTimeToLive's description (TimeToLiveStatus, AttributeName)."""
        response = await self._call("DescribeTimeToLive", "describe_time_to_live", {"TableName": name}, metered=False)
        description: dict[str, Any] = response.get("TimeToLiveDescription") or {}
        return description

    async def enable_time_to_live(self, name: str, attribute: str) -> None:
        await self._call("UpdateTimeToLive", "update_time_to_live",
                         {"TableName": name, "TimeToLiveSpecification": {"Enabled": True, "AttributeName": attribute}},
                         metered=False)

    async def check_tables(self, tables: Sequence[Table] = TABLES) -> None:
        """The start-up check: every table exists, is ACTIVE and has its indexes.
        Raises Unavailable with ONE line saying what is wrong and how to fix it."""
        endpoint = self.settings.describe_endpoint()
        endpoint_flag = f" --endpoint {self.settings.endpoint}" if self.settings.endpoint else ""
        fix = (f"create them with: python -m cli tables create{endpoint_flag} "
               f"--region {self.settings.region} --prefix {self.settings.table_prefix}")
        missing: list[str] = []
        problems: list[str] = []
        for table in tables:
            name = table.name(self.settings.table_prefix)
            try:
                description = await self.describe_table(name)
            except Unavailable as exc:
                raise Unavailable(f"cannot check the DynamoDB tables: {exc.message}",
                                  reason=Reason.STORAGE_UNAVAILABLE, metadata=exc.metadata) from None
            if description is None:
                missing.append(name)
                continue
            status = description.get("TableStatus")
            if status != "ACTIVE":
                problems.append(f"{name} is {status}")
            present = {index.get("IndexName") for index in description.get("GlobalSecondaryIndexes") or []}
            absent = [index.name for index in table.indexes if index.name not in present]
            if absent:
                problems.append(f"{name} lacks index {', '.join(absent)}")
        if missing:
            problems.insert(0, f"missing table{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        if problems:
            raise Unavailable(f"DynamoDB tables at {endpoint} are not ready: {'; '.join(problems)} ({fix})",
                              reason=Reason.STORAGE_UNAVAILABLE,
                              metadata={"endpoint": endpoint, "missing": ",".join(missing)})
