"""ApplySchema, idempotency (AIP-155), consistency tokens and causation."""

import dataclasses

import pytest

from command_service.app.commands.apply_schema import ApplySchema
from command_service.app.commands.create_node import CreateNode
from command_service.app.commands.update_node import UpdateNode
from command_service.app.common import CommandMeta
from domain.errors import NotFound, Reason, RuleViolated, ValidationFailed, VersionConflict
from domain.schema import NodeType
from infrastructure.tokens import TokenSigner
from tests.command_samples import EDGE_TYPES, GRAPH, GROUP, NODE_TYPES, USER, apply_sample_schema, edge, user

SECRET = b"edgewise-test-secret-0123456789"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
RID = "5f0c6a56-4b7e-4d2a-9c55-2f7f3f0c1a11"


def positions(token: str) -> dict:
    return TokenSigner(SECRET).verify(token, field="t", reason="BAD")["p"]


async def test_apply_schema_creates_version_1_and_logs_schema_applied(app, store):
    result = await app.dispatch(apply_sample_schema())
    assert result.schema.version == 1 and set(result.schema.node_types) == {"User", "Badge", "Group"}
    assert store.log[-1].event.type == "SchemaApplied"
    assert positions(result.consistency_token) == {GRAPH: 1}  # the fake shards its log per graph


async def test_apply_schema_with_a_stale_version_is_aborted(graph_app):
    with pytest.raises(VersionConflict) as err:
        await graph_app.dispatch(apply_sample_schema())
    assert err.value.reason == Reason.SCHEMA_VERSION_CONFLICT


async def test_apply_schema_refuses_dropping_a_type_in_use_but_allows_unused(graph_app):
    extra = NodeType("Tag")
    await graph_app.dispatch(ApplySchema(graph=GRAPH, node_types=NODE_TYPES + (extra,), edge_types=EDGE_TYPES,
                                         expected_version=1))
    await graph_app.dispatch(ApplySchema(graph=GRAPH, node_types=NODE_TYPES, edge_types=EDGE_TYPES,
                                         expected_version=2))  # Tag was unused
    await graph_app.dispatch(user("a"))
    await graph_app.dispatch(user("b"))
    await graph_app.dispatch(edge("a", "follows", "b"))
    with pytest.raises(RuleViolated) as err:
        await graph_app.dispatch(ApplySchema(graph=GRAPH, node_types=NODE_TYPES,
                                             edge_types=tuple(t for t in EDGE_TYPES if t.name != "follows"),
                                             expected_version=3))
    assert err.value.reason == Reason.TYPE_IN_USE


async def test_apply_schema_refuses_stricter_changes(graph_app):
    stricter = dataclasses.replace(GROUP, properties=(dataclasses.replace(GROUP.properties[0], required=True),))
    with pytest.raises(RuleViolated) as err:
        await graph_app.dispatch(ApplySchema(graph=GRAPH, node_types=(USER, NODE_TYPES[1], stricter),
                                             edge_types=EDGE_TYPES, expected_version=1))
    assert err.value.reason == Reason.SCHEMA_CHANGE_NOT_ADDITIVE


async def test_apply_schema_with_an_invalid_graph_id_is_invalid(app):
    with pytest.raises(ValidationFailed) as err:
        await app.dispatch(apply_sample_schema(graph="Bad Graph"))
    assert err.value.reason == Reason.INVALID_NAME


async def test_write_results_carry_the_last_position_they_wrote(graph_app, store):
    await graph_app.dispatch(apply_sample_schema(graph="other"))  # another graph's shard is not named
    result = await graph_app.dispatch(user("a"))
    assert positions(result.consistency_token) == {GRAPH: await store.head(GRAPH)} == {GRAPH: 2}


async def test_a_retry_with_the_same_request_id_returns_the_first_response_and_writes_nothing(graph_app, store):
    first = await graph_app.dispatch(CreateNode(graph=GRAPH, type="User", properties={"name": "A"}, request_id=RID))
    head = await store.head(GRAPH)
    await graph_app.dispatch(user("other"))  # the log moves on
    retry = await graph_app.dispatch(CreateNode(graph=GRAPH, type="User", properties={"name": "A"}, request_id=RID,
                                                meta=CommandMeta(correlation_id="another-call")))
    assert retry == first
    assert retry.consistency_token == first.consistency_token
    assert positions(retry.consistency_token) == {GRAPH: head}
    assert len([n for n in store.state.nodes.values() if n.properties.get("name") == "A"]) == 1


async def test_a_request_id_reused_for_a_different_request_is_refused(graph_app, store):
    await graph_app.dispatch(CreateNode(graph=GRAPH, type="User", properties={"name": "A"}, request_id=RID))
    head = await store.head()
    with pytest.raises(ValidationFailed) as err:
        await graph_app.dispatch(CreateNode(graph=GRAPH, type="User", properties={"name": "B"}, request_id=RID))
    assert err.value.reason == Reason.REQUEST_ID_REUSED
    assert [v.field for v in err.value.violations] == ["request_id"]
    with pytest.raises(ValidationFailed) as err:  # same id, other operation
        await graph_app.dispatch(UpdateNode(graph=GRAPH, node_id="x", properties={}, request_id=RID))
    assert err.value.reason == Reason.REQUEST_ID_REUSED
    assert await store.head() == head


async def test_a_failed_request_is_not_remembered(graph_app):
    with pytest.raises(NotFound):
        await graph_app.dispatch(UpdateNode(graph=GRAPH, node_id="a", properties={"age": 1}, request_id=RID))
    await graph_app.dispatch(user("a"))
    result = await graph_app.dispatch(UpdateNode(graph=GRAPH, node_id="a", properties={"age": 1}, request_id=RID))
    assert result.node.version == 2


async def test_events_carry_the_request_id_and_trace_context(graph_app, store):
    await graph_app.dispatch(CreateNode(graph=GRAPH, type="User", node_id="a", properties={"name": "A"},
                                        meta=CommandMeta(correlation_id="call-1", traceparent=TRACEPARENT)))
    event = store.log[-1].event
    assert event.request_id == "call-1" and event.trace_context == TRACEPARENT
    await graph_app.dispatch(CreateNode(graph=GRAPH, type="User", node_id="b", properties={"name": "B"},
                                        request_id=RID, meta=CommandMeta(correlation_id="call-2")))
    assert store.log[-1].event.request_id == RID  # the idempotency key wins when given


async def test_idempotency_records_older_than_retention_are_purged(graph_app, store):
    from datetime import timedelta

    await graph_app.dispatch(CreateNode(graph=GRAPH, type="User", properties={"name": "A"}, request_id=RID))
    created = next(iter(store.state.idempotency.values())).created_at
    assert await store.purge_idempotency(created) == 0
    assert await store.purge_idempotency(created + timedelta(seconds=1)) == 1
