"""ADD-PATH (RFC 7911) as Calico's BIRD runs it (`add paths on`): paths per (neighbour, path id) on receipt,
every exportable path with its route-source id on send (/work/notes/bird-behaviour.md §5, §7.2).

Speakers alone (tests/unit/speakernet.py) and whole routers on the in-memory network (tests/unit/bgpnet.py,
real OPENs, real UPDATE bytes).
"""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshsim.bgp import codec
from meshsim.bgp.messages import Update
from meshsim.bgp.policy import export, import_check, normalize_import
from meshsim.bgp.rib import Path, Reason, best_path
from meshsim.bgp.speaker import (Announce, BestChanged, EndOfRibReceived, FlushStale, Originate, PeerCounters,
                                 RouteReceived, Speaker, Withdraw)
from meshsim.bgp.types import PathAttrs
from tests.unit.bgpnet import Net
from tests.unit.speakernet import CLUSTER, CLUSTER2, Fabric, block, mesh, net, rr_fabric

SHARED = net("10.244.9.0/26")
"""Originated by two clients at once (bird-behaviour.md §7.2: n2 and n3 both originate 10.244.9.0/26)."""


def bird_case(*, add_path: bool = True) -> Fabric:
    """§7.2's lab: rr1 reflects for clients a, b, c (n2, n3, n4 there); a and b both originate SHARED."""
    fab = rr_fabric({"a": ("rr1",), "b": ("rr1",), "c": ("rr1",)}, {"rr1": CLUSTER}, add_path=add_path)
    fab.up_all()
    fab.originate("a", block(fab, "a"), SHARED)
    fab.originate("b", block(fab, "b"), SHARED)
    fab.originate_blocks("c")
    return fab


def address(fab: Fabric, name: str) -> IPv4Address:
    return fab.nodes[name].address


def reflected(fab: Fabric, client: str) -> PathAttrs:
    """A client's own path as a reflector of CLUSTER sends it on (RFC 4456 §8)."""
    a = address(fab, client)
    return PathAttrs(next_hop=a, originator_id=a, cluster_list=(CLUSTER,))


def direct(fab: Fabric, node: str, prefix: IPv4Network, source: str) -> Path:
    """`node`'s candidate for `prefix` learned from `source`."""
    name = fab.name_of(node, source)
    paths = [p for p in fab.nodes[node].speaker.candidates(prefix) if p.source and p.source.name == name]
    assert len(paths) == 1, paths
    return paths[0]


def sent(fab: Fabric, node: str, to: str, prefix: IPv4Network) -> dict[int, PathAttrs]:
    """What `node` has told `to` about `prefix`: path id -> attributes."""
    out = fab.nodes[node].speaker.adj_rib_out_paths(fab.name_of(node, to))
    return {path_id: attrs for (p, path_id), attrs in out.items() if p == prefix}


def felix_view(outputs: list) -> dict[IPv4Network, IPv4Address]:
    """What FelixAgent programs from the speaker's BestChanged (meshsim.engines.native: learned next hops)."""
    learned: dict[IPv4Network, IPv4Address] = {}
    for o in outputs:
        if isinstance(o, BestChanged):
            if o.new is None or o.new.source is None:
                learned.pop(o.prefix, None)
            else:
                learned[o.prefix] = o.new.attrs.next_hop
    return learned


# --------------------------------------------------------------------------------------
# A reflector sends every client path except the receiver's own (§5, §7.2)
# --------------------------------------------------------------------------------------


def test_rr_sends_a_third_client_both_paths_with_distinct_ids_and_each_originator_the_other() -> None:
    fab = bird_case()
    rr = fab.nodes["rr1"].speaker
    ids = {c: rr.path_id(direct(fab, "rr1", SHARED, c)) for c in ("a", "b")}
    assert ids["a"] != ids["b"] and 0 not in ids.values()
    # c gets both paths, each with the id of its source at the reflector
    assert sent(fab, "rr1", "c", SHARED) == {ids["a"]: reflected(fab, "a"), ids["b"]: reflected(fab, "b")}
    # each originator gets only the other's path, never its own back
    assert sent(fab, "rr1", "a", SHARED) == {ids["b"]: reflected(fab, "b")}
    assert sent(fab, "rr1", "b", SHARED) == {ids["a"]: reflected(fab, "a")}
    # c keeps both, under the ids it received them with
    c = fab.nodes["c"].speaker
    received = {key: p.attrs for key, p in c.adj_rib_in_paths(fab.name_of("c", "rr1")).items() if key[0] == SHARED}
    assert received == {(SHARED, ids["a"]): reflected(fab, "a"), (SHARED, ids["b"]): reflected(fab, "b")}
    best, reason = c.loc_rib()[SHARED]
    assert best.attrs.originator_id == address(fab, "a") and reason is Reason.ROUTER_ID  # RFC 4456 §9
    # an originator holds its own path (best: local) and the other's
    assert len(fab.nodes["a"].speaker.candidates(SHARED)) == 2
    assert fab.best("a", SHARED).source is None  # type: ignore[union-attr]


def test_a_path_id_is_per_source_the_same_for_all_its_prefixes() -> None:
    fab = bird_case()
    rr = fab.nodes["rr1"].speaker
    assert rr.path_id(direct(fab, "rr1", block(fab, "a"), "a")) == rr.path_id(direct(fab, "rr1", SHARED, "a"))
    assert sent(fab, "rr1", "c", block(fab, "a")) == {rr.path_id(direct(fab, "rr1", SHARED, "a")): reflected(fab, "a")}


def test_without_add_path_the_reflector_sends_its_best_path_only_with_id_0() -> None:
    fab = bird_case(add_path=False)
    # rr1's best is a's path (lower ORIGINATOR_ID): b and c get it; a gets nothing, not even b's path
    assert sent(fab, "rr1", "c", SHARED) == {0: reflected(fab, "a")}
    assert sent(fab, "rr1", "b", SHARED) == {0: reflected(fab, "a")}
    assert sent(fab, "rr1", "a", SHARED) == {}
    assert len(fab.nodes["a"].speaker.candidates(SHARED)) == 1


def test_a_mesh_node_sends_one_path_per_prefix_with_add_path() -> None:
    fab = mesh(3, add_path=True)
    fab.up_all()
    fab.originate("node1", block(fab, "node1"), SHARED)
    fab.originate("node2", block(fab, "node2"), SHARED)
    fab.originate_blocks("node3")
    for name, node in fab.nodes.items():
        sp = node.speaker
        own = {p: sp.path_id(next(c for c in sp.candidates(p) if c.source is None)) for p in sp.originated()}
        assert len(set(own.values())) == 1, "one id for all of a node's own paths"
        for peer in sp.established_peers():
            # only its own paths (iBGP split horizon, RFC 4271 §9.2), one per prefix
            assert set(sp.adj_rib_out_paths(peer)) == {(p, i) for p, i in own.items()}, (name, peer)
    # node3 holds both originators' paths for SHARED, one from each
    assert sorted(p.source.name for p in fab.nodes["node3"].speaker.candidates(SHARED)) == [  # type: ignore[union-attr]
        "Mesh_192_168_0_1", "Mesh_192_168_0_2"]


def test_two_reflectors_of_one_cluster_keep_each_others_reflection_and_never_send_it_to_clients() -> None:
    clients = ("a", "b", "c")
    fab = rr_fabric({c: ("rr1", "rr2") for c in clients}, {"rr1": CLUSTER, "rr2": CLUSTER}, add_path=True)
    fab.up_all()
    fab.originate_blocks(*clients)
    assert fab.outputs(BestChanged) and not [d for d in fab.log if type(d[1]).__name__ == "Dropped"]
    for rr, other in (("rr1", "rr2"), ("rr2", "rr1")):
        sp = fab.nodes[rr].speaker
        for c in clients:
            prefix = block(fab, c)
            # two paths: the client's own, and the other reflector's reflection of it (a non-client session:
            # BIRD checks CLUSTER_LIST only on client sessions)
            via_other = direct(fab, rr, prefix, other)
            assert via_other.attrs == reflected(fab, c)
            assert fab.best(rr, prefix) == direct(fab, rr, prefix, c)
            mine = sp.path_id(direct(fab, rr, prefix, c))
            # clients other than the originator get exactly the client's own path, reflected once
            for d in clients:
                assert sent(fab, rr, d, prefix) == ({} if d == c else {mine: reflected(fab, c)})
            # the other reflector gets the client's path, never its own reflection back
            assert sent(fab, rr, other, prefix) == {mine: reflected(fab, c)}
    # every client: each other client's block via both reflectors, the same as without ADD-PATH
    for x in clients:
        for y in clients:
            if x != y:
                assert len(fab.nodes[x].speaker.candidates(block(fab, y))) == 2


def test_best_paths_and_kernel_next_hops_do_not_change_with_add_path() -> None:
    views = []
    for add_path in (False, True):
        fab = rr_fabric({c: ("rr1", "rr2") for c in ("a", "b", "c", "d")}, {"rr1": CLUSTER, "rr2": CLUSTER2},
                        add_path=add_path)
        fab.up_all()
        fab.originate_blocks()
        fab.originate("a", block(fab, "a"), SHARED)
        fab.originate("b", block(fab, "b"), SHARED)
        fab.bring_down("a", "rr1")
        fab.bring_up("a", "rr1")
        views.append((
            {n: {p: (b.source.name if b.source else None, b.attrs) for p, (b, _) in node.speaker.loc_rib().items()}
             for n, node in fab.nodes.items()},
            {n: felix_view(fab.outputs(BestChanged, n)) for n in fab.nodes},
        ))
        # only the candidates grow: with ADD-PATH a holds b's paths for SHARED (via each reflector, and each
        # reflector's copy of the other's) beside its own; the Reason may differ, never the best
        assert len(fab.nodes["a"].speaker.candidates(SHARED)) == (5 if add_path else 1)
    assert views[0] == views[1]


@pytest.mark.parametrize("add_path", [False, True])
def test_a_changed_path_is_sent_with_its_new_attributes(add_path: bool) -> None:
    # The reflector remembers its export decisions per candidate path (reflected once for all clients): a client
    # re-announcing its block with other attributes must reach the other clients as it is now.
    fab = rr_fabric({"a": ("rr1",), "b": ("rr1",)}, {"rr1": CLUSTER}, add_path=add_path)
    fab.up_all()
    fab.originate_blocks("a")
    a_block, a_name = block(fab, "a"), fab.name_of("rr1", "a")
    rr = fab.nodes["rr1"].speaker
    (path_id,) = [i for p, i in rr.adj_rib_in_paths(a_name) if p == a_block]  # a's id (0 without ADD-PATH)
    for med in (5, 7, None):
        fab.clear_log()
        fab.handle("rr1", RouteReceived(a_name, a_block, PathAttrs(next_hop=address(fab, "a"), med=med), path_id))
        fab.pump()
        expected = replace(reflected(fab, "a"), med=med)
        assert list(sent(fab, "rr1", "b", a_block).values()) == [expected]
        assert fab.best("b", a_block).attrs == expected  # type: ignore[union-attr]
        assert [o.attrs for o in fab.outputs(Announce, "rr1")] == [expected]  # type: ignore[union-attr]
    assert rr.counters()[fab.name_of("rr1", "b")].updates_sent == 4


# --------------------------------------------------------------------------------------
# Withdrawals, session loss, graceful restart: per path
# --------------------------------------------------------------------------------------


def test_withdrawing_one_of_two_paths_leaves_the_other() -> None:
    fab = bird_case()
    rr = fab.nodes["rr1"].speaker
    id_a = rr.path_id(direct(fab, "rr1", SHARED, "a"))
    id_b = rr.path_id(direct(fab, "rr1", SHARED, "b"))
    fab.clear_log()
    fab.originate("a", block(fab, "a"))  # a no longer originates SHARED
    assert [o for o in fab.outputs(Withdraw, "rr1")] == [
        Withdraw(fab.name_of("rr1", "b"), SHARED, id_a), Withdraw(fab.name_of("rr1", "c"), SHARED, id_a)]
    assert not [o for o in fab.outputs(Announce, "rr1") if o.prefix == SHARED]  # type: ignore[union-attr]
    c = fab.nodes["c"].speaker
    assert [p.attrs for p in c.candidates(SHARED)] == [reflected(fab, "b")]
    assert felix_view(fab.outputs(BestChanged, "c")) == {SHARED: address(fab, "b")}
    assert sent(fab, "rr1", "c", SHARED) == {id_b: reflected(fab, "b")}


def test_a_session_going_down_removes_all_of_its_paths() -> None:
    fab = bird_case()
    c_rr = fab.name_of("c", "rr1")
    assert len(fab.nodes["c"].speaker.adj_rib_in_paths(c_rr)) == 4  # SHARED twice, a's and b's blocks
    fab.bring_down("c", "rr1")
    c = fab.nodes["c"].speaker
    assert c.adj_rib_in_paths(c_rr) == {} and c.candidates(SHARED) == ()
    assert set(c.loc_rib()) == {block(fab, "c")}
    # the reflector losing one originator withdraws only that originator's paths
    fab.bring_up("c", "rr1")
    id_b = fab.nodes["rr1"].speaker.path_id(direct(fab, "rr1", SHARED, "b"))
    fab.bring_down("a", "rr1")
    assert sent(fab, "rr1", "c", SHARED) == {id_b: reflected(fab, "b")}
    assert [p.attrs for p in c.candidates(SHARED)] == [reflected(fab, "b")]


def test_graceful_restart_keeps_every_path_stale_and_end_of_rib_flushes_the_ones_not_sent_again() -> None:
    fab = bird_case()
    rr = fab.nodes["rr1"].speaker
    id_a = rr.path_id(direct(fab, "rr1", SHARED, "a"))
    id_b = rr.path_id(direct(fab, "rr1", SHARED, "b"))
    c, c_rr = fab.nodes["c"].speaker, fab.name_of("c", "rr1")
    fab.bring_down("c", "rr1", graceful=True)
    assert c.stale_paths(c_rr) == {(SHARED, id_a), (SHARED, id_b), (block(fab, "a"), id_a), (block(fab, "b"), id_b)}
    assert c.stale_count(c_rr) == 4 and c.stale(c_rr) == {SHARED, block(fab, "a"), block(fab, "b")}
    assert fab.best("c", SHARED).attrs == reflected(fab, "a")  # type: ignore[union-attr]  # stale stays best
    fab.originate("a", block(fab, "a"))  # meanwhile a stops originating SHARED
    fab.bring_up("c", "rr1")
    assert c.stale_paths(c_rr) == {(SHARED, id_a)}, "re-sent paths are fresh again, path by path"
    assert fab.best("c", SHARED).attrs == reflected(fab, "a")  # type: ignore[union-attr]  # until End-of-RIB
    fab.clear_log()
    fab.handle("c", EndOfRibReceived(c_rr))
    assert c.stale_paths(c_rr) == frozenset()
    assert [p.attrs for p in c.candidates(SHARED)] == [reflected(fab, "b")]
    assert felix_view(fab.outputs(BestChanged, "c")) == {SHARED: address(fab, "b")}


def test_counters_count_paths() -> None:
    fab = bird_case()
    rr = fab.nodes["rr1"].speaker
    # to c: SHARED twice, a's block, b's block; from a: its block and SHARED
    assert rr.counters()[fab.name_of("rr1", "c")] == PeerCounters(updates_received=1, updates_sent=4)
    assert rr.counters()[fab.name_of("rr1", "a")] == PeerCounters(updates_received=2, updates_sent=3)
    assert fab.nodes["c"].speaker.counters()[fab.name_of("c", "rr1")].updates_received == 4


def test_route_source_ids_are_reused_after_the_source_is_gone() -> None:
    fab = bird_case()
    rr = fab.nodes["rr1"].speaker
    id_a = rr.path_id(direct(fab, "rr1", SHARED, "a"))
    fab.bring_down("a", "rr1")  # the source (rr1's session with a) has no path left: its id is free
    fab.originate("c", block(fab, "c"), net("10.244.200.0/26"))
    fab.bring_up("a", "rr1")
    ids = {rr.path_id(p) for prefix in rr.loc_rib() for p in rr.candidates(prefix)}
    assert id_a in ids and 0 not in ids
    assert len(ids) == 3  # a, b, c: small integers, one per source


# --------------------------------------------------------------------------------------
# Property: whatever the history, every Loc-RIB ends as a from-scratch computation says
# --------------------------------------------------------------------------------------

PREFIXES = (SHARED, net("10.244.10.0/26"), None)  # None: the node's own block
NODES = ("rr1", "rr2", "a", "b", "c")


def brute_force(fab: Fabric) -> dict[str, tuple[Counter, dict]]:
    """Each node's candidates and best paths, computed from the configuration, the originated prefixes and the
    sessions that are up alone: start from the local paths and apply every session's export and import rules
    until nothing changes (no Adj-RIB, no diffs, no history)."""
    ids: dict[tuple, int] = {}  # a stable path id per (sender, its source, its path id)
    cands: dict[str, list[Path]] = {}
    for n, node in fab.nodes.items():
        cands[n] = [Path(p, PathAttrs(next_hop=node.address), None) for p in node.speaker.originated()]
    for _ in range(20):
        new: dict[str, list[Path]] = {}
        for n, node in fab.nodes.items():
            ctx = node.speaker.config.export_context()
            paths = [Path(p, PathAttrs(next_hop=node.address), None) for p in node.speaker.originated()]
            for (x, peer_name), (m, name_at_m) in sorted(fab.links.items()):
                if x != n or frozenset((n, m)) not in fab.up:
                    continue
                sender = fab.nodes[m]
                m_ctx = sender.speaker.config.export_context()
                add_path = fab.add_path[(m, name_at_m)]
                by_prefix: dict[IPv4Network, list[Path]] = {}
                for p in cands[m]:
                    by_prefix.setdefault(p.prefix, []).append(p)
                for prefix, ps in sorted(by_prefix.items()):
                    offered = ps if add_path else [best_path(ps, sender.speaker.config.local_as)[0]]  # type: ignore[index]
                    for p in offered:
                        attrs = export(p, sender.peers[name_at_m], m_ctx)
                        if attrs is None:
                            continue
                        pid = ids.setdefault((m, p.source.name if p.source else None, p.path_id), len(ids) + 1) \
                            if add_path else 0
                        info = node.peers[peer_name]
                        rx = Path(prefix, normalize_import(attrs, info, ctx), info, pid)
                        if import_check(rx, ctx) is None:
                            paths.append(rx)
            new[n] = paths
        if new == cands:
            break
        cands = new
    else:
        raise AssertionError("no fixpoint")
    return {n: _summary(paths, fab.nodes[n].speaker.config.local_as) for n, paths in cands.items()}


def _summary(paths: list[Path] | tuple[Path, ...], local_as: int) -> tuple[Counter, dict]:
    key = lambda p: (p.prefix, p.source.name if p.source else None, p.attrs)  # noqa: E731  (path ids differ)
    by_prefix: dict[IPv4Network, list[Path]] = {}
    for p in paths:
        by_prefix.setdefault(p.prefix, []).append(p)
    return Counter(map(key, paths)), {prefix: key(best_path(ps, local_as)[0]) for prefix, ps in by_prefix.items()}  # type: ignore[index]


def speaker_state(sp: Speaker) -> tuple[Counter, dict]:
    paths = [p for prefix in sp.loc_rib() for p in sp.candidates(prefix)]
    counted, _ = _summary(paths, sp.config.local_as)
    key = lambda p: (p.prefix, p.source.name if p.source else None, p.attrs)  # noqa: E731
    return counted, {prefix: key(best) for prefix, (best, _) in sp.loc_rib().items()}


@st.composite
def histories(draw: st.DrawFn) -> tuple[Fabric, list[tuple]]:
    same_cluster = draw(st.booleans())
    fab = Fabric()
    fab.node("rr1", 101, cluster_id=CLUSTER)
    fab.node("rr2", 102, cluster_id=CLUSTER if same_cluster else CLUSTER2)
    for i, c in enumerate(("a", "b", "c"), start=1):
        fab.node(c, i)
    sessions: list[tuple[str, str]] = [("rr1", "rr2")]
    fab.session("rr1", "rr2", kind="Node", add_path=(draw(st.booleans()), draw(st.booleans())))
    for c in ("a", "b", "c"):
        for rr in draw(st.sampled_from([("rr1",), ("rr2",), ("rr1", "rr2")])):
            fab.rr_client(rr, c, add_path=(draw(st.booleans()), draw(st.booleans())))
            sessions.append((rr, c))
    if draw(st.booleans()):  # a plain iBGP session beside the reflectors
        fab.session("a", "b", add_path=(draw(st.booleans()), draw(st.booleans())))
        sessions.append(("a", "b"))
    ops = draw(st.lists(st.one_of(
        st.tuples(st.just("originate"), st.sampled_from(NODES), st.frozensets(st.sampled_from(PREFIXES))),
        st.tuples(st.just("toggle"), st.sampled_from(sessions), st.booleans()),
        st.tuples(st.just("deliver"), st.integers(1, 8)),
        st.tuples(st.just("cluster"), st.sampled_from((CLUSTER, CLUSTER2))),
    ), max_size=40))
    return fab, ops


@settings(max_examples=150, deadline=None)
@given(histories())
def test_loc_ribs_equal_a_from_scratch_computation_after_any_history(case: tuple[Fabric, list[tuple]]) -> None:
    """Random originations, session flaps (some graceful: paths kept stale), partial deliveries and a reflector's
    cluster id changing; once every message is delivered and every stale path settled (End-of-RIB on the sessions
    that are up, the restart timer on the others), every node's candidates and best paths are what the
    configuration alone implies."""
    fab, ops = case
    for op in ops:
        match op:
            case ("originate", node, prefixes):
                fab.originate(node, *(p or block(fab, node) for p in prefixes), pump=False)
            case ("toggle", (a, b), graceful):
                if frozenset((a, b)) in fab.up:
                    fab.bring_down(a, b, graceful=graceful, pump=False)
                else:
                    fab.bring_up(a, b, pump=False)
            case ("deliver", n):
                for _ in range(min(n, len(fab.queue))):
                    fab.step()
            case ("cluster", cluster_id):
                rr2 = fab.nodes["rr2"].speaker
                fab._record("rr2", rr2.set_config(replace(rr2.config, cluster_id=cluster_id)))
    fab.pump()
    for (a, name), (b, _) in sorted(fab.links.items()):
        fab.handle(a, EndOfRibReceived(name) if frozenset((a, b)) in fab.up else FlushStale(name))
    fab.pump()
    expected = brute_force(fab)
    for n, node in fab.nodes.items():
        assert speaker_state(node.speaker) == expected[n], n


# --------------------------------------------------------------------------------------
# Whole routers: OPEN negotiation, path ids on the wire (RFC 7911 §3)
# --------------------------------------------------------------------------------------

RR_ADDR = "192.168.0.1"


def bird_lab(*, add_paths: bool = True) -> Net:
    """§7.2 with sessions: RR 192.168.0.1 (cluster 244.0.0.1), clients n2..n4; n2 and n3 originate SHARED."""
    net_ = Net()
    clients = {"n2": ("10.244.2.0/26", str(SHARED)), "n3": ("10.244.3.0/26", str(SHARED)), "n4": ("10.244.4.0/26",)}
    net_.add("rr", RR_ADDR, cluster_id=str(CLUSTER), add_paths=add_paths,
             peers=[(f"Node_192_168_0_{n[1]}", f"192.168.0.{n[1]}", True, True) for n in clients])
    for name, blocks in clients.items():
        net_.add(name, f"192.168.0.{name[1]}", peers=[("Node_192_168_0_1", RR_ADDR, False, False)], blocks=blocks,
                 add_paths=add_paths)
    net_.run(5)
    return net_


def updates_on_the_wire(net_: Net, sender: str, receiver: str) -> list[Update]:
    """Every UPDATE `sender` wrote on its session to `receiver`, decoded as the receiver decodes it."""
    session = net_.nodes[receiver].router.session(f"Node_{RR_ADDR.replace('.', '_')}" if sender == "rr" else
                                                  f"Node_192_168_0_{sender[1]}")
    out = []
    for _, name, cid, data in net_.sent:
        link = net_.links.get((name, cid))
        if name != sender or link is None or link.other((name, cid))[0] != receiver:
            continue
        for raw in codec.frame(data)[0]:
            if raw[18] == 2:
                msg = codec.decode(raw, session.negotiated)
                if isinstance(msg, Update):
                    out.append(msg)
    return out


def announced(updates: list[Update], prefix: IPv4Network) -> list[tuple[int, PathAttrs | None]]:
    return [(pid, u.attrs) for u in updates for p, pid in zip(u.nlri, u.nlri_path_ids or [0] * len(u.nlri))
            if p == prefix]


def test_wire_the_rr_sends_the_prefix_twice_to_the_third_client_and_once_to_each_originator() -> None:
    lab = bird_lab()
    rr = lab.nodes["rr"].router.speaker
    assert all(lab.nodes["rr"].router.session(p).negotiated.add_path_send for p in rr.established_peers())
    source_id = {n: rr.path_id(next(p for p in rr.candidates(SHARED) if p.source.name == f"Node_192_168_0_{n[1]}"))
                 for n in ("n2", "n3")}
    to_n4 = announced(updates_on_the_wire(lab, "rr", "n4"), SHARED)
    assert sorted(pid for pid, _ in to_n4) == sorted(source_id.values()) and len(set(source_id.values())) == 2
    assert {a.originator_id for _, a in to_n4} == {IPv4Address("192.168.0.2"), IPv4Address("192.168.0.3")}  # type: ignore[union-attr]
    assert [(pid, a.originator_id) for pid, a in announced(updates_on_the_wire(lab, "rr", "n2"), SHARED)] == [  # type: ignore[union-attr]
        (source_id["n3"], IPv4Address("192.168.0.3"))]
    assert [(pid, a.originator_id) for pid, a in announced(updates_on_the_wire(lab, "rr", "n3"), SHARED)] == [  # type: ignore[union-attr]
        (source_id["n2"], IPv4Address("192.168.0.2"))]
    # n4 keeps both paths under those ids; each client sends its own paths with one id (its local source)
    n4 = lab.nodes["n4"].router.speaker
    assert {k for k in n4.adj_rib_in_paths("Node_192_168_0_1") if k[0] == SHARED} == {
        (SHARED, i) for i in source_id.values()}
    own = announced(updates_on_the_wire(lab, "n2", "rr"), SHARED) + announced(updates_on_the_wire(lab, "n2", "rr"),
                                                                              IPv4Network("10.244.2.0/26"))
    assert len(own) == 2 and len({pid for pid, _ in own}) == 1 and own[0][0] != 0


def test_wire_a_withdrawal_names_the_path_id() -> None:
    lab = bird_lab()
    rr = lab.nodes["rr"].router.speaker
    id_n2 = rr.path_id(next(p for p in rr.candidates(SHARED) if p.source.name == "Node_192_168_0_2"))
    id_n3 = rr.path_id(next(p for p in rr.candidates(SHARED) if p.source.name == "Node_192_168_0_3"))
    before = len(updates_on_the_wire(lab, "rr", "n4"))
    n2 = lab.nodes["n2"].router
    lab.apply("n2", n2.handle(Originate(frozenset({IPv4Network("10.244.2.0/26")})), lab.now))
    lab.run_for(1)
    later = updates_on_the_wire(lab, "rr", "n4")[before:]
    assert [(w, pid) for u in later for w, pid in zip(u.withdrawn, u.withdrawn_path_ids)] == [(SHARED, id_n2)]
    n4 = lab.nodes["n4"].router.speaker
    assert {k for k in n4.adj_rib_in_paths("Node_192_168_0_1") if k[0] == SHARED} == {(SHARED, id_n3)}
    assert n4.loc_rib()[SHARED][0].attrs.originator_id == IPv4Address("192.168.0.3")


def test_wire_kernel_next_hops_are_the_same_with_and_without_add_paths() -> None:
    views = []
    for add_paths in (False, True):
        lab = bird_lab(add_paths=add_paths)
        views.append({n: felix_view([a for _, name, a in lab.log if name == n]) for n in lab.nodes})
        negotiated = lab.nodes["n4"].router.session("Node_192_168_0_1").negotiated
        assert negotiated.add_path_send is add_paths and negotiated.add_path_receive is add_paths
    assert views[0] == views[1]
    assert views[1]["n4"][SHARED] == IPv4Address("192.168.0.2")


# Real BIRD as the reference: what the route reflector sent each client in /work/notes/bird-behaviour.md §7.2
# (bird-captures/raw/addpath_v{2,1}/updates.txt, decoded from packets; End-of-RIB lines left out).
# rr n1 10.99.0.1 (`rr client; rr cluster id 244.0.0.1`, static 10.244.1.0/26), clients n2..n4, n2 and n3 both
# originate 10.244.9.0/26.
BIRD_RR_UPDATES = {
    "2.0.12": """
10.99.0.1->10.99.0.4 [('10.244.1.0/26', 4)]
10.99.0.1->10.99.0.3 [('10.244.4.0/26', 8)]
10.99.0.1->10.99.0.3 [('10.244.1.0/26', 4)]
10.99.0.1->10.99.0.3 [('10.244.4.0/26', 8)]
10.99.0.1->10.99.0.4 [('10.244.3.0/26', 9), ('10.244.9.0/26', 9)]
10.99.0.1->10.99.0.2 [('10.244.1.0/26', 4)]
10.99.0.1->10.99.0.2 [('10.244.3.0/26', 9), ('10.244.9.0/26', 9)]
10.99.0.1->10.99.0.2 [('10.244.4.0/26', 8)]
10.99.0.1->10.99.0.4 [('10.244.2.0/26', 11), ('10.244.9.0/26', 11)]
10.99.0.1->10.99.0.3 [('10.244.2.0/26', 11), ('10.244.9.0/26', 11)]
""",
    "1.6.8": """
10.99.0.1->10.99.0.2 [('10.244.1.0/26', 4)]
10.99.0.1->10.99.0.3 [('10.244.9.0/26', 7), ('10.244.2.0/26', 7)]
10.99.0.1->10.99.0.3 [('10.244.1.0/26', 4)]
10.99.0.1->10.99.0.2 [('10.244.9.0/26', 9), ('10.244.3.0/26', 9)]
10.99.0.1->10.99.0.4 [('10.244.9.0/26', 7), ('10.244.2.0/26', 7)]
10.99.0.1->10.99.0.4 [('10.244.9.0/26', 9), ('10.244.3.0/26', 9)]
10.99.0.1->10.99.0.4 [('10.244.1.0/26', 4)]
10.99.0.1->10.99.0.3 [('10.244.4.0/26', 11)]
10.99.0.1->10.99.0.2 [('10.244.4.0/26', 11)]
""",
}
LAB_BLOCKS = {f"10.99.0.{i}": f"10.244.{i}.0/26" for i in range(1, 5)}


def by_originator(sent_paths: dict[str, set[tuple[str, int]]]) -> dict[str, set[tuple[str, str]]]:
    """receiver -> {(prefix, whose path)}: a path id stands for the node whose own block it carries (BIRD's ids
    are its route-source numbers, meshsim's its own: only which ids go together must agree). Checks that one id
    is one source, on every session."""
    owner: dict[int, str] = {}
    for paths in sent_paths.values():
        for prefix, path_id in paths:
            node = next((n for n, b in LAB_BLOCKS.items() if b == prefix), None)
            if node is not None:
                assert owner.setdefault(path_id, node) == node, f"path id {path_id} carries two nodes' blocks"
    assert len(set(owner.values())) == len(owner), "one source, one id"
    return {rx: {(prefix, owner[path_id]) for prefix, path_id in paths} for rx, paths in sent_paths.items()}


def test_golden_the_reflector_sends_what_bird_sends() -> None:
    lab = Net()
    clients = {"10.99.0.2": ("10.244.2.0/26", "10.244.9.0/26"), "10.99.0.3": ("10.244.3.0/26", "10.244.9.0/26"),
               "10.99.0.4": ("10.244.4.0/26",)}
    lab.add("10.99.0.1", "10.99.0.1", cluster_id="244.0.0.1", blocks=("10.244.1.0/26",),
            peers=[(f"Mesh_{a.replace('.', '_')}", a, True, True) for a in clients])
    for a, blocks in clients.items():
        lab.add(a, a, peers=[("Mesh_10_99_0_1", "10.99.0.1", False, False)], blocks=blocks)
    lab.run(5)
    ours: dict[str, set[tuple[str, int]]] = {}
    for rx in clients:
        session = lab.nodes[rx].router.session("Mesh_10_99_0_1")
        for _, name, cid, data in lab.sent:
            link = lab.links.get((name, cid))
            if name != "10.99.0.1" or link is None or link.other((name, cid))[0] != rx:
                continue
            for raw in codec.frame(data)[0]:
                msg = codec.decode(raw, session.negotiated) if raw[18] == 2 else None
                if isinstance(msg, Update):
                    assert not msg.withdrawn
                    ours.setdefault(rx, set()).update((str(p), i) for p, i in zip(msg.nlri, msg.nlri_path_ids))
    for version, text in BIRD_RR_UPDATES.items():
        bird: dict[str, set[tuple[str, int]]] = {}
        for line in text.strip().splitlines():
            link, nlri = line.split(" ", 1)
            bird.setdefault(link.split("->")[1], set()).update(ast.literal_eval(nlri))
        assert by_originator(ours) == by_originator(bird), version
