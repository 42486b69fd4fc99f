"""A sample graph schema and small helpers shared by the write-side tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from command_service.app.commands.add_edge import AddEdge
from command_service.app.commands.apply_schema import ApplySchema
from command_service.app.commands.create_node import CreateNode
from domain.schema import Cardinality, EdgeType, NodeType, OnDelete, PropertyDef
from domain.values import PropertyKind

GRAPH = "g1"

USER = NodeType("User", (
    PropertyDef("name", PropertyKind.STRING, required=True),
    PropertyDef("email", PropertyKind.STRING, unique=True),
    PropertyDef("age", PropertyKind.INT, indexed=True),
    PropertyDef("score", PropertyKind.DOUBLE),
    PropertyDef("active", PropertyKind.BOOL),
    PropertyDef("born", PropertyKind.TIMESTAMP),
    PropertyDef("badge", PropertyKind.INT, unique=True),
), projected=("name",))
BADGE = NodeType("Badge", (PropertyDef("code", PropertyKind.STRING, unique=True),))
GROUP = NodeType("Group", (PropertyDef("title", PropertyKind.STRING),))

FOLLOWS = EdgeType("follows", "User", "User", properties=(PropertyDef("since", PropertyKind.TIMESTAMP),))
MEMBER_OF = EdgeType("member_of", "User", "Group", cardinality=Cardinality.MANY_TO_ONE, on_delete=OnDelete.CASCADE)
OWNS = EdgeType("owns", "User", "Group", cardinality=Cardinality.ONE_TO_MANY, on_delete=OnDelete.CASCADE)
MANAGES = EdgeType("manages", "User", "User", acyclic=True, on_delete=OnDelete.CASCADE)
FRIEND = EdgeType("friend", "User", "User", symmetric=True, on_delete=OnDelete.CASCADE)
SPOUSE = EdgeType("spouse", "User", "User", symmetric=True, cardinality=Cardinality.ONE_TO_ONE,
                  on_delete=OnDelete.CASCADE)

NODE_TYPES = (USER, BADGE, GROUP)
EDGE_TYPES = (FOLLOWS, MEMBER_OF, OWNS, MANAGES, FRIEND, SPOUSE)

BORN = datetime(1990, 5, 17, 8, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))


def apply_sample_schema(graph: str = GRAPH, **kw) -> ApplySchema:
    return ApplySchema(graph=graph, node_types=NODE_TYPES, edge_types=EDGE_TYPES, expected_version=0, **kw)


def user(node_id: str, name: str | None = None, graph: str = GRAPH, **props) -> CreateNode:
    return CreateNode(graph=graph, type="User", node_id=node_id, properties={"name": name or node_id, **props})


def group(node_id: str, graph: str = GRAPH) -> CreateNode:
    return CreateNode(graph=graph, type="Group", node_id=node_id, properties={"title": node_id})


def edge(source: str, edge_type: str, target: str, graph: str = GRAPH, **props) -> AddEdge:
    return AddEdge(graph=graph, source=source, type=edge_type, target=target, properties=props)


async def seeded_write_app(store, users: int, **props):
    """The command application over ``store`` with the sample schema and ``users`` users
    ``u0``.. (created 100 per BatchWrite); ``props`` maps a property to a format string
    of the user's id, e.g. ``email="{}@example.com"``."""
    from command_service.app.commands.batch_write import BatchWrite
    from command_service.bootstrap import build_for_tests
    app = build_for_tests(store)
    await app.dispatch(apply_sample_schema())
    for start in range(0, users, 100):
        await app.dispatch(BatchWrite(graph=GRAPH, operations=tuple(
            user(f"u{i}", **{k: v.format(f"u{i}") for k, v in props.items()})
            for i in range(start, min(users, start + 100)))))
    return app
