"""The BGP session state machine and graceful restart, sans I/O (tests/unit/bgpnet.py plays the network)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from meshsim.bgp import codec, fsm
from meshsim.bgp.messages import Notification
from meshsim.bgp.rib import BestChanged
from meshsim.bgp.router import RecoveryDone, ResetPeer, StopAll
from meshsim.bgp.timers import SessionTimers, jittered
from tests.unit.bgpnet import Net, mesh

FAST = SessionTimers(hold_time=9, keepalive_time=3)


def notifications(net: Net, sender: str) -> list[Notification]:
    out = []
    for _, name, _, data in net.sent:
        if name == sender:
            out += [codec.decode(m, None) for m in codec.frame(data)[0] if m[18] == 3]
    return out


def test_cold_mesh_waits_for_connect_delay_then_converges() -> None:
    net = Net()
    names = mesh(net, 3)
    net.run(1.0)
    assert not net.ups(), "BIRD connects only after `connect delay time` (2 s, jittered by up to 25 %)"
    net.run(3.0)
    assert len(net.ups()) == 6  # 3 sessions, seen from both ends
    assert all(1.5 <= t <= 2.0 for t, _, _ in net.ups())
    for n in names:
        assert len(net.routes(n)) == 3 and net.state(n, next(iter(net.nodes[n].router.peers))) == "up"


def test_passive_side_never_connects() -> None:
    net = Net()
    net.add("a", "192.168.0.1", peers=[("Mesh_192_168_0_2", "192.168.0.2", True, False)])
    net.run(30)
    assert not net.events(fsm.Connect) and not [a for _, _, a in net.log if type(a).__name__ == "OpenTcp"]
    assert net.nodes["a"].router.session("Mesh_192_168_0_2").info == "Passive"


@pytest.mark.parametrize("higher_first", [True, False])
def test_collision_keeps_the_connection_of_the_higher_router_id(higher_first: bool) -> None:
    """Node_ peerings are active on both ends (Calico v3.28): both connect at once, RFC 4271 §6.8 picks one."""
    net = Net()
    order = [("a", "192.168.0.1", "192.168.0.2"), ("b", "192.168.0.2", "192.168.0.1")]
    if higher_first:
        order.reverse()
    for name, me, other in order:
        # the same seed: both connect at the same jittered instant, so both connections reach OpenConfirm
        net.add(name, me, peers=[(f"Node_{other.replace('.', '_')}", other, False, False)], blocks=(), seed=7)
    net.run(10)
    ups = net.ups()
    assert len(ups) == 2, ups
    assert not net.downs(), "the collision is resolved before Established: no flap"
    cease = [n for n in notifications(net, "a") + notifications(net, "b") if (n.code, n.subcode) == (6, 7)]
    # both ends may notify, but on the same connection: the one the lower identifier initiated
    assert 1 <= len(cease) <= 2, "the losing connection gets Cease / Connection collision resolution"
    # the surviving connection is the one the higher identifier (b, 192.168.0.2) initiated
    kept = net.nodes["b"].router.session("Node_192_168_0_1").established
    assert kept is not None and kept.outbound
    net.run(60)
    assert len(net.ups()) == 2 and not net.downs()


def test_hold_timer_expiry_drops_routes_at_once_and_notifies() -> None:
    net = Net()
    mesh(net, 3)
    net.run(5)
    net.freeze("node3")  # silent: no FIN, no keepalive
    t0 = net.now
    net.run(t0 + 12)
    downs = [(t, n, d) for t, n, d in net.downs() if d.peer == "Mesh_192_168_0_3"]
    assert {n for _, n, _ in downs} == {"node1", "node2"}
    for t, _, d in downs:
        assert d.reason == "Hold timer expired" and not d.graceful
        assert t - t0 <= 9.0 and t - t0 >= 9 * 0.75 - 3  # last keepalive up to 3 s before the freeze
    assert "10.244.3.0/26" not in net.routes("node1")
    assert any((n.code, n.subcode) == (4, 0) for n in notifications(net, "node1"))
    s = net.nodes["node1"].router.session("Mesh_192_168_0_3")
    assert s.state.value == "start" and s.info.endswith("BGP Error: Hold timer expired")


def test_hold_expiry_grows_the_error_wait_before_reconnecting() -> None:
    net = Net()
    mesh(net, 2)
    net.run(5)
    net.freeze("node2")
    net.run(30)
    s = net.nodes["node1"].router.session("Mesh_192_168_0_2")
    assert s.startup_delay == 5.0  # error wait time 5,30: first error waits MIN
    attempts = [t for t, n, a in net.log if n == "node1" and type(a).__name__ == "OpenTcp"]
    down_at = next(t for t, n, _ in net.downs("node1"))
    after = [t for t in attempts if t > down_at]
    # node1 is passive toward node2 (higher address)? then it never connects; node2 is the active side
    if not s.config.passive:
        assert after and after[0] - down_at >= 5 * 0.75 + 2 * 0.75


def test_malformed_message_gets_the_rfc_notification_and_closes_only_that_session() -> None:
    net = Net()
    mesh(net, 3)
    net.run(5)
    bad_marker = b"\x00" * 16 + b"\x00\x13\x04"
    net.inject("node1", "node2", bad_marker)
    net.run_for(0.1)
    assert any((n.code, n.subcode) == (1, 1) for n in notifications(net, "node1")), "Connection Not Synchronized"
    assert net.state("node1", "Mesh_192_168_0_3") == "up", "the other session stays Established"
    assert net.state("node1", "Mesh_192_168_0_2") == "start"
    assert "10.244.2.0/26" not in net.routes("node1")


def test_update_before_established_is_an_fsm_error() -> None:
    net = Net()
    a = net.add("a", "192.168.0.1", peers=[("Mesh_192_168_0_2", "192.168.0.2", False, False)])
    net.run(3)  # a connects to nobody: refused, retried
    s = a.session("Mesh_192_168_0_2")
    assert s.info.startswith("Active Socket: Connection refused") or s.info.startswith("Connect")


def test_graceful_restart_keeps_a_killed_peers_routes_as_stale_for_its_restart_time() -> None:
    net = Net()
    mesh(net, 3, timers=SessionTimers(hold_time=9, keepalive_time=3, restart_time=10))
    net.run(5)
    net.kill("node3")  # RST, no NOTIFICATION
    net.run_for(0.01)
    for n in ("node1", "node2"):
        assert net.routes(n).get("10.244.3.0/26") == "Mesh_192_168_0_3", "kept as stale"
        assert net.nodes[n].router.speaker.stale("Mesh_192_168_0_3") == {IPv4Network("10.244.3.0/26")}
        assert net.state(n, "Mesh_192_168_0_3") == "start"
    graceful = [d for _, _, d in net.downs() if d.peer == "Mesh_192_168_0_3"]
    assert graceful and all(d.graceful for d in graceful)
    net.run_for(9.9)
    assert "10.244.3.0/26" in net.routes("node1")
    net.run_for(0.2)
    assert "10.244.3.0/26" not in net.routes("node1"), "flushed when the peer's restart time ran out"


def test_the_peers_advertised_restart_time_applies() -> None:
    net = Net()
    net.add("a", "192.168.0.1", peers=[("Mesh_192_168_0_2", "192.168.0.2", False, False)],
            timers=SessionTimers(hold_time=9, keepalive_time=3, restart_time=120), blocks=("10.244.1.0/26",))
    net.add("b", "192.168.0.2", peers=[("Mesh_192_168_0_1", "192.168.0.1", True, False)],
            timers=SessionTimers(hold_time=9, keepalive_time=3, restart_time=7), blocks=("10.244.2.0/26",))
    net.run(5)
    net.kill("b")
    net.run_for(6.9)
    assert "10.244.2.0/26" in net.routes("a")
    net.run_for(0.2)
    assert "10.244.2.0/26" not in net.routes("a")


def test_restarted_peer_refreshes_stale_routes_and_end_of_rib_flushes_the_rest() -> None:
    net = Net()
    mesh(net, 2, timers=SessionTimers(hold_time=9, keepalive_time=3, restart_time=120))
    net.run(5)
    net.kill("node2")
    net.run_for(1)
    assert "10.244.2.0/26" in net.routes("node1")
    # node2 comes back (bird -R) with a different block: the old one must go at its End-of-RIB
    net.add("node2", "192.168.0.2", peers=[("Mesh_192_168_0_1", "192.168.0.1", False, False)],
            timers=SessionTimers(hold_time=9, keepalive_time=3, restart_time=120), blocks=("10.244.22.0/26",),
            restarting=True)
    net.run_for(5)
    assert net.state("node1", "Mesh_192_168_0_2") == "up"
    routes = net.routes("node1")
    assert "10.244.22.0/26" in routes and "10.244.2.0/26" not in routes
    assert net.nodes["node1"].router.speaker.stale("Mesh_192_168_0_2") == frozenset()
    done = net.events(RecoveryDone, "node2")
    assert done and done[0][2].reason == "End-of-RIB from every peer"
    assert "10.244.1.0/26" in net.routes("node2")


def test_a_restarting_node_holds_its_exports_until_every_peer_sent_end_of_rib() -> None:
    net = Net()
    net.add("a", "192.168.0.1", peers=[("Mesh_192_168_0_2", "192.168.0.2", False, False),
                                       ("Mesh_192_168_0_3", "192.168.0.3", False, False)],
            blocks=("10.244.1.0/26",), restarting=True)
    net.add("b", "192.168.0.2", peers=[("Mesh_192_168_0_1", "192.168.0.1", True, False)], blocks=("10.244.2.0/26",))
    net.run(30)
    # node 3 never comes: a waits for it (calico#7144: routes withheld until graceful restart wait)
    assert "10.244.1.0/26" not in net.routes("b")
    assert "10.244.2.0/26" in net.routes("a")
    net.run(241)
    assert "10.244.1.0/26" in net.routes("b")
    assert net.events(RecoveryDone, "a")[0][2].reason == "graceful restart wait ran out"


def test_notification_flushes_at_once_even_with_graceful_restart() -> None:
    net = Net()
    mesh(net, 2)
    net.run(5)
    net.apply("node2", net.nodes["node2"].router.handle(StopAll(), net.now))
    net.run_for(0.01)
    assert "10.244.2.0/26" not in net.routes("node1")
    d = [d for _, n, d in net.downs("node1")]
    assert d and not d[0].graceful and d[0].reason == "Administrative shutdown"
    s = net.nodes["node1"].router.session("Mesh_192_168_0_2")
    assert s.info.endswith("Received: Administrative shutdown")


def test_a_final_stop_sends_every_cease_and_leaves_the_rib_alone() -> None:
    """A node going away (BIRD shutting down): Ceases to all, peers withdraw its routes, and its own RIB is not
    torn down route by route first (that work would only delay the Ceases of a node whose table nobody reads)."""
    net = Net()
    names = mesh(net, 3)
    net.run(5)
    before = net.routes("node2")
    actions = net.nodes["node2"].router.handle(StopAll(final=True), net.now)
    assert [type(a).__name__ for a in actions].count("SessionDown") == 2
    assert not [a for a in actions if isinstance(a, BestChanged)]
    net.apply("node2", actions)
    assert len(notifications(net, "node2")) == 2
    net.run_for(0.01)
    assert net.routes("node2") == before  # as Calico's `persist` kernel protocol leaves them
    for n in (names[0], names[2]):
        assert "10.244.2.0/26" not in net.routes(n)
    assert all(not d.graceful for _, _, d in net.downs("node1"))


def test_reset_peer_comes_back_by_itself() -> None:
    net = Net()
    mesh(net, 2)
    net.run(5)
    net.apply("node1", net.nodes["node1"].router.handle(ResetPeer("Mesh_192_168_0_2"), net.now))
    net.run_for(0.01)
    assert net.state("node1", "Mesh_192_168_0_2") == "start"
    net.run_for(10)
    assert net.state("node1", "Mesh_192_168_0_2") == "up"
    assert net.routes("node1").get("10.244.2.0/26") == "Mesh_192_168_0_2"


def test_keepalives_keep_an_idle_session_up() -> None:
    net = Net()
    mesh(net, 2)
    net.run(600)
    assert len(net.ups()) == 2 and not net.downs()


def test_updates_pack_prefixes_sharing_attributes_and_end_with_end_of_rib() -> None:
    net = Net()
    blocks = tuple(f"10.244.{i}.0/26" for i in range(100))
    net.add("a", "192.168.0.1", peers=[("Mesh_192_168_0_2", "192.168.0.2", False, False)], blocks=blocks)
    net.add("b", "192.168.0.2", peers=[("Mesh_192_168_0_1", "192.168.0.1", True, False)])
    net.run(5)
    msgs = [m for _, n, _, d in net.sent if n == "a" for m in codec.frame(d)[0]]
    updates = [m for m in msgs if m[18] == 2]
    assert len(updates) == 2, "100 prefixes with one attribute set fit one UPDATE; then End-of-RIB"
    assert len(updates[-1]) == 23, "End-of-RIB: the empty UPDATE (RFC 4724 §2)"
    assert len(net.routes("b")) == 100


def test_jitter_is_within_a_quarter() -> None:
    import random

    rng = random.Random(1)
    values = [jittered(8.0, rng) for _ in range(1000)]
    assert min(values) >= 6.0 and max(values) <= 8.0 and max(values) - min(values) > 1.5


def test_incoming_from_an_unknown_address_is_rejected_with_cease() -> None:
    from meshsim.bgp.router import Incoming

    net = Net()
    r = net.add("a", "192.168.0.1", peers=[("Mesh_192_168_0_2", "192.168.0.2", False, False)])
    actions = r.handle(Incoming(999, IPv4Address("192.168.0.77")), net.now)
    sends = [a for a in actions if isinstance(a, fsm.Send)]
    assert sends and codec.decode(sends[0].data, None) == Notification(6, 5)
    assert any(isinstance(a, fsm.Close) and a.conn == 999 for a in actions)
