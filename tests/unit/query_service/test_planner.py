import pytest

from domain.errors import ValidationFailed
from domain.specifications import parse_filter
from domain.views import AccessKind
from query_service.planning.planner import OrderKey, QueryPlanner, parse_order_by
from tests.query_support import USER


def plan(text, order=""):
    p = QueryPlanner()
    return p.plan(USER, parse_filter(text, USER), parse_order_by(order, USER))


@pytest.mark.parametrize("text,kind,explain", [
    ("", AccessKind.TYPE_SCAN, "TYPE_SCAN(User)"),
    ('email = "a@x"', AccessKind.UNIQUE, "UNIQUE(User.email)"),
    ('city = "x" AND email = "a@x"', AccessKind.UNIQUE, "UNIQUE(User.email) + FILTER(city = ?)"),
    ('city = "x" AND score > 1', AccessKind.INDEX_EQ, "INDEX_EQ(User.city) + FILTER(score > ?)"),
    ("age > 1 AND city = \"x\"", AccessKind.INDEX_EQ, "INDEX_EQ(User.city) + FILTER(age > ?)"),
    ("age >= 18 AND age < 65", AccessKind.INDEX_RANGE, "INDEX_RANGE(User.age)"),
    ("score > 1", AccessKind.TYPE_SCAN, "TYPE_SCAN(User) + FILTER(score > ?)"),
    ("age != 3", AccessKind.TYPE_SCAN, "TYPE_SCAN(User) + FILTER(age != ?)"),
    ('age = 3 OR city = "x"', AccessKind.TYPE_SCAN, "TYPE_SCAN(User) + FILTER(age = ? OR city = ?)"),
])
def test_access_path_by_cost(text, kind, explain):
    p = plan(text)
    assert p.access.kind is kind
    assert p.explain() == explain


def test_range_bounds_are_merged_and_bound():
    p = plan("age > 10 AND age >= 12 AND age <= 50 AND age < 50")
    a = p.access
    assert (a.lower, a.lower_inclusive, a.upper, a.upper_inclusive) == (12, True, 50, False)


def test_order_by_matching_range_needs_no_sort():
    p = plan("age > 3", "age desc")
    assert p.access.descending and not p.sort
    assert p.explain() == "INDEX_RANGE(User.age) DESC"


def test_other_order_sorts():
    p = plan("age > 3", "name")
    assert p.sort == (OrderKey("name"),)
    assert p.explain() == "INDEX_RANGE(User.age) + SORT(name)"


def test_plans_are_cached_by_shape():
    planner = QueryPlanner()
    p1 = planner.plan(USER, parse_filter('city = "a" AND age > 3', USER))
    p2 = planner.plan(USER, parse_filter('city = "b" AND age > 70', USER))
    p3 = planner.plan(USER, parse_filter('city = "b"', USER))
    assert (planner.misses, planner.hits) == (2, 1)
    assert not p1.cached and p2.cached and not p3.cached
    assert p1.access.value == "a" and p2.access.value == "b"  # the cached template is re-bound
    assert p2.residual.render() == "age > 70"


def test_bad_order_by():
    for text in ("nope", "age sideways", "age, age", "age desc extra"):
        with pytest.raises(ValidationFailed):
            parse_order_by(text, USER)
