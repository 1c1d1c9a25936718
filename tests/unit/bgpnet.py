"""A network of sans-IO BGP routers for tests: TCP connections as queues, time as a number.

`Net` plays the part of the kernel and the asyncio adapter for several `meshsim.bgp.router.Router`s:
`OpenTcp` becomes a connection to whichever router holds that address (or "Connection refused"),
`Send` becomes `TcpData` at the other end, `Close` becomes `TcpClosed` there. `run(until)` delivers
everything queued and fires each router's timers in time order, so a test of hold timers or graceful
restart takes microseconds (the h11 / aioquic paired-harness pattern).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from meshsim.bgp import fsm
from meshsim.bgp.rib import PeerInfo
from meshsim.bgp.router import Incoming, OpenTcp, PeerSpec, Router, SessionDown, SessionUp, StartAll
from meshsim.bgp.speaker import Originate, SpeakerConfig
from meshsim.bgp.timers import SessionTimers

POOL = IPv4Network("10.244.0.0/16")
AS = 64512


@dataclass
class Link:
    a: tuple[str, int]
    b: tuple[str, int]
    open: bool = True

    def other(self, end: tuple[str, int]) -> tuple[str, int]:
        return self.b if end == self.a else self.a


@dataclass
class Node:
    name: str
    address: IPv4Address
    router: Router
    frozen: bool = False
    actions: list = field(default_factory=list)


class Net:
    def __init__(self) -> None:
        self.now = 0.0
        self.nodes: dict[str, Node] = {}
        self.links: dict[tuple[str, int], Link] = {}
        self.queue: deque[tuple[str, object]] = deque()
        self.log: list[tuple[float, str, object]] = []  # every action, for assertions
        self.sent: list[tuple[float, str, int, bytes]] = []

    # -- building --------------------------------------------------------------------------------
    def add(self, name: str, address: str, *, peers: list[tuple[str, str, bool, bool]] = (), timers: SessionTimers
            = SessionTimers(hold_time=9, keepalive_time=3), cluster_id: str | None = None, blocks: tuple[str, ...] = (),
            restarting: bool = False, seed: int | None = None, start: bool = True, add_paths: bool = True) -> Router:
        """`peers`: (protocol name, peer address, passive, rr_client). `add_paths`: BIRD `add paths on` (Calico's
        default), ADD-PATH send and receive offered in the OPEN."""
        addr = IPv4Address(address)
        cfg = SpeakerConfig(router_id=addr, local_as=AS, cluster_id=IPv4Address(cluster_id) if cluster_id else None,
                            exportable_pools=(POOL,), affine_blocks=tuple(IPv4Network(b) for b in blocks))
        specs = [PeerSpec(PeerInfo(pname, IPv4Address(paddr), IPv4Address(paddr), AS, rr_client=rr),
                          IPv4Address(paddr), 179, passive, timers) for pname, paddr, passive, rr in peers]
        router = Router(cfg, specs, seed=seed if seed is not None else int(addr), restarting=restarting, now=self.now,
                        add_paths=add_paths)
        self.nodes[name] = Node(name, addr, router)
        if blocks:
            self.apply(name, router.handle(Originate(frozenset(IPv4Network(b) for b in blocks)), self.now))
        if start:
            self.apply(name, router.handle(StartAll(), self.now))
        return router

    def node_at(self, address: IPv4Address) -> Node | None:
        return next((n for n in self.nodes.values() if n.address == address), None)

    # -- performing actions --------------------------------------------------------------------------
    def apply(self, name: str, actions: list) -> None:
        node = self.nodes[name]
        for action in actions:
            self.log.append((self.now, name, action))
            match action:
                case OpenTcp(conn=cid, address=address):
                    target = self.node_at(address)
                    if target is None or target.frozen or not target.router.running:
                        self.queue.append((name, fsm.TcpFailed(cid, "Connection refused")))
                        continue
                    tcid = target.router.new_conn_id()
                    link = Link((name, cid), (target.name, tcid))
                    self.links[(name, cid)] = self.links[(target.name, tcid)] = link
                    self.queue.append((target.name, Incoming(tcid, node.address)))
                    self.queue.append((name, fsm.TcpConnected(cid)))
                case fsm.Send(conn=cid, data=data):
                    self.sent.append((self.now, name, cid, data))
                    link = self.links.get((name, cid))
                    if link is not None and link.open:
                        peer, pcid = link.other((name, cid))
                        self.queue.append((peer, fsm.TcpData(pcid, data)))
                case fsm.Close(conn=cid):
                    link = self.links.pop((name, cid), None)
                    if link is not None and link.open:
                        link.open = False
                        peer, pcid = link.other((name, cid))
                        self.links.pop((peer, pcid), None)
                        self.queue.append((peer, fsm.TcpClosed(pcid, "")))

    def deliver(self) -> None:
        while self.queue:
            name, event = self.queue.popleft()
            node = self.nodes.get(name)
            if node is None or node.frozen:
                continue
            self.apply(name, node.router.handle(event, self.now))

    def run(self, until: float) -> None:
        """Deliver what is queued, then fire timers in time order up to `until`."""
        self.deliver()
        while True:
            due = [(n.router.deadline, n.name) for n in self.nodes.values()
                   if not n.frozen and n.router.deadline is not None]
            if not due:
                break
            when = min(d for d, _ in due)
            if when > until:
                break
            self.now = max(self.now, when)
            for d, name in sorted(due):  # timers due at the same instant fire before anything travels
                if d <= when:
                    self.apply(name, self.nodes[name].router.handle(fsm.Tick(), self.now))
            self.deliver()
        self.now = max(self.now, until)

    def run_for(self, seconds: float) -> None:
        self.run(self.now + seconds)

    # -- faults ------------------------------------------------------------------------------------
    def freeze(self, name: str) -> None:
        """A host crash: nothing in, nothing out, no timers; its connections stay open."""
        self.nodes[name].frozen = True

    def kill(self, name: str) -> None:
        """SIGKILL: the kernel resets every connection (RST, no NOTIFICATION); the node is gone."""
        for (owner, cid), link in list(self.links.items()):
            if owner == name and link.open:
                link.open = False
                peer, pcid = link.other((owner, cid))
                self.queue.append((peer, fsm.TcpClosed(pcid, "Connection reset by peer")))
                self.links.pop((owner, cid), None)
                self.links.pop((peer, pcid), None)
        del self.nodes[name]

    def inject(self, name: str, peer: str, data: bytes) -> None:
        """Bytes from `peer` on its established connection to `name` (a misbehaving speaker)."""
        for (owner, cid), link in self.links.items():
            if owner == peer and link.other((owner, cid))[0] == name and link.open:
                self.queue.append((name, fsm.TcpData(link.other((owner, cid))[1], data)))
                return
        raise AssertionError(f"no connection from {peer} to {name}")

    # -- views ------------------------------------------------------------------------------------
    def routes(self, name: str) -> dict[str, str]:
        """Loc-RIB: prefix -> where the best path came from."""
        return {str(p): (path.source.name if path.source else "local")
                for p, (path, _) in self.nodes[name].router.speaker.loc_rib().items()}

    def state(self, name: str, peer: str) -> str:
        return self.nodes[name].router.session(peer).state.value

    def events(self, kind: type, name: str | None = None) -> list[tuple[float, str, object]]:
        return [(t, n, a) for t, n, a in self.log if isinstance(a, kind) and (name is None or n == name)]

    def ups(self, name: str | None = None) -> list[tuple[float, str, SessionUp]]:
        return self.events(SessionUp, name)  # type: ignore[return-value]

    def downs(self, name: str | None = None) -> list[tuple[float, str, SessionDown]]:
        return self.events(SessionDown, name)  # type: ignore[return-value]


def mesh(net: Net, n: int, **kw) -> list[str]:
    """n nodes 192.168.0.1.. in a Calico mesh: Mesh_ peers, passive toward the higher address
    (confd compares the address strings; all are single-digit here so it equals numeric order)."""
    names = [f"node{i}" for i in range(1, n + 1)]
    addrs = {nm: f"192.168.0.{i}" for i, nm in enumerate(names, 1)}
    for i, nm in enumerate(names, 1):
        peers = [(f"Mesh_192_168_0_{j}", addrs[o], addrs[o] > addrs[nm], False)
                 for j, o in enumerate(names, 1) if o != nm]
        net.add(nm, addrs[nm], peers=peers, blocks=(f"10.244.{i}.0/26",), **kw)
    return names
