"""`meshsim run --isolation netns`: every node in a network namespace of its own, on a Linux bridge.

Owns `NetnsFabric` (a LocalFabric whose nodes run in namespaces) and `Topology`, the plan of what it creates:
- a fabric namespace `msim-<run>-fabric` holding one bridge per node subnet; nothing is created in the host's own
  namespace, so the host's firewall, conntrack, Docker networks or addresses (even the same subnets) do not
  interfere, and no host address is ever reachable from a node;
- a namespace `msim-<run>-<node>` per node, holding its declared address on its interface (`eth0` unless the
  Scenario says otherwise) and a default route via its gateway; with IPIP pools an `ifb` device named `tunl0`
  stands in for the IPIP device this kernel lacks (no `ipip` module): BIRD and the kernel dataplane can then
  program `X via NH dev tunl0 proto bird onlink` exactly as Calico does (the routes have the right shape; the
  stand-in carries no packets);
- an underlay router namespace `msim-<run>-router` when nodes sit in several subnets or a ToR sits outside them:
  one leg per subnet holding its gateway address, forwarding on, knowing the node subnets (and ToR /32s) only;
- permanent neighbour entries for every address on every segment (calico.md: the kernel's neighbour table is
  shared by all namespaces, gc_thresh3 = 1024, and a 50-node mesh overflowed it; permanent entries are outside
  its garbage collection) with MAC addresses derived from the IPs;
- external BGP peers (a BGPPeer whose peerIP is no node: a ToR) as real `gobgpd` in `msim-<run>-tor<k>`,
  passive, exporting nothing, and `external_report()` says what each learned.
Node processes run as in LocalFabric (HTTP on their 127.x address in the host namespace, so Observer, Harness and
`meshsim status` work unchanged); their BGP engine runs inside the node's namespace (`ip netns exec`): ExaBGP
for meshsim nodes (`--dataplane kernel` programs the namespace's table too), BIRD for `implementation: bird`.
`close()` stops everything and deletes every namespace, bridge and veth, also on failure; an atexit hook
catches what an interrupted run leaves. Root only.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from meshsim.errors import RunError
from meshsim.oracle.expected import host_view
from meshsim.model.cluster import Cluster
from meshsim.agent.config import NodeConfig, loopback_map, node_configs
from meshsim.fabric.local import DEFAULT_HTTP_PORT, LocalFabric

PREFIX = "msim-"
TOR_API_PORT = 50051


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:40]


def _mac(run_byte: int, ip: IPv4Address) -> str:
    return ":".join(f"{b:02x}" for b in (0x02, run_byte, *ip.packed))


def _ip(*args: str, ns: str | None = None, check: bool = True, stdin: str | None = None) -> str:
    argv = ["ip"] + (["-n", ns] if ns else []) + list(args)
    res = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
    if check and res.returncode != 0:
        raise RunError(f"`{' '.join(argv)}` failed: {(res.stderr or res.stdout).strip()}")
    return res.stdout


def _batch(lines: list[str], ns: str | None = None, force: bool = False) -> None:
    if not lines:
        return
    args = ["-force", "-batch", "-"] if force else ["-batch", "-"]
    _ip(*args, ns=ns, stdin="\n".join(lines) + "\n", check=not force)


def _sysctl(ns: str, settings: dict[str, str]) -> None:
    cmd = ["ip", "netns", "exec", ns, "sysctl", "-q", "-w"] + [f"{k}={v}" for k, v in settings.items()]
    subprocess.run(cmd, capture_output=True, text=True, timeout=30)


@dataclass
class Endpoint:
    """An interface with an address on one L2 segment."""

    ns: str
    dev: str
    address: IPv4Address
    mac: str


@dataclass
class Tor:
    index: int
    address: IPv4Address
    asn: int
    ns: str
    neighbors: dict[str, tuple[IPv4Address, int]]  # node -> (address, AS)
    subnet: IPv4Network | None  # the node subnet it sits in, None: behind the router
    proc: asyncio.subprocess.Process | None = None
    log_path: Path | None = None


@dataclass
class Topology:
    run: str
    run_byte: int
    fabric: str
    subnets: list[IPv4Network]
    gateways: dict[IPv4Network, set[IPv4Address]]
    router: str | None
    tors: list[Tor] = field(default_factory=list)

    def bridge(self, subnet: IPv4Network) -> str:
        return f"m{self.run}b{self.subnets.index(subnet)}"

    def node_ns(self, node: str) -> str:
        return f"{PREFIX}{self.run}-{_safe(node)}"


class NetnsFabric(LocalFabric):
    def __init__(self, cluster: Cluster, *, dataplane: str = "sim", bgp_port: int | None = None,
                 http_port: int = DEFAULT_HTTP_PORT, workdir: Path | None = None, log_level: str = "info",
                 tunnel_standin: bool = True, tor_wait: float = 20.0) -> None:
        if os.geteuid() != 0:
            raise RunError("--isolation netns needs root (it creates network namespaces, bridges and veths)")
        if shutil.which("ip") is None:
            raise RunError("--isolation netns needs iproute2 (`ip`)")
        if dataplane not in ("sim", "kernel"):
            raise RunError(f"unknown dataplane {dataplane!r} (want sim or kernel)")
        self.dataplane = dataplane
        self.tunnel_standin = tunnel_standin
        self.tor_wait = tor_wait
        run = secrets.token_hex(2)
        self.topology = Topology(run=run, run_byte=int(run[:2], 16), fabric=f"{PREFIX}{run}-fabric", subnets=[],
                                 gateways={}, router=None)
        self._node_index: dict[str, int] = {}
        self._made_ns: list[str] = []
        self._made_links: list[tuple[str, str]] = []  # (ns, dev) created in the fabric namespace
        self._set_up = False
        self._torn_down = False
        self._lock = asyncio.Lock()
        for node in cluster.scenario.nodes:
            impl = cluster.scenario.host(node.name).implementation
            if impl == "bird" and shutil.which("bird") is None and not os.path.exists("/usr/sbin/bird"):
                raise RunError("node uses implementation: bird but BIRD is not installed (apt-get install bird2)",
                               node=node.name)
        super().__init__(cluster, bgp_port=bgp_port or cluster.scenario.bgp.listen_port, http_port=http_port,
                         workdir=workdir, log_level=log_level)
        self.log = self.log.bind(isolation="netns", run=run)

    # -- configs and commands ------------------------------------------------------------------------
    def implementation(self, name: str) -> str:
        return self.cluster.scenario.host(name).implementation

    def _configs(self) -> dict[str, NodeConfig]:
        sc = self.cluster.scenario
        declared = {n.name: n.address for n in sc.nodes}
        http = loopback_map(self.cluster)
        configs = node_configs(self.cluster, bgp_port=self.bgp_port, http_port=self.http_port, workdir=self.workdir,
                               session_addresses=declared, log_level=self.log_level)
        out = {}
        for name, cfg in configs.items():
            ns = self.topology.node_ns(name)
            bird = self.implementation(name) == "bird"
            out[name] = replace(cfg, http_address=str(http[name]), bgp_netns=ns, netns=ns,
                                dataplane="sim" if bird else self.dataplane)
        return out

    def _node_command(self, name: str, cfg_path: Path) -> list[str]:
        if self.implementation(name) == "bird":
            return [sys.executable, "-m", "meshsim", "birdnode", "--config", str(cfg_path)]
        return super()._node_command(name, cfg_path)

    # -- the network -----------------------------------------------------------------------------------
    def _plan(self) -> None:
        t = self.topology
        sc = self.cluster.scenario
        for node in sc.nodes:
            if node.subnet not in t.subnets:
                t.subnets.append(node.subnet)
            t.gateways.setdefault(node.subnet, set()).add(host_view(self.cluster, node.name).gateway)
        node_addrs = {n.address for n in sc.nodes}
        ext: dict[IPv4Address, Tor] = {}
        for node, peerings in self.cluster.peerings().items():
            for p in peerings:
                if p.peer_node is not None:
                    continue
                tor = ext.get(p.peer_address)
                if tor is None:
                    k = len(ext)
                    subnet = next((s for s in t.subnets if p.peer_address in s), None)
                    tor = ext[p.peer_address] = Tor(index=k, address=p.peer_address, asn=p.peer_as,
                                                    ns=f"{PREFIX}{t.run}-tor{k}", neighbors={}, subnet=subnet)
                tor.neighbors[node] = (p.local_address, p.local_as)
        t.tors = list(ext.values())
        for tor in t.tors:
            if tor.address in node_addrs:
                raise RunError(f"external peer {tor.address} is also a node address")
        needs_router = len(t.subnets) > 1 or any(tor.subnet is None for tor in t.tors)
        t.router = f"{PREFIX}{t.run}-router" if needs_router else None

    def _ipip(self) -> bool:
        return self.tunnel_standin and any(p.ipip_mode != "Never" for p in self.cluster.scenario.pools)

    def _new_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._made_ns.append(ns)
        _ip("link", "set", "lo", "up", ns=ns)
        _sysctl(ns, {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"})

    def _segment(self, subnet: IPv4Network) -> list[Endpoint]:
        """Everything holding an address on the subnet's bridge."""
        t = self.topology
        out = []
        for node in self.cluster.scenario.nodes:
            if node.subnet == subnet and node.name in self._node_index:
                out.append(Endpoint(t.node_ns(node.name), host_view(self.cluster, node.name).interface, node.address,
                                    _mac(t.run_byte, node.address)))
        if t.router:
            i = t.subnets.index(subnet)
            gws = sorted(self._router_gateways(subnet))
            for gw in gws:  # one leg per subnet: every gateway address on it answers with the leg's MAC
                out.append(Endpoint(t.router, f"eth{i}", gw, _mac(t.run_byte, gws[0])))
        for tor in t.tors:
            if tor.subnet == subnet:
                out.append(Endpoint(tor.ns, "eth0", tor.address, _mac(t.run_byte, tor.address)))
        return out

    def _router_gateways(self, subnet: IPv4Network) -> set[IPv4Address]:
        taken = {n.address for n in self.cluster.scenario.nodes} | {tor.address for tor in self.topology.tors}
        return {gw for gw in self.topology.gateways.get(subnet, set()) if gw not in taken and gw in subnet}

    def _neighbours(self, subnet: IPv4Network) -> None:
        members = self._segment(subnet)
        by_ns: dict[str, list[str]] = {}
        for me in members:
            for other in members:
                if other.address != me.address:
                    by_ns.setdefault(me.ns, []).append(
                        f"neigh replace {other.address} lladdr {other.mac} dev {me.dev} nud permanent")
        for ns, lines in by_ns.items():
            _batch(lines, ns=ns)

    def _check_http_free(self) -> None:
        """Node processes serve HTTP on their 127.x address in the host namespace: say clearly when another run
        (a LocalFabric or another netns run of the same nodes) holds it, rather than observe the wrong nodes."""
        import socket

        for name, node in self.nodes.items():
            host, port = self.http_address(name)
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does: TIME_WAIT is fine
                try:
                    s.bind((host, port))
                except OSError as exc:
                    raise RunError(f"HTTP address {host}:{port} is taken ({exc.strerror}); is another meshsim run "
                                   "of these nodes going on? (pass another http_port)", node=name) from None

    def setup(self) -> None:
        """Create the fabric, the router and the ToRs (nodes come with start_node). Idempotent."""
        if self._set_up:
            return
        self._check_http_free()
        self._set_up = True
        atexit.register(self.teardown_network)
        t = self.topology
        self._plan()
        self._new_ns(t.fabric)
        _sysctl(t.fabric, {"net.bridge.bridge-nf-call-iptables": "0", "net.bridge.bridge-nf-call-arptables": "0"})
        lines = []
        for s in t.subnets:
            br = t.bridge(s)
            lines += [f"link add {br} type bridge", f"link set {br} up"]
            self._made_links.append((t.fabric, br))
        _batch(lines, ns=t.fabric)
        if t.router:
            self._new_ns(t.router)
            _sysctl(t.router, {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0"})
            for i, s in enumerate(t.subnets):
                leg = f"m{t.run}r{i}"
                gws = sorted(self._router_gateways(s))
                self._veth(leg, t.router, f"eth{i}", t.bridge(s), _mac(t.run_byte, gws[0]) if gws else None)
                _batch([f"addr add {gw}/{s.prefixlen} dev eth{i}" for gw in gws] + [f"link set eth{i} up"],
                       ns=t.router)
        for tor in t.tors:
            self._new_ns(tor.ns)
            mac = _mac(t.run_byte, tor.address)
            if tor.subnet is not None:
                self._veth(f"m{t.run}t{tor.index}", tor.ns, "eth0", t.bridge(tor.subnet), mac)
                lines = [f"addr add {tor.address}/{tor.subnet.prefixlen} dev eth0", "link set eth0 up"]
                gws = sorted(self._router_gateways(tor.subnet))
                if gws and t.router:
                    lines.append(f"route add default via {gws[0]} dev eth0")
                _batch(lines, ns=tor.ns)
            else:
                # behind the router on a point-to-point link: its /32, the router's link address 169.254.<k>.1
                assert t.router is not None
                link = IPv4Address(f"169.254.{tor.index % 250}.1")
                rdev = f"tor{tor.index}"
                _ip("link", "add", rdev, "type", "veth", "peer", "name", "eth0", "netns", tor.ns, ns=t.router)
                _batch([f"link set {rdev} address {_mac(t.run_byte, link)}", f"addr add {link}/32 dev {rdev}",
                        f"link set {rdev} up", f"route add {tor.address}/32 dev {rdev} scope link",
                        f"neigh replace {tor.address} lladdr {mac} dev {rdev} nud permanent"], ns=t.router)
                _batch([f"link set eth0 address {mac}", f"addr add {tor.address}/32 dev eth0", "link set eth0 up",
                        f"route add {link}/32 dev eth0 scope link", f"route add default via {link} dev eth0",
                        f"neigh replace {link} lladdr {_mac(t.run_byte, link)} dev eth0 nud permanent"], ns=tor.ns)
        for name in [n.name for n in self.cluster.scenario.nodes]:
            self._add_node(name, neighbours=False)
        for s in t.subnets:
            self._neighbours(s)
        self.log.info("netns_fabric_ready", nodes=len(self._node_index), subnets=[str(s) for s in t.subnets],
                      router=t.router, tors=[str(tor.address) for tor in t.tors])

    def _veth(self, outer: str, ns: str, inner: str, bridge: str, mac: str | None) -> None:
        fab = self.topology.fabric
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns, ns=fab)
        self._made_links.append((fab, outer))
        _batch([f"link set {outer} master {bridge}", f"link set {outer} up"], ns=fab)
        if mac:
            _ip("link", "set", inner, "address", mac, ns=ns)

    def _add_node(self, name: str, neighbours: bool = True) -> None:
        if name in self._node_index:
            return
        t = self.topology
        node = self.cluster.scenario.node(name)
        if node.subnet not in t.subnets:
            raise RunError(f"subnet {node.subnet} of a node added at run time has no bridge; declare a node in it "
                           "before the run", node=name)
        idx = len(self._node_index)
        self._node_index[name] = idx
        ns = t.node_ns(name)
        hv = host_view(self.cluster, name)
        self._new_ns(ns)
        self._veth(f"m{t.run}n{idx}", ns, hv.interface, t.bridge(node.subnet), _mac(t.run_byte, node.address))
        lines = [f"addr add {node.address}/{node.subnet.prefixlen} dev {hv.interface}", f"link set {hv.interface} up"]
        onlink = "" if hv.gateway in node.subnet else " onlink"
        lines.append(f"route add default via {hv.gateway} dev {hv.interface}{onlink}")
        if self._ipip():
            lines += ["link add tunl0 type ifb", "link set tunl0 up"]
        _batch(lines, ns=ns)
        if neighbours:
            self._neighbours(node.subnet)

    def teardown_network(self) -> None:
        """Delete every namespace, bridge and veth this fabric made (idempotent; also runs at exit)."""
        if self._torn_down or not self._set_up:
            return
        self._torn_down = True
        for ns in reversed(self._made_ns):
            pids = _ip("netns", "pids", ns, check=False).split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ValueError, ProcessLookupError, PermissionError):
                    pass
        for ns, dev in reversed(self._made_links):
            _ip("link", "del", dev, ns=ns, check=False)
        for ns in reversed(self._made_ns):
            _ip("netns", "del", ns, check=False)
        atexit.unregister(self.teardown_network)

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start_node(self, name: str) -> None:
        async with self._lock:
            if not self._set_up:
                await asyncio.to_thread(self.setup)
                await self._start_tors()
            elif name not in self._node_index:
                await asyncio.to_thread(self._add_node, name)
        await super().start_node(name)

    async def close(self) -> None:
        if self.closed:
            return
        try:
            await self._stop_tors()
            await super().close()
        finally:
            await asyncio.to_thread(self.teardown_network)

    # -- ToRs (gobgpd) ---------------------------------------------------------------------------------
    def _tor_config(self, tor: Tor) -> str:
        hold = int(round(self.cluster.scenario.spec.timers.hold_time))
        keep = int(round(self.cluster.scenario.spec.timers.keepalive_time))
        lines = ["[global.config]", f"  as = {tor.asn}", f'  router-id = "{tor.address}"', "  port = 179",
                 f'  local-address-list = ["{tor.address}"]', "[global.apply-policy.config]",
                 '  default-export-policy = "reject-route"', ""]
        for node, (addr, asn) in sorted(tor.neighbors.items()):
            lines += ["[[neighbors]]", "  [neighbors.config]", f'    neighbor-address = "{addr}"', f"    peer-as = {asn}",
                      f'    description = "{node}"', "  [neighbors.transport.config]", "    passive-mode = true",
                      f'    local-address = "{tor.address}"', "  [neighbors.timers.config]", f"    hold-time = {hold}",
                      f"    keepalive-interval = {keep}", "  [neighbors.ebgp-multihop.config]", "    enabled = true",
                      "    multihop-ttl = 64", "  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]",
                      '      afi-safi-name = "ipv4-unicast"', ""]
        return "\n".join(lines)

    async def _start_tors(self) -> None:
        if not self.topology.tors:
            return
        if shutil.which("gobgpd") is None:
            raise RunError("the scenario has an external BGP peer (a BGPPeer with a peerIP that is no node); "
                           "meshsim realises it with gobgpd, which is not installed (apt-get install gobgpd)")
        for tor in self.topology.tors:
            d = self.workdir / f"tor{tor.index}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "gobgpd.toml").write_text(self._tor_config(tor))
            tor.log_path = d / "gobgpd.log"
            with open(tor.log_path, "ab") as logf:
                tor.proc = await asyncio.create_subprocess_exec(
                    "ip", "netns", "exec", tor.ns, "gobgpd", "-f", str(d / "gobgpd.toml"), "-t", "toml", "-p",
                    "--pprof-disable", "--api-hosts", f"127.0.0.1:{TOR_API_PORT}",
                    stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True)
            self.log.info("tor_started", address=str(tor.address), asn=tor.asn, pid=tor.proc.pid,
                          neighbors=len(tor.neighbors))

    async def _stop_tors(self) -> None:
        for tor in self.topology.tors:
            proc = tor.proc
            if proc is None or proc.returncode is not None:
                continue
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    break
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                    break
                except asyncio.TimeoutError:
                    continue

    async def _gobgp(self, tor: Tor, *args: str) -> Any:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", tor.ns, "gobgp", "-u", "127.0.0.1", "-p", str(TOR_API_PORT), *args, "-j",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
        if proc.returncode:
            raise RunError(f"gobgp {' '.join(args)} in {tor.ns}: {err.decode().strip()}")
        return json.loads(out or b"null")

    def tor_expected(self, tor: Tor) -> dict[str, str]:
        """What a ToR should learn: every prefix a running node originates and may export (its blocks and borrowed
        /32s), with that node's address as next hop."""
        from meshsim.oracle.expected import _exportable

        running = set(self.running())
        out = {}
        for node in self.cluster.scenario.nodes:
            if node.name not in running:
                continue
            for prefix in self.cluster.originated(node.name):
                if _exportable(self.cluster, node.name, prefix):
                    out[str(prefix)] = str(node.address)
        return out

    async def tor_state(self, tor: Tor) -> dict[str, Any]:
        rib = await self._gobgp(tor, "global", "rib", "-a", "ipv4") or {}
        neighbors = await self._gobgp(tor, "neighbor") or []
        states = {1: "idle", 2: "connect", 3: "active", 4: "opensent", 5: "openconfirm", 6: "established"}
        sessions = {}
        for n in neighbors:
            st = n.get("state", {})
            sessions[st.get("neighbor_address") or n.get("conf", {}).get("neighbor_address")] = \
                states.get(st.get("session_state"), str(st.get("session_state")))
        learned = {}
        for prefix, paths in rib.items():
            entries = []
            for path in paths:
                nh = None
                as_path: list[int] = []
                for attr in path.get("attrs", []):
                    if attr.get("type") == 3:
                        nh = attr.get("nexthop")
                    elif attr.get("type") == 2:
                        for seg in attr.get("as_paths", []):
                            as_path += seg.get("asns", [])
                entries.append({"next_hop": nh, "as_path": as_path, "from": path.get("source-id") or
                                path.get("neighbor-ip"), "best": bool(path.get("best"))})
            best = next((e for e in entries if e["best"]), entries[0] if entries else None)
            learned[prefix] = {"best": best, "paths": entries}
        return {"sessions": sessions, "learned": learned}

    async def external_report(self) -> dict[str, Any]:
        """For every ToR: its sessions, every prefix it learned with every path, and the check that it learned
        every block of the cluster with the right next hops: for each block, the path its owner advertised carries
        the owner's address, and every path's next hop is a node of the cluster. (An iBGP ToR hears each block from
        its owner only; an eBGP ToR hears it from every node it peers with, each advertising itself as next hop, so
        its best path may go through any of them.) Waits up to `tor_wait` seconds for the ToR to get there."""
        out = []
        nodes = {str(n.address) for n in self.cluster.scenario.nodes}
        for tor in self.topology.tors:
            deadline = time.monotonic() + self.tor_wait
            while True:
                try:
                    state = await self.tor_state(tor)
                except (RunError, OSError, asyncio.TimeoutError, ValueError) as exc:
                    state = {"sessions": {}, "learned": {}, "error": str(exc)}
                expected = self.tor_expected(tor)
                learned = state["learned"]
                missing = sorted(p for p in expected if p not in learned)
                no_owner = sorted(p for p, nh in expected.items() if p in learned
                                  and not any(e["next_hop"] == nh for e in learned[p]["paths"]))
                foreign = sorted(p for p, entry in learned.items()
                                 if any(e["next_hop"] not in nodes for e in entry["paths"]))
                extra = sorted(p for p in learned if p not in expected)
                best_owner = sum(1 for p, nh in expected.items() if p in learned
                                 and (learned[p]["best"] or {}).get("next_hop") == nh)
                ok = not missing and not no_owner and not foreign and not extra
                if ok or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            out.append({"address": str(tor.address), "asn": tor.asn, "implementation": "gobgpd",
                        "ebgp": any(asn != tor.asn for _, asn in tor.neighbors.values()), "namespace": tor.ns,
                        **state, "expected": expected, "missing": missing, "without_owner_path": no_owner,
                        "foreign_next_hop": foreign, "unexpected": extra, "best_via_owner": best_owner, "ok": ok})
        return {"external_peers": out}


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The lines `meshsim run` prints for the ToRs."""
    lines = []
    for tor in report.get("external_peers", []):
        up = sum(1 for s in tor["sessions"].values() if s == "established")
        n = len(tor["expected"])
        got = n - len(tor["missing"])
        right = got - len(tor["without_owner_path"])
        kind = "eBGP" if tor.get("ebgp") else "iBGP"
        lines.append(f"  ToR {tor['address']} (gobgpd, AS {tor['asn']}, {kind}): {up}/{len(tor['sessions'])} sessions "
                     f"established; learned {got}/{n} blocks, {right}/{n} with the owner's next hop, best path via "
                     f"the owner for {tor['best_via_owner']}/{n}" + ("" if tor["ok"] else "  (NOT as expected)"))
        for prefix, entry in sorted(tor["learned"].items()):
            best = entry["best"] or {}
            others = sorted({e["next_hop"] for e in entry["paths"]} - {best.get("next_hop")})
            lines.append(f"    {prefix:<20} best via {best.get('next_hop')} as-path {best.get('as_path') or []}"
                         + (f"; also via {', '.join(others)}" if others else ""))
    return lines


def fabric_factory(isolation: str = "loopback", dataplane: str = "sim", bgp_port: int | None = None,
                   log_level: str = "info"):
    """What `meshsim run --isolation/--dataplane` hands run_scenario as `fabric_factory` (None: the default)."""
    if isolation == "loopback":
        if dataplane != "sim":
            raise RunError("--dataplane kernel needs --isolation netns (each node programs its own namespace's table)")
        return None
    if isolation != "netns":
        raise RunError(f"unknown isolation {isolation!r} (want loopback or netns)")

    def make(cluster: Cluster) -> NetnsFabric:
        return NetnsFabric(cluster, dataplane=dataplane, bgp_port=bgp_port, log_level=log_level)

    return make


def check_isolation(cluster_or_scenario: Any, isolation: str) -> None:
    """BIRD nodes need namespaces (BIRD marks 127/8 next hops unreachable)."""
    sc = getattr(cluster_or_scenario, "scenario", cluster_or_scenario)
    bird = [n.name for n in sc.nodes if sc.host(n.name).implementation == "bird"]
    if bird and isolation != "netns":
        raise RunError(f"nodes {', '.join(bird)} use implementation: bird, which needs --isolation netns (root): "
                       "BIRD marks next hops in 127/8 unreachable")


__all__ = ["NetnsFabric", "Topology", "fabric_factory", "check_isolation", "IPv4Network"]
