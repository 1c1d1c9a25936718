"""`meshsim run --isolation netns`: every node in a network namespace of its own, on Linux bridges (root).

Owns `NetnsFabric`, a `WorkerFabric` whose nodes hold their *declared* addresses in namespaces built from
a `Topology` plan (meshsim/fabric/topology.py): bridges in a fabric namespace (nothing is added to the
host's own, so its firewall, Docker networks or addresses do not interfere), a router namespace between
subnets, permanent neighbour entries, an `ifb` device named `tunl0` standing in for the IPIP device this
kernel lacks (routes keep Calico's shape `via NH dev tunl0 proto bird onlink`), and the ToRs as gobgpd
(meshsim/fabric/tors.py). The worker processes stay in the host's namespace, serving each node's HTTP on
its 127.x address, while each meshsim node's BGP sockets are created inside its own namespace; a node
with `implementation: bird` runs real BIRD 2 inside it. `close()` stops everything and deletes every
namespace, bridge and veth, also on failure; an atexit hook catches what an interrupted run leaves.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import shutil
import signal
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from meshsim.agent.config import NodeConfig, loopback_map, node_configs
from meshsim.errors import RunError
from meshsim.fabric.local import DEFAULT_HTTP_PORT, WorkerFabric
from meshsim.fabric.topology import mac, neighbour_lines, plan, segment
from meshsim.fabric.tors import TorDaemons
from meshsim.host.iproute import batch, ip
from meshsim.model.cluster import Cluster
from meshsim.oracle.expected import host_view


def _sysctl(ns: str, settings: dict[str, str]) -> None:
    import subprocess

    cmd = ["ip", "netns", "exec", ns, "sysctl", "-q", "-w"] + [f"{k}={v}" for k, v in settings.items()]
    subprocess.run(cmd, capture_output=True, text=True, timeout=30)  # a hung command, not a slow one: it takes ms


class NetnsFabric(WorkerFabric):
    """Nodes in namespaces of their own (see the module docstring). `mode` is "netns"."""

    mode = "netns"

    def __init__(self, cluster: Cluster, *, dataplane: str = "sim", bgp_port: int | None = None,
                 http_port: int = DEFAULT_HTTP_PORT, workdir: Path | None = None, log_level: str = "info",
                 tunnel_standin: bool = True, tor_wait: float = 20.0, workers: int | None = None,
                 process_per_node: bool = False, token: str | None = None) -> None:
        if os.geteuid() != 0:
            raise RunError("--isolation netns needs root (it creates network namespaces, bridges and veths)")
        if shutil.which("ip") is None:
            raise RunError("--isolation netns needs iproute2 (`ip`)")
        if dataplane not in ("sim", "kernel"):
            raise RunError(f"unknown dataplane {dataplane!r} (want sim or kernel)")
        for node in cluster.scenario.nodes:
            if cluster.scenario.host(node.name).implementation == "bird" and shutil.which("bird") is None \
                    and not os.path.exists("/usr/sbin/bird"):
                raise RunError("node uses implementation: bird but BIRD is not installed (apt-get install bird2)",
                               node=node.name)
        self.dataplane = dataplane
        self.tunnel_standin = tunnel_standin
        run = secrets.token_hex(2)
        self.topology = plan(cluster, run)
        self._made_nodes: set[str] = set()
        self._made_ns: list[str] = []
        self._made_links: list[tuple[str, str]] = []  # (ns, dev) created in the fabric namespace
        self._set_up = False
        self._torn_down = False
        super().__init__(cluster, bgp_port=bgp_port or cluster.scenario.bgp.listen_port, http_port=http_port,
                         workdir=workdir, log_level=log_level, workers=workers, process_per_node=process_per_node,
                         token=token)
        self.tors = TorDaemons(cluster, self.topology, self.workdir, self.running, tor_wait, self.log)
        self.log = self.log.bind(isolation="netns", run=run)

    # -- configs ------------------------------------------------------------------------------------------
    def _configs(self) -> dict[str, NodeConfig]:
        declared = {n.name: n.address for n in self.cluster.scenario.nodes}
        http = loopback_map(self.cluster)
        configs = node_configs(self.cluster, bgp_port=self.bgp_port, http_port=self.http_port, workdir=self.workdir,
                               session_addresses=declared, log_level=self.log_level)
        out = {}
        for name, cfg in configs.items():
            ns = self.topology.node_ns(name)
            bird = cfg.implementation == "bird"
            out[name] = replace(cfg, http_address=str(http[name]), bgp_netns=ns, netns=ns,
                                dataplane="sim" if bird else self.dataplane)
        return out

    # -- the network --------------------------------------------------------------------------------------------
    def _new_ns(self, ns: str) -> None:
        ip("netns", "add", ns)
        self._made_ns.append(ns)
        ip("link", "set", "lo", "up", ns=ns)
        _sysctl(ns, {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"})

    def _neighbours(self, subnet: Any) -> None:
        for ns, lines in neighbour_lines(segment(self.cluster, self.topology, subnet, self._made_nodes)).items():
            batch(lines, ns=ns)

    def _check_http_free(self) -> None:
        """The workers serve each node's HTTP on its 127.x address in the host namespace: say clearly when
        another run holds it, rather than observe the wrong nodes."""
        for name in self.configs():
            host, port = self.http_address(name)
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, port))
                except OSError as exc:
                    raise RunError(f"HTTP address {host}:{port} is taken ({exc.strerror}); is another meshsim run "
                                   "of these nodes going on?", node=name) from None

    def setup(self) -> None:
        """Create the fabric, the router and the ToRs' namespaces (nodes come with start_node). Idempotent."""
        if self._set_up:
            return
        self._check_http_free()
        self._set_up = True
        atexit.register(self.teardown_network)
        t = self.topology
        self._new_ns(t.fabric)
        _sysctl(t.fabric, {"net.bridge.bridge-nf-call-iptables": "0", "net.bridge.bridge-nf-call-arptables": "0"})
        lines = []
        for s in t.subnets:
            br = t.bridge(s)
            lines += [f"link add {br} type bridge", f"link set {br} up"]
            self._made_links.append((t.fabric, br))
        batch(lines, ns=t.fabric)
        if t.router:
            self._new_ns(t.router)
            _sysctl(t.router, {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0"})
            for i, s in enumerate(t.subnets):
                gws = sorted(t.router_gateways(self.cluster, s))
                self._veth(f"m{t.run}r{i}", t.router, f"eth{i}", t.bridge(s), mac(t.run_byte, gws[0]) if gws else None)
                batch([f"addr add {gw}/{s.prefixlen} dev eth{i}" for gw in gws] + [f"link set eth{i} up"], ns=t.router)
        for tor in t.tors:
            self._tor_namespace(tor)
        for name in [n.name for n in self.cluster.scenario.nodes]:
            self._add_node(name, neighbours=False)
        for s in t.subnets:
            self._neighbours(s)
        self.log.info("netns_fabric_ready", nodes=len(self._made_nodes), subnets=[str(s) for s in t.subnets],
                      router=t.router, tors=[str(tor.address) for tor in t.tors])

    def _tor_namespace(self, tor: Any) -> None:
        from ipaddress import IPv4Address

        t = self.topology
        self._new_ns(tor.ns)
        tmac = mac(t.run_byte, tor.address)
        if tor.subnet is not None:
            self._veth(f"m{t.run}t{tor.index}", tor.ns, "eth0", t.bridge(tor.subnet), tmac)
            lines = [f"addr add {tor.address}/{tor.subnet.prefixlen} dev eth0", "link set eth0 up"]
            gws = sorted(t.router_gateways(self.cluster, tor.subnet))
            if gws and t.router:
                lines.append(f"route add default via {gws[0]} dev eth0")
            batch(lines, ns=tor.ns)
            return
        # behind the router on a point-to-point link: its /32, the router's link address 169.254.<k>.1
        assert t.router is not None
        link = IPv4Address(f"169.254.{tor.index % 250}.1")
        rdev = f"tor{tor.index}"
        ip("link", "add", rdev, "type", "veth", "peer", "name", "eth0", "netns", tor.ns, ns=t.router)
        batch([f"link set {rdev} address {mac(t.run_byte, link)}", f"addr add {link}/32 dev {rdev}",
               f"link set {rdev} up", f"route add {tor.address}/32 dev {rdev} scope link",
               f"neigh replace {tor.address} lladdr {tmac} dev {rdev} nud permanent"], ns=t.router)
        batch([f"link set eth0 address {tmac}", f"addr add {tor.address}/32 dev eth0", "link set eth0 up",
               f"route add {link}/32 dev eth0 scope link", f"route add default via {link} dev eth0",
               f"neigh replace {link} lladdr {mac(t.run_byte, link)} dev eth0 nud permanent"], ns=tor.ns)

    def _veth(self, outer: str, ns: str, inner: str, bridge: str, address: str | None) -> None:
        fab = self.topology.fabric
        ip("link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns, ns=fab)
        self._made_links.append((fab, outer))
        batch([f"link set {outer} master {bridge}", f"link set {outer} up"], ns=fab)
        if address:
            ip("link", "set", inner, "address", address, ns=ns)

    def _add_node(self, name: str, neighbours: bool = True) -> None:
        if name in self._made_nodes:
            return
        t = self.topology
        node = self.cluster.scenario.node(name)
        if node.subnet not in t.subnets:
            raise RunError(f"subnet {node.subnet} of a node added at run time has no bridge; declare a node in it "
                           "before the run", node=name)
        idx = len(self._made_nodes)
        self._made_nodes.add(name)
        ns = t.node_ns(name)
        hv = host_view(self.cluster, name)
        self._new_ns(ns)
        self._veth(f"m{t.run}n{idx}", ns, hv.interface, t.bridge(node.subnet), mac(t.run_byte, node.address))
        lines = [f"addr add {node.address}/{node.subnet.prefixlen} dev {hv.interface}", f"link set {hv.interface} up"]
        onlink = "" if hv.gateway in node.subnet else " onlink"
        lines.append(f"route add default via {hv.gateway} dev {hv.interface}{onlink}")
        if self.tunnel_standin and any(p.ipip_mode != "Never" for p in self.cluster.scenario.pools):
            lines += ["link add tunl0 type ifb", "link set tunl0 up"]
        batch(lines, ns=ns)
        if neighbours:
            self._neighbours(node.subnet)

    def teardown_network(self) -> None:
        """Delete every namespace, bridge and veth this fabric made (idempotent; also runs at exit)."""
        if self._torn_down or not self._set_up:
            return
        self._torn_down = True
        for ns in reversed(self._made_ns):
            for pid in ip("netns", "pids", ns, check=False).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ValueError, ProcessLookupError, PermissionError):
                    pass
        for ns, dev in reversed(self._made_links):
            ip("link", "del", dev, ns=ns, check=False)
        for ns in reversed(self._made_ns):
            ip("netns", "del", ns, check=False)
        atexit.unregister(self.teardown_network)

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if not self._set_up:
            await asyncio.to_thread(self.setup)
            await self.tors.start()
        await super().start()

    async def start_node(self, name: str, *, restart: bool = False, hold_bgp: bool = False) -> None:
        if not self._set_up:
            await self.start()
        if name not in self._made_nodes:
            await asyncio.to_thread(self._add_node, name)
        await super().start_node(name, restart=restart, hold_bgp=hold_bgp)

    async def external_report(self) -> dict[str, Any]:
        return await self.tors.external_report()

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["namespaces"] = list(self._made_ns)
        return out

    async def close(self) -> None:
        if self.closed:
            return
        try:
            await self.tors.stop()
            await super().close()
        finally:
            await asyncio.to_thread(self.teardown_network)


def fabric_factory(isolation: str = "loopback", dataplane: str = "sim", bgp_port: int | None = None,
                   log_level: str = "info", workers: int | None = None, process_per_node: bool = False) -> Any:
    """What `meshsim run --isolation/--dataplane/--workers` hands run_scenario as `fabric_factory`."""
    if isolation == "loopback":
        if dataplane != "sim":
            raise RunError("--dataplane kernel needs --isolation netns (each node programs its own namespace's table)")

        def local(cluster: Cluster) -> WorkerFabric:
            return WorkerFabric(cluster, bgp_port=bgp_port, log_level=log_level, workers=workers,
                                process_per_node=process_per_node)

        return local
    if isolation != "netns":
        raise RunError(f"unknown isolation {isolation!r} (want loopback or netns)")

    def make(cluster: Cluster) -> NetnsFabric:
        return NetnsFabric(cluster, dataplane=dataplane, bgp_port=bgp_port, log_level=log_level, workers=workers,
                           process_per_node=process_per_node)

    return make


def check_isolation(cluster_or_scenario: Any, isolation: str) -> None:
    """BIRD nodes need namespaces (BIRD marks 127/8 next hops unreachable); so do external peers (meshsim
    never connects to an address from a manifest it did not create itself)."""
    sc = getattr(cluster_or_scenario, "scenario", cluster_or_scenario)
    bird = [n.name for n in sc.nodes if sc.host(n.name).implementation == "bird"]
    if bird and isolation != "netns":
        raise RunError(f"nodes {', '.join(bird)} use implementation: bird, which needs --isolation netns (root): "
                       "BIRD marks next hops in 127/8 unreachable")
    if isolation != "netns" and hasattr(cluster_or_scenario, "peerings"):
        by_address: dict[Any, set[str]] = {}
        for node, ps in cluster_or_scenario.peerings().items():
            for p in ps:
                if p.peer_node is None:
                    by_address.setdefault(p.peer_address, set()).add(node)
        if by_address:
            shown = [f"{a} (peer of {len(ns)} node{'s' if len(ns) > 1 else ''}: {', '.join(sorted(ns)[:3])}"
                     f"{', ...' if len(ns) > 3 else ''})" for a, ns in sorted(by_address.items())[:5]]
            raise RunError("BGPPeers whose peerIP is no node (a ToR) are emulated as gobgpd in `--isolation netns` "
                           f"(root); on loopback meshsim never connects to an address it did not create: "
                           f"{'; '.join(shown)}" + (" ..." if len(by_address) > 5 else ""))
