import pytest

from domain.errors import Reason, ValidationFailed
from infrastructure.grpc import names


def test_round_trips():
    assert names.parse_graph_name("graphs/social") == "social"
    assert names.parse_node_name("graphs/social/nodes/user:42") == ("social", "user:42")
    assert names.node_name("social", "user:42") == "graphs/social/nodes/user:42"
    assert names.parse_schema_name(names.schema_name("g")) == "g"
    assert names.graph_name("g") == "graphs/g"


@pytest.mark.parametrize("name", ["", "graphs/", "graphs/Social", "graphs/1abc", "graph/abc",
                                  "graphs/a/b", "graphs/" + "a" * 64, "graphs/a_b"])
def test_bad_graph_names(name):
    with pytest.raises(ValidationFailed) as info:
        names.parse_graph_name(name, field="parent")
    assert info.value.reason == "INVALID_NAME"
    assert info.value.violations[0].field == "parent"


@pytest.mark.parametrize("name", ["graphs/g/nodes/", "graphs/g/nodes/_x", "graphs/g/nodes/a/b",
                                  "graphs/G/nodes/a", "graphs/g/node/a", "graphs/g/nodes/a b",
                                  "graphs/g/nodes/" + "a" * 129])
def test_bad_node_names(name):
    with pytest.raises(ValidationFailed):
        names.parse_node_name(name)


def test_limits_are_inclusive():
    assert names.parse_graph_name("graphs/" + "a" * 63)
    assert names.parse_node_name("graphs/g/nodes/" + "a" * 128)
    assert names.is_type_name("A" + "b" * 63) and not names.is_type_name("A" + "b" * 64)
    assert names.is_uuid4("3f1c0c2e-8d1a-4c1e-9a7b-2f0c1d2e3f4a")
    assert not names.is_uuid4("3f1c0c2e-8d1a-1c1e-9a7b-2f0c1d2e3f4a")  # version 1


def test_parse_node_name_in_requires_the_given_graph():
    assert names.parse_node_name_in("g", "graphs/g/nodes/a", field="edge.source") == "a"
    with pytest.raises(ValidationFailed) as err:
        names.parse_node_name_in("g", "graphs/h/nodes/a", field="edge.source")
    assert err.value.reason == Reason.INVALID_ARGUMENT
    assert [v.field for v in err.value.violations] == ["edge.source"]
    with pytest.raises(ValidationFailed) as err:
        names.parse_node_name_in("g", "nodes/a", field="edge.source")
    assert err.value.reason == Reason.INVALID_NAME
