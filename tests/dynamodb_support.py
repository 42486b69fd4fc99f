"""pytest fixtures for the DynamoDB engine, on moto's server mode (scripts/moto_server.py).

Registered for the whole suite in tests/conftest.py; nothing here imports aioboto3 or
starts a process until a test asks for a fixture.

- ``moto_server`` (session): one ``python -m moto.server`` on 127.0.0.1 and a free port
  for the whole test session, started the first time a test needs it, stopped at the
  end. Dummy credentials only.
- ``dynamo_settings`` (function): a ``DynamoDBSettings`` on that server with a table
  prefix unique to the test (``t<hex>-``); no tables yet.
- ``dynamo`` (function, async): an open ``DynamoClient`` on ``dynamo_settings`` with the
  tables created (and deleted afterwards). Its meter starts at zero after the set-up.
  Options: ``client_options_for_tests()`` (no SDK retries, millisecond backoff).

Use them in a test marked ``integration`` and ``dynamodb``::

    pytestmark = [pytest.mark.integration, pytest.mark.dynamodb]

    async def test_something(dynamo):
        await dynamo.put_item(dynamo.tables.write, {...})

``open_test_client(settings, ...)`` opens another client on the same tables (close it).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator

import pytest

if TYPE_CHECKING:
    from infrastructure.config import DynamoDBSettings
    from infrastructure.persistence.dynamodb.client import ClientOptions, DynamoClient
    from scripts.moto_server import MotoServer


def client_options_for_tests(**overrides: Any) -> "ClientOptions":
    """Options for tests: no SDK retries (moto never throttles; an injected fault should
    surface at once) and unprocessed-key retries with millisecond backoff."""
    from dataclasses import replace

    from infrastructure.persistence.dynamodb.client import ClientOptions, RetryPolicy

    base = ClientOptions(sdk_max_attempts=1, unprocessed_retry=RetryPolicy(max_attempts=4, base_delay=0.001,
                                                                           max_delay=0.005))
    return replace(base, **overrides)


async def open_test_client(settings: "DynamoDBSettings", options: "ClientOptions | None" = None) -> "DynamoClient":
    """A client with the dummy credentials (never the environment's)."""
    from infrastructure.persistence.dynamodb.client import DynamoClient
    from scripts.moto_server import DUMMY_CREDENTIALS

    return await DynamoClient.open(settings, options=options or client_options_for_tests(),
                                   credentials=DUMMY_CREDENTIALS)


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}-"


@pytest.fixture(scope="session")
def moto_server() -> Iterator["MotoServer"]:
    from scripts.moto_server import MotoServer

    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dynamo_settings(moto_server: "MotoServer") -> "DynamoDBSettings":
    return moto_server.settings(prefix=unique_prefix())


@pytest.fixture
async def dynamo(dynamo_settings: "DynamoDBSettings") -> AsyncIterator["DynamoClient"]:
    from infrastructure.persistence.dynamodb.admin import create_tables, delete_tables

    client = await open_test_client(dynamo_settings)
    try:
        await create_tables(client)
        client.meter.reset()
        yield client
        await delete_tables(client)
    finally:
        await client.close()
