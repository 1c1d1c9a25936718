"""What a Calico node's BIRD holds, rebuilt from a meshsim node's JSON views, for `meshsim show` (birdc-like).

Owns the data behind `birdc show protocols|route|status`, independent of BIRD's text formats (those are in
meshsim.report.birdc):
- `NodeFacts`: what the datastore says about a node and that its JSON views do not carry (AS, interface,
  gateway, tunl0 address, timers, its peers in confd's order, its blocks and pools), built by
  `node_facts(cluster, node)`;
- `BirdState`: BIRD's protocols (static1, kernel1, device1, direct1, then one BGP protocol per peer) with their
  route counters, and its routing table: every path per network, as BIRD keeps them (`Rte`);
- `bird_state(facts, status, rib, routes)`: the state from GET /status, /rib and /routes of a meshsim node.
  kernel1 holds the alien routes of the node's table (default route, `POD dev caliX scope link`), direct1 the
  connected subnet and tunl0's address, static1 the affine blocks (`blackhole`), one BGP path per Adj-RIB-In
  entry, the Loc-RIB's best marked primary;
- `network_order(prefixes, dialect)`: the order BIRD walks its FIB in, so `show route` lists networks as BIRD
  does: BIRD 1.6 sorts by a 16-bit hash of the address (nest/rt-fib.c fib_get, lib/ip.h ip4_hash), BIRD 2 by a
  32-bit hash of address and length (lib/net.h net_hash_ip4, FIB_INSERT).
Route change stats are the steady state after a cold start (every path announced once): BIRD counts every
update it ever saw, which depends on the order things happened in; the route counts (imported, exported,
preferred) are exact. Pure: no clock (callers pass `now`), no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Iterable, Mapping, Sequence

from meshsim.bgp.policy import ExportContext, calico_filter

BGP_PREF, STATIC_PREF, KERNEL_PREF, DIRECT_PREF = 100, 200, 10, 240
BIRD_HOLD, BIRD_KEEPALIVE = 240, 80  # BIRD's defaults, what Calico runs


@dataclass(frozen=True)
class PeerFacts:
    """One `protocol bgp` block as confd renders it."""

    name: str
    address: IPv4Address
    asn: int
    kind: str  # Mesh | Node | Global
    passive: bool = False
    rr_client: bool = False


@dataclass(frozen=True)
class NodeFacts:
    name: str
    router_id: IPv4Address
    asn: int
    subnet: IPv4Network
    interface: str = "eth0"
    gateway: IPv4Address | None = None
    tunnel_address: IPv4Address | None = None
    cluster_id: IPv4Address | None = None
    hold_time: int = BIRD_HOLD
    keepalive_time: int = BIRD_KEEPALIVE
    peers: tuple[PeerFacts, ...] = ()  # confd's order: mesh by host name, then global, then node-specific
    blocks: tuple[IPv4Network, ...] = ()  # confirmed affine blocks (calico_aggr)
    pools: tuple[IPv4Network, ...] = ()  # exportable pools

    def export_context(self) -> ExportContext:
        return ExportContext(router_id=self.router_id, local_as=self.asn, cluster_id=self.cluster_id,
                             exportable_pools=self.pools, affine_blocks=self.blocks)


@dataclass(frozen=True)
class Rte:
    """One path in BIRD's table (BIRD's `rte`)."""

    prefix: IPv4Network
    protocol: str
    source: str  # BGP | inherit (kernel) | device (direct) | static
    since: float
    dest: str = "unicast"  # unicast | blackhole
    gw: IPv4Address | None = None
    iface: str | None = None
    pref: int = BGP_PREF
    bgp: Mapping[str, Any] | None = None  # next_hop, local_pref, as_path, origin, med, originator_id, cluster_list
    neighbor: IPv4Address | None = None  # BGP: the address it came from (`from X` when not the gateway)
    primary: bool = False
    scope_link: bool = False  # a kernel route with `scope link` (BIRD 2 shows Kernel.scope: 253)
    stale: bool = False


@dataclass(frozen=True)
class Stats:
    """`Routes:` and `Route change stats:` of one protocol (channel)."""

    imported: int = 0
    exported: int = 0
    preferred: int = 0
    import_received: int = 0
    import_accepted: int = 0
    export_received: int = 0
    export_rejected: int = 0
    export_filtered: int = 0
    export_accepted: int = 0
    # what a steady state has none of, but a real BIRD's counters (meshsim.report.birdread) do
    import_rejected: int = 0
    import_filtered: int = 0
    import_ignored: int = 0
    import_withdraws_received: int = 0
    import_withdraws_rejected: int = 0
    import_withdraws_ignored: int = 0
    import_withdraws_accepted: int = 0
    export_withdraws_received: int = 0
    export_withdraws_accepted: int = 0


@dataclass(frozen=True)
class Protocol:
    name: str
    proto: str  # Static | Kernel | Device | Direct | BGP
    state: str  # up | start | down
    since: float
    preference: int
    input_filter: str
    output_filter: str
    stats: Stats | None = None
    bgp_state: str = ""  # Established | Active | Passive | Connect | OpenSent | Idle
    last_error: str = ""  # "Socket: Connection closed"
    peer: PeerFacts | None = None
    established_at: float | None = None
    stats_bird2: Stats | None = None  # where BIRD 2 counts differently (kernel1 exports device routes too)

    def stats_for(self, dialect: str) -> Stats | None:
        return self.stats_bird2 if dialect == "bird2" and self.stats_bird2 is not None else self.stats


@dataclass(frozen=True)
class BirdState:
    facts: NodeFacts
    started_at: float
    protocols: tuple[Protocol, ...]
    routes: tuple[Rte, ...]  # every path, in no particular order; `primary` marks the best of each network
    hostname: str = ""

    def protocol(self, name: str) -> Protocol | None:
        return next((p for p in self.protocols if p.name == name), None)

    def networks(self) -> dict[IPv4Network, list[Rte]]:
        out: dict[IPv4Network, list[Rte]] = {}
        for r in self.routes:
            out.setdefault(r.prefix, []).append(r)
        return out


# ----------------------------------------------------------------------------------------------
# BIRD's FIB order


def _ip4_hash16(addr: IPv4Address) -> int:
    x = int(addr)
    x ^= x >> 16
    x ^= (x << 10) & 0xFFFFFFFF
    return x & 0xFFFF


def _net_hash32(net: IPv4Network) -> int:
    return ((int(net.network_address) * 2902958171) & 0xFFFFFFFF) ^ ((net.prefixlen << 26) & 0xFFFFFFFF)


def network_order(networks: Mapping[IPv4Network, Sequence[Rte]], dialect: str) -> list[IPv4Network]:
    """Networks in the order BIRD's `show route` walks them. Equal hashes (BIRD 1.6: one address, two lengths,
    e.g. a block and tunl0's address) keep insertion order, which a cold start makes static1 < kernel1 <
    direct1 < BGP, then the time the first path came."""
    rank = {"static": 0, "inherit": 1, "device": 2, "BGP": 3}

    def inserted(net: IPv4Network) -> tuple[int, float]:
        return min((rank.get(r.source, 4), r.since) for r in networks[net])

    if dialect == "bird1":
        return sorted(networks, key=lambda n: (_ip4_hash16(n.network_address), inserted(n)))
    # BIRD 2 inserts before equal hashes: the later network comes first
    return sorted(networks, key=lambda n: (_net_hash32(n), tuple(-x for x in inserted(n))))


def path_order(paths: Sequence[Rte]) -> list[Rte]:
    """Paths of one network as BIRD lists them: the primary first, then the others in the order
    rte_recalculate() links them (nest/rt-table.c, unsorted tables): a path that is not better than the best
    goes right after it, so later arrivals come first."""
    primary = [r for r in paths if r.primary]
    others = sorted((r for r in paths if not r.primary), key=lambda r: (-r.since, r.protocol))
    return primary + others


# ----------------------------------------------------------------------------------------------
# Building the state from a meshsim node's JSON views


def _route_lines(routes: Mapping[str, Any] | None) -> list[tuple[str, float]]:
    if not routes:
        return []
    out = []
    for r in routes.get("routes", []):
        out.append((str(r.get("line", "")).strip(), float(r.get("changed_at") or 0.0)))
    return out


def _kernel_and_direct(facts: NodeFacts, lines: Iterable[tuple[str, float]], start: float) -> list[Rte]:
    """kernel1 learns alien routes (not proto bird, not proto kernel: nl_parse_route's KRT_SRC_ALIEN); direct1
    holds the interfaces' prefixes (the connected subnet, tunl0's /32)."""
    out: list[Rte] = []
    for line, ts in lines:
        words = line.split()
        if not words or words[0] in ("blackhole", "unreachable", "prohibit") or "proto" in words and \
                words[words.index("proto") + 1] == "bird":
            continue
        dst = "0.0.0.0/0" if words[0] == "default" else words[0] if "/" in words[0] else words[0] + "/32"
        prefix = IPv4Network(dst, strict=False)
        iface = words[words.index("dev") + 1] if "dev" in words else facts.interface
        if "proto" in words and words[words.index("proto") + 1] == "kernel":
            out.append(Rte(prefix, "direct1", "device", ts or start, iface=iface, pref=DIRECT_PREF))
            continue
        gw = IPv4Address(words[words.index("via") + 1]) if "via" in words else None
        out.append(Rte(prefix, "kernel1", "inherit", ts or start, gw=gw, iface=iface, pref=KERNEL_PREF,
                       scope_link="scope" in words and words[words.index("scope") + 1] == "link"))
    if facts.tunnel_address is not None:
        out.append(Rte(IPv4Network(f"{facts.tunnel_address}/32"), "direct1", "device", start, iface="tunl0",
                       pref=DIRECT_PREF))
    return out


def _via(facts: NodeFacts, next_hop: IPv4Address) -> IPv4Address:
    """`gateway recursive`: a next hop outside the node's subnet resolves through the default route."""
    if next_hop in facts.subnet or facts.gateway is None:
        return next_hop
    return facts.gateway


def _bgp_state(session: Mapping[str, Any]) -> tuple[str, str]:
    """meshsim's Info column ("Established", "Active Socket: Connection refused", "Passive") as BIRD's BGP state
    and last error."""
    info = str(session.get("info") or "")
    word, _, rest = info.partition(" ")
    state = word if word in ("Idle", "Connect", "Active", "Passive", "OpenSent", "OpenConfirm", "Established",
                             "Close") else ("Idle" if session.get("state") == "down" else "Active")
    return state, rest.strip()


def bird_state(facts: NodeFacts, status: Mapping[str, Any], rib: Mapping[str, Any],
               routes: Mapping[str, Any] | None = None, *, started_at: float | None = None,
               hostname: str = "") -> BirdState:
    sessions = {s["name"]: s for s in status.get("sessions", [])}
    lines = _route_lines(routes)
    start = started_at or status.get("started_at") or min(
        [ts for _, ts in lines if ts] + [s.get("since_ts") or 0 for s in sessions.values() if s.get("since_ts")]
        or [0.0])
    table: list[Rte] = _kernel_and_direct(facts, lines, start)
    blackholes = {w[1]: ts for w, ts in ((line.split(), ts) for line, ts in lines) if w and w[0] == "blackhole"}
    loc = rib.get("loc_rib", {})
    for prefix, entry in loc.items():
        if entry.get("from") == "local" and (prefix in blackholes or not prefix.endswith("/32")):
            table.append(Rte(IPv4Network(prefix), "static1", "static", blackholes.get(prefix) or start,
                             dest="blackhole", pref=STATIC_PREF))
    peers = {p.name: p for p in facts.peers}
    for name, paths in rib.get("adj_rib_in", {}).items():
        s = sessions.get(name, {})
        peer = peers.get(name)
        for prefix, attrs in paths.items():
            nh = IPv4Address(attrs["next_hop"])
            since = attrs.get("since") or s.get("established_at") or s.get("since_ts") or start
            table.append(Rte(IPv4Network(prefix), name, "BGP", float(since), gw=_via(facts, nh), iface=facts.interface,
                             bgp=attrs, neighbor=peer.address if peer else IPv4Address(s.get("peer", nh)),
                             stale=bool(attrs.get("stale"))))
    marked = _mark_primaries(table, {p: e.get("from") for p, e in loc.items()})
    protocols = _protocols(facts, sessions, marked, start)
    return BirdState(facts=facts, started_at=start, protocols=protocols, routes=tuple(marked),
                     hostname=hostname or facts.name)


def _mark_primaries(table: Sequence[Rte], best_from: Mapping[str, Any]) -> list[Rte]:
    """BIRD's rte_better(): the highest preference first (direct 240, static 200, BGP 100, kernel 10); between
    BGP paths, the Loc-RIB's best (meshsim.bgp.rib.best_path is BIRD's bgp_rte_better)."""
    by_net: dict[IPv4Network, list[int]] = {}
    for i, r in enumerate(table):
        by_net.setdefault(r.prefix, []).append(i)
    out = list(table)
    for prefix, idx in by_net.items():
        top = max(table[i].pref for i in idx)
        tops = [i for i in idx if table[i].pref == top]
        chosen = next((i for i in tops if table[i].source == "BGP" and table[i].protocol == best_from.get(str(prefix))),
                      min(tops, key=lambda i: table[i].since))
        out[chosen] = replace(table[chosen], primary=True)
    return out


# ----------------------------------------------------------------------------------------------
# Protocols and their counters


def _export_verdict(facts: NodeFacts, to: PeerFacts, r: Rte, peers: Mapping[str, PeerFacts]) -> str:
    """What one BGP protocol's export does with one path of the table (BIRD: every path is offered, Calico runs
    `add paths on`): rejected by bgp_import_control, filtered by calico_export_to_bgp_peers, or accepted."""
    if r.protocol == to.name:
        return "rejected"  # poison reverse
    if r.source == "BGP":
        src = peers.get(r.protocol)
        cluster_list = [IPv4Address(c) for c in (r.bgp or {}).get("cluster_list", [])]
        if to.rr_client and facts.cluster_id is not None and facts.cluster_id in cluster_list:
            return "rejected"  # bgp_cluster_list_loopy
        internal_src = src is None or src.asn == facts.asn
        if to.asn == facts.asn and internal_src and not (to.rr_client or (src is not None and src.rr_client)):
            return "rejected"  # iBGP to iBGP without reflection
    ok, _ = calico_filter(r.prefix, facts.export_context())
    return "accepted" if ok else "filtered"


def _mergeable(best: Rte, other: Rte) -> bool:
    """bgp_rte_mergable(): paths the kernel protocol (`merge paths on`) is told about as well."""
    if best.source != "BGP" or other.source != "BGP" or best is other:
        return False
    a, b = best.bgp or {}, other.bgp or {}
    return (a.get("local_pref") == b.get("local_pref") and len(a.get("as_path", [])) == len(b.get("as_path", []))
            and a.get("origin") == b.get("origin") and a.get("med") == b.get("med"))


def _protocols(facts: NodeFacts, sessions: Mapping[str, Mapping[str, Any]], table: Sequence[Rte],
               start: float) -> tuple[Protocol, ...]:
    peers = {p.name: p for p in facts.peers}
    nets: dict[IPv4Network, list[Rte]] = {}
    for r in table:
        nets.setdefault(r.prefix, []).append(r)

    def mine(name: str) -> list[Rte]:
        return [r for r in table if r.protocol == name]

    def simple(name: str, proto: str, pref: int, out_filter: str) -> Protocol:
        own = mine(name)
        n = len(own)
        return Protocol(name, proto, "up", start, pref, "ACCEPT", out_filter,
                        Stats(imported=n, preferred=sum(r.primary for r in own), import_received=n,
                              import_accepted=n))

    # kernel1: the best path of every network is offered (plus the paths merged with it), its own routes are
    # rejected, and in BIRD 1.6 device routes too (krt_import_control; BIRD 2 dropped that check and exports
    # them); calico_kernel_programming accepts the rest
    kernel_own = mine("kernel1")

    def kernel_stats(reject_devices: bool) -> Stats:
        received = rejected = exported = 0
        for paths in nets.values():
            best = next((r for r in paths if r.primary), None)
            if best is None:
                continue
            offers = 1 + sum(_mergeable(best, r) for r in paths)
            received += offers
            if best.protocol == "kernel1" or (reject_devices and best.source == "device"):
                rejected += offers
            else:
                exported += 1
        return Stats(imported=len(kernel_own), exported=exported, preferred=sum(r.primary for r in kernel_own),
                     import_received=len(kernel_own), import_accepted=len(kernel_own), export_received=received,
                     export_rejected=rejected, export_accepted=received - rejected)

    kernel = Protocol("kernel1", "Kernel", "up", start, KERNEL_PREF, "ACCEPT", "calico_kernel_programming",
                      kernel_stats(True), stats_bird2=kernel_stats(False))
    out = [simple("static1", "Static", STATIC_PREF, "REJECT"), kernel,
           Protocol("device1", "Device", "up", start, DIRECT_PREF, "ACCEPT", "REJECT", Stats()),
           simple("direct1", "Direct", DIRECT_PREF, "REJECT")]
    for peer in facts.peers:
        s = sessions.get(peer.name, {})
        state = str(s.get("state") or "down")
        bgp_state, error = _bgp_state(s) if s else ("Idle", "")
        own = mine(peer.name)
        stats = None
        if state == "up":
            verdicts = [_export_verdict(facts, peer, r, peers) for r in table]
            stats = Stats(imported=len(own), exported=verdicts.count("accepted"),
                          preferred=sum(r.primary for r in own), import_received=len(own), import_accepted=len(own),
                          export_received=len(verdicts), export_rejected=verdicts.count("rejected"),
                          export_filtered=verdicts.count("filtered"), export_accepted=verdicts.count("accepted"))
        elif state == "start":
            stats = Stats()
        out.append(Protocol(peer.name, "BGP", state, float(s.get("since_ts") or start), BGP_PREF,
                            "ACCEPT" if peer.kind == "Mesh" else "(unnamed)", "(unnamed)", stats,
                            bgp_state=bgp_state, last_error=error, peer=peer,
                            established_at=s.get("established_at")))
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# What the datastore says about a node


def node_facts(cluster: Any, node_name: str) -> NodeFacts:
    """NodeFacts of `node_name` in a meshsim Cluster (meshsim.model.cluster), with its peers in the order confd
    writes their `protocol bgp` blocks (meshsim.engines.bird.confd.render_bird_cfg), which is the order
    `birdc show protocols` lists them in."""
    from meshsim.engines.bird.confd import bird_input
    from meshsim.oracle.expected import host_view

    sc = cluster.scenario
    node = sc.node(node_name)
    inp = bird_input(cluster, node_name)
    mesh = sorted((p for p in inp.peers if p.kind == "Mesh"), key=lambda p: p.peer_node or "")
    rest = [sorted((p for p in inp.peers if p.kind == kind), key=lambda p: p.key(node_name))
            for kind in ("Global", "Node")]
    peers = tuple(PeerFacts(p.name, p.address, p.asn, p.kind, p.passive, p.rr_client)
                  for p in [*mesh, *rest[0], *rest[1]])
    hv = host_view(cluster, node_name)
    timers = sc.spec.timers
    return NodeFacts(
        name=node.name, router_id=node.address, asn=sc.asn(node), subnet=node.subnet, interface=hv.interface,
        gateway=hv.gateway, tunnel_address=cluster.tunnel_address(node_name), cluster_id=node.rr_cluster_id,
        hold_time=int(round(timers.hold_time)), keepalive_time=int(round(timers.keepalive_time)), peers=peers,
        blocks=tuple(b.cidr for b in inp.blocks if (b.state or "confirmed") == "confirmed"),
        pools=tuple(p.cidr for p in inp.pools if not p.disable_bgp_export))
