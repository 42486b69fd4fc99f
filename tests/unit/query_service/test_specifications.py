from datetime import datetime, timezone

import pytest

from domain.errors import Reason, ValidationFailed
from domain.specifications import MATCH_ALL, And, Comparison, Not, Or, conjuncts, parse_filter
from tests.query_support import USER


def test_empty_filter_matches_all():
    assert parse_filter("", USER) is MATCH_ALL
    assert parse_filter("   ", USER) is MATCH_ALL


@pytest.mark.parametrize("text,expected", [
    ('email = "a@x"', Comparison("email", "=", "a@x")),
    ("age != 3", Comparison("age", "!=", 3)),
    ("age < -3", Comparison("age", "<", -3)),
    ("score >= 1", Comparison("score", ">=", 1.0)),
    ("score > 2.5e1", Comparison("score", ">", 25.0)),
    ("active = true", Comparison("active", "=", True)),
    ("name = 'it\\'s'", Comparison("name", "=", "it's")),
    ('born > "2020-01-01T00:00:00Z"', Comparison("born", ">", datetime(2020, 1, 1, tzinfo=timezone.utc))),
    ('born <= "2020-01-01T02:00:00+02:00"', Comparison("born", "<=", datetime(2020, 1, 1, tzinfo=timezone.utc))),
])
def test_comparisons(text, expected):
    assert parse_filter(text, USER) == expected


def test_precedence_and_grouping():
    spec = parse_filter('age > 1 AND name = "a" OR NOT (age < 5 OR active = false)', USER)
    assert isinstance(spec, Or)
    left, right = spec.parts
    assert isinstance(left, And) and isinstance(right, Not) and isinstance(right.part, Or)


def test_juxtaposition_is_and():
    assert parse_filter('age > 1 name = "a"', USER) == And((Comparison("age", ">", 1), Comparison("name", "=", "a")))


def test_conjuncts_flatten():
    spec = parse_filter("age > 1 AND (age < 9 AND score > 1)", USER)
    assert [c.property for c in conjuncts(spec)] == ["age", "age", "score"]


def test_shape_strips_literals():
    a = parse_filter('age > 1 AND name = "x"', USER)
    b = parse_filter('age > 99 AND name = "other"', USER)
    assert a.shape() == b.shape() == "(age > ? AND name = ?)"


@pytest.mark.parametrize("props,text,expected", [
    ({"age": 20}, "age >= 18", True),
    ({"age": 17}, "age >= 18", False),
    ({}, "age >= 18", False),
    ({}, "age != 18", False),  # missing property: every comparison is false
    ({}, "NOT age = 18", True),
    ({"name": "b"}, 'name > "a"', True),
    ({"score": 2}, "score = 2.0", True),
    ({"born": datetime(2021, 1, 1, tzinfo=timezone.utc)}, 'born > "2020-06-01T00:00:00Z"', True),
    ({"active": False}, "active = true OR age = 1", False),
    ({"active": True, "age": 3}, "active = true AND NOT age = 4", True),
])
def test_is_satisfied_by(props, text, expected):
    assert parse_filter(text, USER).is_satisfied_by(props) is expected


@pytest.mark.parametrize("text", [
    "age",                      # no operator
    "age >",                    # no literal
    "age = = 3",                # operator as literal
    "(age = 3",                 # unclosed paren
    "age = 3)",                 # stray paren
    "()",                       # empty parens
    "AND age = 3",              # leading keyword
    "age = 3 AND",              # trailing keyword
    "age = 3 OR OR age = 4",    # doubled keyword
    "nope = 3",                 # unknown property
    'age = "3"',                # string for INT
    "age = 3.5",                # float for INT
    "name = abc",               # bare word for STRING
    "name = 3",                 # number for STRING
    "active = 1",               # number for BOOL
    "active < true",            # range on BOOL
    'born > "yesterday"',       # not RFC 3339
    "born > 5",                 # number for TIMESTAMP
    'name = "unterminated',     # unterminated string
    'name = "bad \\q escape"',  # unknown escape
    "age = 3 ; drop",           # unexpected character
    "age = 99999999999999999999",  # out of int64 range
    "true = 3",                 # literal where a property belongs
    "(" * 40 + "age = 1" + ")" * 40,  # too deep
    "age = 1 AND " * 500 + "age = 1",  # too long
])
def test_bad_filters(text):
    with pytest.raises(ValidationFailed) as err:
        parse_filter(text, USER)
    assert err.value.reason == Reason.INVALID_FILTER
    assert err.value.violations[0].field == "filter"


def test_bad_filter_names_the_field():
    with pytest.raises(ValidationFailed) as err:
        parse_filter("age >", USER, field="steps[2].node_filter")
    assert err.value.violations[0].field == "steps[2].node_filter"
    assert "offset" in err.value.violations[0].description


def test_combinators():
    a, b = Comparison("age", ">", 1), Comparison("age", "<", 5)
    assert (a & b).is_satisfied_by({"age": 3})
    assert (a | b).is_satisfied_by({"age": 0})
    assert (~a).is_satisfied_by({"age": 0})


@pytest.mark.parametrize("text", [
    "NOT " * 1000 + "age = 1",  # deep NOT chains used to blow the recursion limit
    "NOT " * 33 + "age = 1",
    'born > "0001-01-01T00:00:00+01:00"',  # before year 1 once in UTC
    'born < "9999-12-31T23:59:59-01:00"',  # after year 9999 once in UTC
])
def test_pathological_filters_are_invalid_not_crashes(text):
    with pytest.raises(ValidationFailed) as err:
        parse_filter(text, USER)
    assert err.value.reason == Reason.INVALID_FILTER


def test_a_few_nots_still_parse():
    assert parse_filter("NOT NOT age = 1", USER) == Not(Not(Comparison("age", "=", 1)))
