"""infrastructure/persistence/dynamodb/keys.py: one spelling, injective, order-preserving."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import pytest

from domain.edge import Direction
from domain.values import EdgeKey, PropertyKind
from infrastructure.persistence.dynamodb import keys as k
from infrastructure.persistence.dynamodb.attributes import get_str, key_tuple

G = "g1"
MAX_GRAPH = "g" + "-" * 62
MAX_NODE = "N" + "_.:-" * 31 + "abc"
MAX_TYPE = "T" + "x" * 63
MAX_PROP = "p" + "y" * 63


def every_key(graph: str, a: str, b: str, t: str, p: str) -> list[dict]:
    out = [
        k.node_key(graph, a), k.out_edge_key(graph, a, t, b), k.in_edge_key(graph, a, t, b),
        k.edge_counter_key(graph, a, t, Direction.OUT), k.edge_counter_key(graph, a, t, Direction.IN),
        k.cascade_job_key(graph, a), k.type_counter_key(graph, "node", t, 0), k.type_counter_key(graph, "edge", t, 0),
        k.unique_claim_key(graph, t, p, a), k.schema_key(graph, 1), k.idempotency_key(graph, a),
        k.topology_key(graph, t), k.log_head_key(graph, 0), k.log_record_key(graph, 0, 1),
        k.node_view_key(graph, a), k.node_index_entry_key(graph, a, p), k.edge_view_key(graph, a, t, b),
        k.adjacency_head_key(graph, a, Direction.OUT, t), k.adjacency_chunk_key(graph, a, Direction.IN, t, 1),
        k.schema_view_key(graph), k.checkpoint_key(graph, 0, a), k.lease_key(graph, 0, a),
        k.shard_registry_key(graph),
    ]
    return out


def test_keys_are_pk_sk_strings_and_start_with_the_graph():
    for key in every_key(G, "n1", "n2", "follows", "email"):
        assert set(key) == {"pk", "sk"}
        pk, sk = key_tuple(key)
        assert pk.startswith(G + "#") or pk == k.SHARD_REGISTRY_PARTITION
        assert sk


def test_escaping_is_the_identity_on_valid_ids_and_reversible():
    for text in ("n1", "user:42", "a.b-c_d", MAX_NODE, MAX_GRAPH):
        assert k.escape(text) == text
    for text in ("a#b", "100%", "a b", "#%# %23", ""):
        assert "#" not in k.escape(text) and " " not in k.escape(text)
        assert k.unescape(k.escape(text)) == text


FAMILIES = {  # family -> key of (a, b, t, p); each family uses the inputs it names
    "node": lambda a, b, t, p: k.node_key(G, a),
    "out_edge": lambda a, b, t, p: k.out_edge_key(G, a, t, b),
    "in_edge": lambda a, b, t, p: k.in_edge_key(G, a, t, b),
    "counter": lambda a, b, t, p: k.edge_counter_key(G, a, t, Direction.OUT),
    "claim": lambda a, b, t, p: k.unique_claim_key(G, t, p, a),
    "idempotency": lambda a, b, t, p: k.idempotency_key(G, a),
    "node_index_entry": lambda a, b, t, p: k.node_index_entry_key(G, a, p),
    "edge_view": lambda a, b, t, p: k.edge_view_key(G, a, t, b),
    "adjacency_head": lambda a, b, t, p: k.adjacency_head_key(G, a, Direction.OUT, t),
    "adjacency_chunk": lambda a, b, t, p: k.adjacency_chunk_key(G, a, Direction.OUT, t, 1),
    "checkpoint": lambda a, b, t, p: k.checkpoint_key(G, 0, a),
    "lease": lambda a, b, t, p: k.lease_key(G, 0, a),
    "topology": lambda a, b, t, p: k.topology_key(G, t),
    "type_counter": lambda a, b, t, p: k.type_counter_key(G, "node", t, 0),
}
USES = {"node": "a", "out_edge": "abt", "in_edge": "abt", "counter": "at", "claim": "atp", "idempotency": "a",
        "node_index_entry": "ap", "edge_view": "abt", "adjacency_head": "at", "adjacency_chunk": "at",
        "checkpoint": "a", "lease": "a", "topology": "t", "type_counter": "t"}


def test_a_separator_in_an_id_cannot_forge_another_key():
    # without escaping, node "a#O#x" would spell the pk of node "a" plus an out-edge sort key
    ids = ["a", "b", "x", "a#O#x", "O#x#b", "a#N", "a%23O", "a b", "a#O", "x#b", "1", "1#C"]
    names = ["follows", "fol#lows", "p", "p#1"]
    seen: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}
    for family, make in FAMILIES.items():
        for a in ids:
            for b in ids[:6]:
                for t in names:
                    for p in names:
                        args = dict(a=a, b=b, t=t, p=p)
                        used = tuple(args[c] for c in USES[family])
                        identity = key_tuple(make(a, b, t, p))
                        assert seen.setdefault(identity, (family, used)) == (family, used), identity


def test_every_family_has_distinct_keys_for_one_input():
    keys = [key_tuple(key) for key in every_key(G, "n1", "n1", "t", "p")]
    # the write-model node and the read-model view share a pk but not an sk; tables differ anyway
    assert len(keys) == len(set(keys))


def test_parsers_invert_the_formatters():
    graph, node = k.parse_node_partition(k.node_partition("g-1", "user:7"))
    assert (graph, node) == ("g-1", "user:7")
    assert k.parse_edge_sk(get_str(k.out_edge_key(G, "a", "follows", "b:c"), "sk")) == (Direction.OUT, "follows", "b:c")
    assert k.parse_edge_sk(get_str(k.in_edge_key(G, "b", "follows", "a"), "sk")) == (Direction.IN, "follows", "a")
    assert k.parse_counter_sk(get_str(k.edge_counter_key(G, "a", "likes", Direction.IN), "sk")) == (Direction.IN,
                                                                                                   "likes")
    created = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    attrs = k.cascade_job_index_attributes("g-2", "hub:1", created)
    assert k.parse_pending_sk(get_str(attrs, "pending_sk"))[1:] == ("g-2", "hub:1")
    assert k.parse_shard_id(k.shard_id("g-1", 3)) == ("g-1", 3)
    attrs = k.value_index_attributes(G, "User", "name", "u:1", "a b c", PropertyKind.STRING)
    assert k.parse_value_index_sk(get_str(attrs, "value_sk")) == "u:1"
    assert get_str(attrs, "value_pk") in k.value_index_partitions(G, "User", "name")
    attrs = k.type_index_attributes(G, "User", "u:1")
    assert get_str(attrs, "type_pk") in k.type_index_partitions(G, "User")
    assert get_str(attrs, "type_sk") == "u:1"


def test_prefixes_end_with_a_separator():
    assert k.edges_prefix(Direction.OUT) == "O#"
    assert k.edges_prefix(Direction.IN, "follows") == "I#follows#"
    sk = get_str(k.out_edge_key(G, "a", "follows", "b"), "sk")
    assert sk.startswith(k.edges_prefix(Direction.OUT, "follows"))
    assert not get_str(k.out_edge_key(G, "a", "followsX", "b"), "sk").startswith(k.edges_prefix(Direction.OUT, "follows"))
    with pytest.raises(ValueError):
        k.edges_prefix(Direction.BOTH)


def test_composite_sort_keys_order_like_tuples():
    # "#" sorts below every id character: ("a", "z") < ("a-b", "a") as tuples and as keys
    pairs = [("a", "z"), ("a-b", "a"), ("a.b", "a"), ("a", "a"), ("ab", "a"), ("A", "b")]
    by_key = sorted(pairs, key=lambda p: get_str(k.out_edge_key(G, "n", p[0], p[1]), "sk"))
    assert by_key == sorted(pairs)


def test_numbered_sort_keys_order_numerically():
    versions = [1, 2, 9, 10, 11, 100, 12345678901]
    assert sorted(versions, key=lambda v: get_str(k.schema_key(G, v), "sk")) == versions
    positions = [get_str(k.log_record_key(G, 0, p), "sk") for p in (1, 2, 10, 10**19)]
    assert positions == sorted(positions)
    lo, hi = k.log_records_after(9)
    assert lo == get_str(k.log_record_key(G, 0, 10), "sk")
    assert all(lo <= p <= hi for p in positions[2:]) and not lo <= positions[1] <= hi
    assert not lo <= k.LOG_HEAD_SK <= hi  # the sequence item is never read as a record


def test_out_of_range_numbers_are_refused():
    for call in (lambda: k.schema_key(G, 0), lambda: k.log_record_key(G, 0, 0),
                 lambda: k.adjacency_chunk_key(G, "n", Direction.OUT, "t", 0),
                 lambda: k.type_counter_key(G, "node", "T", k.TYPE_COUNTER_BUCKETS),
                 lambda: k.type_index_partition(G, "T", -1), lambda: k.log_partition(G, -1)):
        with pytest.raises(ValueError):
            call()


def test_longest_ids_fit_dynamodb_key_limits():
    for key in every_key(MAX_GRAPH, MAX_NODE, MAX_NODE, MAX_TYPE, MAX_PROP) + [
            k.unique_claim_key(MAX_GRAPH, MAX_TYPE, MAX_PROP, "é" * 10_000)]:
        pk, sk = key_tuple(key)
        assert len(pk.encode()) <= 2048 and len(sk.encode()) <= 1024
    attrs = k.value_index_attributes(MAX_GRAPH, MAX_TYPE, MAX_PROP, MAX_NODE, "\x00" * 5000, PropertyKind.STRING)
    assert len(get_str(attrs, "value_sk").encode()) <= 1024
    assert len(get_str(attrs, "value_pk").encode()) <= 2048


def test_buckets_are_stable_and_spread():
    assert k.stable_bucket("user:1", 8) == k.stable_bucket("user:1", 8)
    counts = [0] * 8
    for i in range(8000):
        counts[k.stable_bucket(f"user:{i}", 8)] += 1
    assert min(counts) > 800


def test_idempotency_records_expire_no_sooner_than_a_day():
    created = datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc)
    expires = int(k.idempotency_expires_at(created)["expires_at"]["N"])
    assert expires >= (created + timedelta(hours=24)).timestamp()
    assert expires - created.timestamp() < 24 * 3600 + 2


# --- value encodings ------------------------------------------------------------------------

def _sorted_by_encoding(values, kind):
    return sorted(values, key=lambda v: k.encode_index_value(v, kind).text.encode("utf-8"))


def test_int_encoding_preserves_order():
    rng = random.Random(1)
    values = [-(2**63), 2**63 - 1, 0, -1, 1, 255, 256, -256] + [rng.randint(-(2**63), 2**63 - 1) for _ in range(500)]
    assert _sorted_by_encoding(values, PropertyKind.INT) == sorted(values)
    with pytest.raises(ValueError):
        k.encode_index_value(2**63, PropertyKind.INT)
    with pytest.raises(ValueError):
        k.encode_index_value(1.5, PropertyKind.INT)
    assert k.encode_index_value(3.0, PropertyKind.INT) == k.encode_index_value(3, PropertyKind.INT)


def test_double_encoding_preserves_order():
    rng = random.Random(2)
    values = [-math.inf, math.inf, 0.0, -0.0, 5e-324, -5e-324, 1.0, -1.0, 1e308, -1e308, 0.1, 0.2]
    values += [rng.uniform(-1e6, 1e6) for _ in range(300)] + [rng.gauss(0, 1e-300) for _ in range(50)]
    ordered = _sorted_by_encoding(values, PropertyKind.DOUBLE)
    assert ordered == sorted(values)
    assert k.encode_index_value(-0.0, PropertyKind.DOUBLE) == k.encode_index_value(0.0, PropertyKind.DOUBLE)
    assert k.encode_index_value(2, PropertyKind.DOUBLE) == k.encode_index_value(2.0, PropertyKind.DOUBLE)
    with pytest.raises(ValueError):
        k.encode_index_value(math.nan, PropertyKind.DOUBLE)


def test_string_encoding_preserves_order_with_awkward_characters():
    rng = random.Random(3)
    alphabet = ["\x00", "\x01", "\t", " ", "!", '"', "#", "%", "0", "A", "a", "~", "\x7f", "é", "中", "😀"]
    values = ["", "a", "a ", "a!", "a\x00", "ab", "a b", "a!b"]
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(800)]
    assert _sorted_by_encoding(values, PropertyKind.STRING) == sorted(values)
    # with the node id after the terminating space: (value, node) order
    rows = [(v, n) for v in values[:200] for n in ("n1", "n2")]
    by_sk = sorted(rows, key=lambda r: get_str(
        k.value_index_attributes(G, "T", "p", r[1], r[0], PropertyKind.STRING), "value_sk").encode("utf-8"))
    assert by_sk == sorted(rows)


def test_timestamp_and_bool_encodings():
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    stamps = [base + timedelta(microseconds=d) for d in (-10**15, -1, 0, 1, 10**12)]
    assert _sorted_by_encoding(stamps, PropertyKind.TIMESTAMP) == sorted(stamps)
    # the planner's sortable() form (epoch micros) encodes alike
    from domain.values import sortable
    assert k.encode_index_value(sortable(base), PropertyKind.TIMESTAMP) == k.encode_index_value(base, PropertyKind.TIMESTAMP)
    assert _sorted_by_encoding([True, False], PropertyKind.BOOL) == [False, True]
    assert k.encode_index_value(1, PropertyKind.BOOL) == k.encode_index_value(True, PropertyKind.BOOL)
    with pytest.raises(ValueError):
        k.encode_index_value("yes", PropertyKind.BOOL)


def test_long_strings_are_truncated_and_flagged():
    short = k.encode_index_value("x" * k.MAX_INDEX_VALUE_BYTES, PropertyKind.STRING)
    assert short.exact
    long = k.encode_index_value("é" * k.MAX_INDEX_VALUE_BYTES, PropertyKind.STRING)
    assert not long.exact and len(long.text.encode()) <= k.MAX_INDEX_VALUE_BYTES


@pytest.mark.parametrize("kind, values", [
    (PropertyKind.INT, list(range(-20, 21, 3))),
    (PropertyKind.DOUBLE, [-math.inf, -2.5, -1.0, 0.0, 0.5, 1.0, 7.25, math.inf]),
    (PropertyKind.STRING, ["", "a", "a ", "a!", "ab", "b", "b\x00", "ba", "z"]),
])
def test_range_bounds_select_exactly_the_values_in_range(kind, values):
    rows = [(v, get_str(k.value_index_attributes(G, "T", "p", f"n{i}", v, kind), "value_sk"))
            for i, v in enumerate(values)]
    for lower in values[::2] + [None]:
        for upper in values[1::2] + [None]:
            for lower_inclusive in (True, False):
                for upper_inclusive in (True, False):
                    lo, hi = k.value_index_bounds(kind, lower, lower_inclusive, upper, upper_inclusive)
                    got = [v for v, sk in rows if (lo is None or sk >= lo) and (hi is None or sk <= hi)]
                    want = [v for v in values
                            if (lower is None or (v >= lower if lower_inclusive else v > lower))
                            and (upper is None or (v <= upper if upper_inclusive else v < upper))]
                    assert got == want, (lower, lower_inclusive, upper, upper_inclusive)
    for v, sk in rows:
        assert [w for w, s in rows if s.startswith(k.value_index_prefix(v, kind))] == [v]


def test_claim_values_are_exact_and_keep_kinds_apart():
    values = [1, "1", 1.0, True, "true", 0, False, "", "s:1", datetime(2024, 1, 1, tzinfo=timezone.utc)]
    claims = [k.claim_value(v) for v in values]
    assert len(set(claims)) == len(claims)
    assert k.claim_value(-0.0) == k.claim_value(0.0)
    long_a, long_b = "a" * 5000, "a" * 4999 + "b"
    assert k.claim_value(long_a) != k.claim_value(long_b)
    assert k.claim_value(long_a).startswith("h:") and len(k.claim_value(long_a)) < 100
    assert "#" not in k.claim_value("x#y")


def test_edge_item_keys_are_the_out_item_and_the_in_mirror():
    out_key, in_key = k.edge_item_keys(EdgeKey(G, "a", "follows", "b"))
    assert out_key == k.out_edge_key(G, "a", "follows", "b")
    assert in_key == k.in_edge_key(G, "b", "follows", "a")
    assert get_str(out_key, "pk") == k.node_partition(G, "a") and get_str(in_key, "pk") == k.node_partition(G, "b")
