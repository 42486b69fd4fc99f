"""Composition root of the command service: the ONLY place adapters are chosen.

Runs inside the event loop (never at import): ``await bootstrap(settings)``.
``build_for_tests`` is the same wiring with whatever store, clock and ids a test
brings (in-memory fakes or a real SQLite file).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from domain.ports import Clock, IdGenerator
from infrastructure.config import Settings
from infrastructure.persistence.sqlite.write_store import SqliteWriteStore
from infrastructure.system import SystemClock, Uuid4Ids
from infrastructure.tokens import TokenSigner

from command_service.app.bus import CommandBus, Idempotent, Logged
from command_service.app.cascade import CascadeWorker, idempotency_purger
from command_service.app.codec import ResultCodec
from command_service.app.commands.add_edge import AddEdge, AddEdgeHandler
from command_service.app.commands.apply_schema import ApplySchema, ApplySchemaHandler
from command_service.app.commands.batch_write import BatchOperationHandler, BatchWrite, BatchWriteHandler
from command_service.app.commands.create_node import CreateNode, CreateNodeHandler
from command_service.app.commands.delete_node import DeleteNode, DeleteNodeHandler
from command_service.app.commands.remove_edge import RemoveEdge, RemoveEdgeHandler
from command_service.app.commands.update_node import UpdateNode, UpdateNodeHandler
from command_service.app.common import CommandHandler, TransactionLimits
from command_service.app.consistency import SignedConsistencyTokens
from command_service.app.ports import WriteStore

IDEMPOTENCY_RETENTION = timedelta(hours=48)  # AIP-155 asks for at least 24 h


class RegisteredHandler(CommandHandler[Any, Any], Protocol):
    """What the registry holds: a use case that names its result type (the idempotency
    codec decodes stored responses into it). Keyed by command type, so ``Any`` here."""

    @property
    def result_type(self) -> type: ...


class SingleOperationHandler(BatchOperationHandler[Any, Any], RegisteredHandler, Protocol):
    """A use case that is both its own RPC and an operation of a BatchWrite."""


def command_handlers(ids: IdGenerator, limits: TransactionLimits) -> dict[type, RegisteredHandler]:
    """The registry: a new command is a new module plus one line here."""
    single: dict[type, SingleOperationHandler] = {
        CreateNode: CreateNodeHandler(ids),
        UpdateNode: UpdateNodeHandler(),
        DeleteNode: DeleteNodeHandler(limits),
        AddEdge: AddEdgeHandler(limits),
        RemoveEdge: RemoveEdgeHandler(),
    }
    return {
        ApplySchema: ApplySchemaHandler(),
        **single,
        BatchWrite: BatchWriteHandler(single, limits),
    }


@dataclass
class CommandApplication:
    bus: CommandBus
    store: WriteStore
    cascade_worker: CascadeWorker
    tokens: SignedConsistencyTokens

    async def dispatch(self, command: Any) -> Any:
        result = await self.bus.dispatch(command)
        if getattr(result, "cascade_pending", False):
            self.cascade_worker.wake()
        return result

    def start(self) -> None:
        self.cascade_worker.start()

    async def close(self) -> None:
        await self.cascade_worker.stop()
        await self.store.close()


def build_application(*, store: WriteStore, clock: Clock, ids: IdGenerator, signer: TokenSigner,
                      limits: TransactionLimits = TransactionLimits(),
                      cascade_poll_interval: float = 0.5) -> CommandApplication:
    handlers = command_handlers(ids, limits)
    codec = ResultCodec(h.result_type for h in handlers.values())
    tokens = SignedConsistencyTokens(signer)
    bus = CommandBus(
        handlers=handlers, uow_factory=store.unit_of_work, clock=clock, ids=ids, tokens=tokens,
        # innermost first: Idempotent runs inside the transaction, Logged around it
        decorators=(lambda h: Idempotent(h, codec, tokens), lambda h: Logged(h)),
    )
    worker = CascadeWorker(store.unit_of_work, clock, ids, batch_size=limits.max_edges_per_transaction,
                           poll_interval=cascade_poll_interval,
                           housekeeping=idempotency_purger(store.purge_idempotency, clock, IDEMPOTENCY_RETENTION))
    return CommandApplication(bus=bus, store=store, cascade_worker=worker, tokens=tokens)


async def open_store(settings: Settings) -> WriteStore:
    """The write store ``EDGEWISE_STORE`` names (the only place an engine is chosen)."""
    if settings.store == "dynamodb":
        # imported only when chosen: a SQLite process never loads the AWS SDK
        from infrastructure.persistence.dynamodb.client import DynamoClient
        from infrastructure.persistence.dynamodb.write_store import DynamoWriteStore

        client = await DynamoClient.open(settings.dynamodb)
        try:
            await client.check_tables()  # unreachable endpoint, missing tables: one clear line
        except BaseException:
            await client.close()
            raise
        return DynamoWriteStore(client, owns_client=True)
    return await SqliteWriteStore.open(settings.db_path)


async def bootstrap(settings: Settings) -> CommandApplication:
    store = await open_store(settings)
    # One transaction's edge budget is the store's: 100 edge rows on SQLite, ~25 edges
    # (each several items) in DynamoDB's 100-item TransactWriteItems.
    return build_application(store=store, clock=SystemClock(), ids=Uuid4Ids(),
                             signer=TokenSigner(settings.token_secret),
                             limits=TransactionLimits(max_edges_per_transaction=store.max_edges_per_transaction,
                                                      max_cycle_check_nodes=settings.cycle_check_max_nodes))


def build_for_tests(store: WriteStore, *, clock: Clock | None = None, ids: IdGenerator | None = None,
                    secret: bytes = b"edgewise-test-secret-0123456789",
                    limits: TransactionLimits = TransactionLimits(),
                    cascade_poll_interval: float = 0.01) -> CommandApplication:
    return build_application(store=store, clock=clock or SystemClock(), ids=ids or Uuid4Ids(),
                             signer=TokenSigner(secret), limits=limits, cascade_poll_interval=cascade_poll_interval)
