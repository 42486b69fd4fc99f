import itertools
import uuid

import pytest

from edgewise.graph.v1 import command_service_pb2 as cmd
from edgewise.graph.v1 import resources_pb2 as pb
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e

_graph_ids = itertools.count(1)


ENGINES = ("sqlite", "dynamodb")


def engine_env(engine: str, request) -> dict[str, str]:
    """The environment that puts a stack on ``engine``: SQLite's file is the Stack's own;
    DynamoDB is the session's moto server on loopback with fresh tables."""
    if engine == "sqlite":
        return {}
    import asyncio

    from scripts.moto_server import create_tables_at
    from tests.dynamodb_support import unique_prefix

    server = request.getfixturevalue("moto_server")
    prefix = unique_prefix()
    asyncio.run(create_tables_at(server.endpoint, prefix=prefix))
    # An idle poll is a few calls to moto (checkpoints, shards, heads): at the SQLite stacks'
    # 20 ms they kept moto's one process busy for the whole session. A reader behind a
    # token wakes the projector at once anyway (ProjectionProgress.on_behind).
    return {**server.service_env(prefix), "EDGEWISE_PROJECTOR_POLL_INTERVAL_MS": "100"}


@pytest.fixture(scope="session", params=ENGINES)
def engine(request) -> str:
    """The e2e suite runs once per storage engine (EDGEWISE_STORE)."""
    return request.param


@pytest.fixture(scope="session")
def stack(tmp_path_factory, engine, request):
    s = Stack(tmp_path_factory.mktemp(f"e2e-{engine}"), engine_env(engine, request)).start()
    s.engine = engine
    yield s
    codes = s.stop()
    # SIGTERM drains: both processes exit cleanly.
    assert codes == {"command_service": 0, "query_service": 0}, codes


@pytest.fixture
def sqlite_only(engine) -> None:
    """For what only SQLite can show: races (moto serialises nothing, DESIGN §5) and its file."""
    if engine != "sqlite":
        pytest.skip("SQLite only: moto does not isolate concurrent requests, so races are proven on SQLite")


def prop(value):
    if isinstance(value, bool):
        return pb.PropertyValue(bool_value=value)
    if isinstance(value, int):
        return pb.PropertyValue(int_value=value)
    if isinstance(value, float):
        return pb.PropertyValue(double_value=value)
    return pb.PropertyValue(string_value=value)


def sample_schema() -> pb.Schema:
    P = pb.PropertyDefinition
    return pb.Schema(
        node_types=[
            pb.NodeType(name="User", properties=[
                P(name="name", kind=pb.PROPERTY_KIND_STRING, required=True),
                P(name="email", kind=pb.PROPERTY_KIND_STRING, unique=True),
                P(name="age", kind=pb.PROPERTY_KIND_INT, indexed=True),
                P(name="score", kind=pb.PROPERTY_KIND_DOUBLE),
            ], projected=["name"]),
            pb.NodeType(name="Group", properties=[P(name="title", kind=pb.PROPERTY_KIND_STRING)]),
        ],
        edge_types=[
            pb.EdgeType(name="follows", source_type="User", target_type="User",
                        cardinality=pb.CARDINALITY_MANY_TO_MANY, on_delete=pb.ON_DELETE_CASCADE),
            pb.EdgeType(name="member_of", source_type="User", target_type="Group",
                        cardinality=pb.CARDINALITY_MANY_TO_ONE, on_delete=pb.ON_DELETE_RESTRICT),
            pb.EdgeType(name="owns", source_type="User", target_type="Group",
                        cardinality=pb.CARDINALITY_ONE_TO_MANY, on_delete=pb.ON_DELETE_CASCADE),
            pb.EdgeType(name="manages", source_type="User", target_type="User", acyclic=True,
                        on_delete=pb.ON_DELETE_CASCADE),
            pb.EdgeType(name="friend", source_type="User", target_type="User", symmetric=True,
                        on_delete=pb.ON_DELETE_CASCADE),
        ],
    )


class GraphClient:
    """A small client helper over the generated stubs, scoped to one graph."""

    def __init__(self, stack: Stack, graph: str) -> None:
        self.stack = stack
        self.graph = graph
        self.parent = f"graphs/{graph}"
        self.commands = stack.commands
        self.queries = stack.queries
        self.token = ""

    def name(self, node_id: str) -> str:
        return f"{self.parent}/nodes/{node_id}"

    def consistency(self) -> pb.ReadConsistency:
        return pb.ReadConsistency(at_least_token=self.token) if self.token else pb.ReadConsistency()

    def apply_schema(self, schema: pb.Schema | None = None, expected_version: int = 0):
        resp = self.commands.ApplySchema(cmd.ApplySchemaRequest(
            graph=self.parent, schema=schema or sample_schema(), expected_version=expected_version,
            request_id=str(uuid.uuid4())))
        self.token = resp.consistency_token
        return resp

    def create_user(self, node_id: str, **props):
        props.setdefault("name", node_id)
        return self.create("User", node_id, **props)

    def create(self, type_name: str, node_id: str, **props):
        node = pb.Node(type=type_name)
        for k, v in props.items():
            node.properties[k].CopyFrom(prop(v))
        resp = self.commands.CreateNode(cmd.CreateNodeRequest(parent=self.parent, node_id=node_id, node=node,
                                                              request_id=str(uuid.uuid4())))
        self.token = resp.consistency_token
        return resp.node

    def add_edge(self, source: str, edge_type: str, target: str, request_id: str | None = None):
        resp = self.commands.AddEdge(cmd.AddEdgeRequest(
            parent=self.parent, edge=pb.Edge(source=self.name(source), type=edge_type, target=self.name(target)),
            request_id=request_id or str(uuid.uuid4())))
        self.token = resp.consistency_token
        return resp


@pytest.fixture
def graph(stack) -> GraphClient:
    client = GraphClient(stack, f"g{next(_graph_ids)}-{uuid.uuid4().hex[:6]}")
    client.apply_schema()
    return client
