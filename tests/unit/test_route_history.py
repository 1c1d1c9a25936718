"""RouteHistory: a full re-read must not undo changes an event stream reported while the re-read was in flight
(BIRD nodes: `ip monitor route` events against the periodic `ip route` re-read)."""

from meshsim.routes.history import RouteHistory

A = "10.244.1.0/26 via 192.168.48.11 dev eth0 proto bird"
B = "10.244.2.0/26 via 192.168.48.12 dev eth0 proto bird"
B2 = "10.244.2.0/26 via 192.168.48.13 dev eth0 proto bird"


def test_replace_all_without_read_since_makes_the_table_exactly_the_snapshot():
    h = RouteHistory()
    h.apply({"10.244.1.0/26": A, "10.244.2.0/26": B}, 1.0)
    assert h.replace_all({"10.244.1.0/26": A}, 2.0) == 1
    assert h.lines == {"10.244.1.0/26": A}
    assert h.last_change == 2.0


def test_a_stale_snapshot_does_not_remove_a_route_added_after_the_read_began():
    h = RouteHistory()
    h.apply({"10.244.1.0/26": A}, 1.0)
    # the re-read starts at 1.5 and sees only A; the monitor reports B at 1.6, applied before the read returns
    h.apply({"10.244.2.0/26": B}, 1.6)
    assert h.replace_all({"10.244.1.0/26": A}, 1.8, read_since=1.5) == 0
    assert h.lines == {"10.244.1.0/26": A, "10.244.2.0/26": B}
    assert h.last_change == 1.6  # when the kernel changed, not when the stale read returned


def test_a_stale_snapshot_does_not_revive_a_route_removed_or_changed_after_the_read_began():
    h = RouteHistory()
    h.apply({"10.244.1.0/26": A, "10.244.2.0/26": B}, 1.0)
    h.apply({"10.244.1.0/26": None, "10.244.2.0/26": B2}, 1.6)
    assert h.replace_all({"10.244.1.0/26": A, "10.244.2.0/26": B}, 1.8, read_since=1.5) == 0
    assert h.lines == {"10.244.2.0/26": B2}


def test_the_re_read_still_repairs_what_the_event_stream_missed_before_it_began():
    h = RouteHistory()
    h.apply({"10.244.1.0/26": A}, 1.0)
    # B was added in the kernel but its monitor line was lost (e.g. ENOBUFS); A was deleted, also unseen
    assert h.replace_all({"10.244.2.0/26": B}, 6.5, read_since=6.4) == 2
    assert h.lines == {"10.244.2.0/26": B}
    assert h.last_change == 6.5
