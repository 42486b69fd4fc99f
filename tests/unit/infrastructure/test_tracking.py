"""AggregateTracker: the events a unit of work takes from the aggregates it has seen."""

from infrastructure.persistence.tracking import AggregateTracker


class Aggregate:
    def __init__(self) -> None:
        self.events: list[str] = []


def test_events_come_out_once_in_the_order_recorded():
    a, b = Aggregate(), Aggregate()
    tracker = AggregateTracker()
    a.events.append("a1")
    tracker.track(a)          # taken at once
    tracker.track(b)
    b.events.append("b1")     # recorded after tracking: taken on the next call
    a.events.append("a2")
    tracker.track(a)          # tracking twice neither repeats nor reorders
    assert tracker.take_events() == ["a1", "a2", "b1"]
    assert a.events == [] and b.events == []
    assert tracker.take_events() == []


def test_discard_drops_what_was_taken_but_not_handed_out():
    a = Aggregate()
    tracker = AggregateTracker()
    a.events.append("a1")
    tracker.track(a)
    tracker.discard()
    assert tracker.take_events() == []
