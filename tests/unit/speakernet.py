"""Speakers wired together in memory, for tests of the sans-IO Speaker (no router, no codec).

`Fabric` is the paired-test harness (cf. h11's ConnectionPair, aioquic's roundtrip_until_done):
it delivers every Announce/Withdraw a speaker outputs to the speaker at the other end of the
session as RouteReceived/RouteWithdrawn (with the path id sent), FIFO, until nothing is in flight.
A session side may send with ADD-PATH (RFC 7911): `session(..., add_path=True)`. No sockets, no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from meshsim.bgp.rib import Path, PeerInfo
from meshsim.bgp.speaker import (
    Announce,
    Event,
    Originate,
    Output,
    PeerDown,
    PeerUp,
    RouteReceived,
    RouteWithdrawn,
    Speaker,
    SpeakerConfig,
    Withdraw,
)

AS = 64512
POOL = IPv4Network("10.244.0.0/16")
CLUSTER = IPv4Address("244.0.0.1")
CLUSTER2 = IPv4Address("244.0.0.2")


def ip(s: str) -> IPv4Address:
    return IPv4Address(s)


def net(s: str) -> IPv4Network:
    return IPv4Network(s)


def proto_name(kind: str, addr: IPv4Address) -> str:
    return f"{kind}_{str(addr).replace('.', '_')}"


# --------------------------------------------------------------------------------------
# Harness
# --------------------------------------------------------------------------------------


@dataclass
class _Node:
    name: str
    address: IPv4Address
    speaker: Speaker
    block: IPv4Network | None
    peers: dict[str, PeerInfo] = field(default_factory=dict)


class Fabric:
    """Speakers wired together in memory.

        fab = Fabric(); fab.node("a", 1); fab.node("b", 2); fab.session("a", "b"); fab.up_all()

    Node n has address 192.168.0.n and affine block 10.244.n.0/26 (originated on request).
    """

    MAX_STEPS = 20_000

    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {}
        self.links: dict[tuple[str, str], tuple[str, str]] = {}  # (node, its peer name) -> (node, name there)
        self.add_path: dict[tuple[str, str], bool] = {}  # (node, its peer name) -> it sends with ADD-PATH
        self.up: set[frozenset[str]] = set()
        self.queue: deque[tuple[str, Event]] = deque()
        self.log: list[tuple[str, Output]] = []
        self.now = 0.0

    # -- building ----------------------------------------------------------------------

    def node(self, name: str, n: int, *, cluster_id: IPv4Address | None = None, asn: int = AS) -> _Node:
        addr = ip(f"192.168.0.{n}")
        block = net(f"10.244.{n}.0/26")
        cfg = SpeakerConfig(addr, asn, cluster_id, (POOL,), (block,))
        node = _Node(name, addr, Speaker(cfg), block)
        self.nodes[name] = node
        return node

    def session(self, a: str, b: str, *, kind: str = "Mesh", a_client_of_b: bool = False, b_client_of_a: bool = False,
                add_path: bool | tuple[bool, bool] = False) -> None:
        """Configure a BGP session between a and b (both sides). `b_client_of_a`: a has `rr client` for b.
        `add_path`: the session negotiates ADD-PATH send, in both directions or (a to b, b to a)."""
        na, nb = self.nodes[a], self.nodes[b]
        info_b = PeerInfo(proto_name(kind, nb.address), nb.address, nb.address, nb.speaker.config.local_as, b_client_of_a)
        info_a = PeerInfo(proto_name(kind, na.address), na.address, na.address, na.speaker.config.local_as, a_client_of_b)
        na.peers[info_b.name] = info_b
        nb.peers[info_a.name] = info_a
        self.links[(a, info_b.name)] = (b, info_a.name)
        self.links[(b, info_a.name)] = (a, info_b.name)
        a_sends, b_sends = add_path if isinstance(add_path, tuple) else (add_path, add_path)
        self.add_path[(a, info_b.name)] = a_sends
        self.add_path[(b, info_a.name)] = b_sends
        for node in (na, nb):
            self._record(node.name, node.speaker.set_peers(node.peers.values()))

    def rr_client(self, rr: str, client: str, *, add_path: bool | tuple[bool, bool] = False) -> None:
        self.session(rr, client, kind="Node", b_client_of_a=True, add_path=add_path)

    def name_of(self, a: str, b: str) -> str:
        """The protocol name under which node a knows node b."""
        return next(n for (x, n), (y, _) in self.links.items() if x == a and y == b)

    # -- driving -----------------------------------------------------------------------

    def handle(self, node: str, event: Event) -> list[Output]:
        self.now += 0.001
        outs = self.nodes[node].speaker.handle(event, self.now)
        self._record(node, outs)
        return outs

    def _record(self, node: str, outs: list[Output]) -> None:
        for out in outs:
            self.log.append((node, out))
            if isinstance(out, (Announce, Withdraw)):
                target, name_there = self.links[(node, out.peer)]
                assert frozenset((node, target)) in self.up, f"{node} sent {out} on a session that is down"
                if isinstance(out, Announce):
                    self.queue.append((target, RouteReceived(name_there, out.prefix, out.attrs, out.path_id)))
                else:
                    self.queue.append((target, RouteWithdrawn(name_there, out.prefix, out.path_id)))

    def pump(self) -> None:
        steps = 0
        while self.queue:
            steps += 1
            assert steps < self.MAX_STEPS, "too many messages: a routing loop?"
            node, event = self.queue.popleft()
            self.handle(node, event)

    def step(self) -> None:
        """Deliver the oldest message in flight."""
        node, event = self.queue.popleft()
        self.handle(node, event)

    def bring_up(self, a: str, b: str, *, pump: bool = True) -> None:
        """The session a-b reaches Established (`pump=False`: leave what it sends in flight)."""
        self.up.add(frozenset((a, b)))
        name_b, name_a = self.name_of(a, b), self.name_of(b, a)
        self.handle(a, PeerUp(name_b, add_path_send=self.add_path[(a, name_b)]))
        self.handle(b, PeerUp(name_a, add_path_send=self.add_path[(b, name_a)]))
        if pump:
            self.pump()

    def bring_down(self, a: str, b: str, reason: str = "hold timer expired", *, graceful: bool = False,
                   pump: bool = True) -> None:
        """The session a-b goes down; `graceful`: both keep the other's paths as stale (RFC 4724)."""
        self.up.discard(frozenset((a, b)))
        # messages in flight on the dead session are lost
        self.queue = deque(
            (n, e) for n, e in self.queue
            if not (n in (a, b) and isinstance(e, (RouteReceived, RouteWithdrawn))
                    and self.links[(n, e.peer)][0] in (a, b))
        )
        self.handle(a, PeerDown(self.name_of(a, b), reason, graceful))
        self.handle(b, PeerDown(self.name_of(b, a), reason, graceful))
        if pump:
            self.pump()

    def up_all(self) -> None:
        for (a, _), (b, _) in sorted(self.links.items()):
            if a < b and frozenset((a, b)) not in self.up:
                self.bring_up(a, b)

    def originate(self, node: str, *prefixes: IPv4Network, pump: bool = True) -> None:
        self.handle(node, Originate(frozenset(prefixes)))
        if pump:
            self.pump()

    def originate_blocks(self, *names: str) -> None:
        for name in names or tuple(self.nodes):
            block = self.nodes[name].block
            assert block is not None
            self.originate(name, block)

    # -- looking -----------------------------------------------------------------------

    def best(self, node: str, prefix: IPv4Network) -> Path | None:
        entry = self.nodes[node].speaker.loc_rib().get(prefix)
        return entry[0] if entry else None

    def outputs(self, kind: type, node: str | None = None) -> list[Output]:
        return [o for n, o in self.log if isinstance(o, kind) and (node is None or n == node)]

    def clear_log(self) -> None:
        self.log.clear()


def mesh(n: int, *, add_path: bool = False) -> Fabric:
    fab = Fabric()
    names = [f"node{i}" for i in range(1, n + 1)]
    for i, name in enumerate(names, start=1):
        fab.node(name, i)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            fab.session(a, b, add_path=add_path)
    return fab


def rr_fabric(clients: dict[str, tuple[str, ...]], rrs: dict[str, IPv4Address], *, add_path: bool = False) -> Fabric:
    """RR nodes rr1.. (addresses .101..) with the given cluster ids, peered with each other as
    non-clients; each client (addresses .1..) peers with the listed RRs as their client.
    `add_path`: every session negotiates ADD-PATH in both directions (Calico's `add paths on`)."""
    fab = Fabric()
    for i, (name, cid) in enumerate(rrs.items(), start=101):
        fab.node(name, i, cluster_id=cid)
    for i, name in enumerate(clients, start=1):
        fab.node(name, i)
    rr_names = list(rrs)
    for i, a in enumerate(rr_names):
        for b in rr_names[i + 1:]:
            fab.session(a, b, kind="Node", add_path=add_path)
    for client, its_rrs in clients.items():
        for rr in its_rrs:
            fab.rr_client(rr, client, add_path=add_path)
    return fab


def block(fab: Fabric, name: str) -> IPv4Network:
    b = fab.nodes[name].block
    assert b is not None
    return b
