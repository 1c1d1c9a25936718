"""BIRD as calico-node runs it: confd's three config files for one node, and BIRD's own output read back.

Owns
- `BirdInput` (what confd reads from the datastore for one node: its address and subnet, AS, cluster ID,
  its BGP peers, its IPAM blocks with their affinity state, the IP pools) built from the cluster model
  (`bird_input(cluster, node)`) or from the config a node process is handed (`bird_input_from_config`);
- `render(inp, dialect)`: `bird.cfg`, `bird_aggr.cfg` and `bird_ipam.cfg` as confd renders them from
  Calico v3.28's templates (`confd/etc/calico/confd/templates/*.template`). `dialect="bird1"` reproduces
  Calico's output byte for byte (whitespace included; checked against Calico's compiled test outputs
  `confd/tests/compiled_templates/...` by git blob id in tests/unit/test_bird.py). `dialect="bird2"` is
  what meshsim runs, because Debian ships BIRD 2 (bird2 2.0.12) and Calico's BIRD is a patched 1.x;
- parsers for `birdc show protocols`, `show protocols all` and `show route [all]` (BIRD 2.0 formats).

Where BIRD 2's syntax forces a difference (every other line is the same text as Calico's):

| Calico (BIRD 1.x)                                   | meshsim (BIRD 2)                                    | why |
|-----------------------------------------------------|-----------------------------------------------------|-----|
| kernel: `import all; export filter calico_kernel_programming;` | the same inside `ipv4 { ... };`, and `metric 0;` | BIRD 2 puts import/export in channels; its kernel protocol defaults to `metric 32`, which `ip route` would print |
| direct / static: no channel                          | `ipv4;`                                             | a BIRD 2 protocol without a channel carries no routes |
| template: `gateway recursive; add paths on;`         | `ipv4 { gateway recursive; add paths on; };`         | channel options in BIRD 2 (a protocol's `ipv4 { }` extends the template's) |
| bgp: `import all;` / `import filter {...}; export filter {...};` | the same inside `ipv4 { ... };`          | channel options |
| `next hop keep;`                                     | inside the channel                                  | channel option |
| `listen bgp port N;`                                 | `local port N` in the template                      | BIRD 2 has no global `listen bgp` |
| `krt_tunnel = "tunl0";` / `krt_tunnel = "";`         | `calico_tunnel("tunl0");` / `calico_tunnel("");`    | `krt_tunnel` is Calico's BIRD patch (sets the IPIP device and RTNH_F_ONLINK); BIRD 2 says the same with `ifname`, `onlink` and `gw` in a small function |

meshsim additions, present only when asked for: `hold time` / `keepalive time` in the template when the
scenario's timers differ from BIRD's defaults (240 s / 80 s, what Calico runs). Disabled pools are rendered
like `disableBGPExport` pools (not exported), as meshsim's expected tables assume.
Pure: no asyncio, no subprocess, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Iterable, Sequence

BIRD_DEFAULT_HOLD = 240.0
BIRD_DEFAULT_KEEPALIVE = 80.0
DIALECTS = ("bird1", "bird2")
FILES = ("bird.cfg", "bird_aggr.cfg", "bird_ipam.cfg")


# ----------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class BirdPeer:
    """One `protocol bgp` block."""

    name: str  # Mesh_192_168_0_82, Node_..., Global_...[_port_N]
    kind: str  # Mesh | Node | Global
    address: IPv4Address
    asn: int
    port: int | None = None  # rendered as `port N` when set
    passive: bool = False
    rr_client: bool = False
    peer_node: str | None = None  # the Calico node behind the address, None for an external peer
    source_address: bool = True  # BGPPeer sourceAddress UseNodeIP (the default)
    restart_time: str = ""
    keep_next_hop: bool = False

    def key(self, node: str) -> str:
        """The datastore key confd prints in `# For peer KEY`."""
        suffix = f"-{self.port}" if self.port else ""
        if self.kind == "Global":
            return f"/bgp/v1/global/peer_v4/{self.address}{suffix}"
        if self.kind == "Node":
            return f"/bgp/v1/host/{node}/peer_v4/{self.address}{suffix}"
        return f"/bgp/v1/host/{self.peer_node}/ip_addr_v4"


@dataclass(frozen=True)
class BirdHost:
    """A node as the mesh section of bird.cfg walks them (`lsdir /bgp/v1/host`)."""

    name: str
    address: IPv4Address | None
    cluster_id: IPv4Address | None = None


@dataclass(frozen=True)
class BirdBlock:
    cidr: IPv4Network
    state: str | None = "confirmed"  # confirmed | pending | None ("implicitly confirmed")


@dataclass(frozen=True)
class BirdPool:
    cidr: IPv4Network
    ipip_mode: str = "Never"  # Always | CrossSubnet | Never
    vxlan_mode: str = "Never"
    disable_bgp_export: bool = False


@dataclass(frozen=True)
class BirdInput:
    """What confd reads from the datastore to render one node's BIRD configuration."""

    name: str
    address: IPv4Address
    network: IPv4Network  # /bgp/v1/host/<node>/network_v4
    asn: int
    cluster_id: IPv4Address | None = None
    router_id: IPv4Address | None = None  # default: the node address
    listen_port: int | None = None  # BGPConfiguration listenPort, when not 179
    log_severity: str = "Info"
    mesh_enabled: bool = True
    hosts: tuple[BirdHost, ...] | None = None  # every node, for the mesh section's comments; None: mesh peers only
    peers: tuple[BirdPeer, ...] = ()
    blocks: tuple[BirdBlock, ...] = ()
    pools: tuple[BirdPool, ...] = ()
    hold_time: float | None = None
    keepalive_time: float | None = None
    tunnel_device: str = "tunl0"

    @property
    def mesh_peers(self) -> list[BirdPeer]:
        return [p for p in self.peers if p.kind == "Mesh"]


def _pool_of(p: Any) -> BirdPool:
    if isinstance(p, dict):
        return BirdPool(cidr=IPv4Network(p["cidr"]), ipip_mode=p.get("ipip_mode", "Never"),
                        vxlan_mode=p.get("vxlan_mode", "Never"),
                        disable_bgp_export=bool(p.get("disable_bgp_export")) or bool(p.get("disabled")))
    return BirdPool(cidr=p.cidr, ipip_mode=p.ipip_mode, vxlan_mode=p.vxlan_mode,
                    disable_bgp_export=p.disable_bgp_export or p.disabled)


def bird_input(cluster: Any, node_name: str, *, blocks: Sequence[BirdBlock] | None = None,
               listen_port: int | None = None) -> BirdInput:
    """confd's view of `node_name` in a meshsim Cluster (meshsim.model.cluster)."""
    sc = cluster.scenario
    node = sc.node(node_name)
    peers = []
    for p in cluster.peerings()[node_name]:
        peers.append(BirdPeer(name=p.name, kind=p.prefix, address=p.peer_address, asn=p.peer_as, port=p.peer_port,
                              passive=p.passive, rr_client=p.rr_client, peer_node=p.peer_node))
    if blocks is None:
        blocks = [BirdBlock(b.cidr, b.state) for b in cluster.ipam.blocks_of(node_name)]
    hosts = tuple(BirdHost(n.name, n.address, n.rr_cluster_id) for n in sorted(sc.nodes, key=lambda n: n.name))
    port = listen_port if listen_port is not None else (sc.bgp.listen_port if sc.bgp.listen_port != 179 else None)
    timers = sc.spec.timers
    return BirdInput(
        name=node.name, address=node.address, network=node.subnet, asn=sc.asn(node), cluster_id=node.rr_cluster_id,
        listen_port=port, log_severity=sc.bgp.log_severity_screen, mesh_enabled=sc.bgp.node_to_node_mesh_enabled,
        hosts=hosts, peers=tuple(peers), blocks=tuple(blocks), pools=tuple(_pool_of(p) for p in sc.pools),
        hold_time=timers.hold_time, keepalive_time=timers.keepalive_time,
    )


def bird_input_from_config(config: Any) -> BirdInput:
    """confd's view from a node process's NodeConfig (meshsim.agent.config): no other hosts are known, so the
    mesh section has no `# Skipping ...` comments."""
    kinds = {"node-to-node mesh": "Mesh", "global": "Global", "node specific": "Node"}
    peers = tuple(BirdPeer(name=p.name, kind=kinds.get(p.type, p.name.split("_", 1)[0]), address=IPv4Address(p.address),
                           asn=p.asn, port=p.port if p.port != 179 else None, passive=p.passive,
                           rr_client=p.rr_client, peer_node=p.peer_node) for p in config.peers)
    affine = set(config.local.affine)
    blocks = tuple(BirdBlock(IPv4Network(b), "confirmed" if b in affine else "pending") for b in config.local.blocks)
    return BirdInput(
        name=config.name, address=IPv4Address(config.address), network=IPv4Network(config.subnet), asn=config.asn,
        cluster_id=IPv4Address(config.cluster_id) if config.cluster_id else None,
        listen_port=config.bgp_port if config.bgp_port != 179 else None,
        mesh_enabled=any(p.kind == "Mesh" for p in peers), peers=peers, blocks=blocks,
        pools=tuple(_pool_of(p) for p in config.pools), hold_time=float(config.hold_time),
        keepalive_time=float(config.keepalive_time),
    )


# ----------------------------------------------------------------------------------------------
# Rendering (the Go templates' whitespace is reproduced on purpose: dialect bird1 is byte-exact)

_PASSIVE_MESH = "\n  passive on; # Mesh is unidirectional, peer will connect to us."
_PASSIVE_GLOBAL = "\n  passive on; # Peering is unidirectional, peer will connect to us."
_SOURCE = "\n  source address {ip};  # The local address we use for the TCP connection"
_IMPORT_ALL = ("  import all;        # Import all routes, since we don't know what the upstream\n"
               "                     # topology is and therefore have to trust the ToR/RR.")
_EXPORT = ("  export filter {{\n    calico_export_to_bgp_peers({internal});\n    reject;\n"
           "  }};  # Only want to export routes for workloads.")
_IMPORT_ACCEPT = ("  import filter {\n    accept; # Prior to introduction of BGP Filters we used \"import all\" so use "
                  "default accept behaviour on import\n  };")


def _logging(inp: BirdInput) -> str:
    level = inp.log_severity.lower()
    if level == "debug":
        return "\n  debug all;"
    if level == "none":
        return ""
    return "\n  debug { states };"


def _channel(lines: list[str], dialect: str, extra: Sequence[str] = ()) -> str:
    """Channel-level statements: as they are in BIRD 1, wrapped in `ipv4 { ... };` in BIRD 2."""
    if dialect == "bird1":
        return "\n".join(lines)
    body = "\n".join("  " + part for line in lines for part in line.split("\n"))
    tail = "".join(f"\n    {e}" for e in extra)
    return f"  ipv4 {{\n{body}{tail}\n  }};"


def _timers(inp: BirdInput) -> str:
    out = ""
    if inp.hold_time is not None and inp.hold_time != BIRD_DEFAULT_HOLD:
        out += f"\n  hold time {int(round(inp.hold_time))};  # meshsim: the scenario's timers"
    if inp.keepalive_time is not None and inp.keepalive_time != BIRD_DEFAULT_KEEPALIVE:
        out += f"\n  keepalive time {int(round(inp.keepalive_time))};"
    return out


def render_bird_cfg(inp: BirdInput, dialect: str = "bird2") -> str:
    _check(dialect)
    rid = str(inp.router_id or inp.address)
    log = _logging(inp)
    s = "function apply_communities ()\n{\n}\n\n# Generated by confd\ninclude \"bird_aggr.cfg\";\ninclude \"bird_ipam.cfg\";"
    s += f"\n\nrouter id {rid};"
    if inp.listen_port and dialect == "bird1":
        s += f"\n# Set global listen_port\nlisten bgp port {inp.listen_port};"
    s += "\n\n# Configure synchronization between routing tables and kernel.\nprotocol kernel {\n"
    s += "  learn;             # Learn all alien routes from the kernel\n"
    s += "  persist;           # Don't remove routes on bird shutdown\n"
    s += "  scan time 2;       # Scan kernel routing table every 2 seconds\n"
    if dialect == "bird1":
        s += "  import all;\n  export filter calico_kernel_programming; # Default is export none\n"
    else:
        s += ("  ipv4 {\n    import all;\n    export filter calico_kernel_programming; # Default is export none\n  };\n"
              "  metric 0;          # BIRD 2 defaults to metric 32; Calico's BIRD 1 programs no metric\n")
    s += ("  graceful restart;  # Turn on graceful restart to reduce potential flaps in\n"
          "                     # routes when reloading BIRD configuration.  With a full\n"
          "                     # automatic mesh, there is no way to prevent BGP from\n"
          "                     # flapping since multiple nodes update their BGP\n"
          "                     # configuration at the same time, GR is not guaranteed to\n"
          "                     # work correctly in this scenario.\n"
          "  merge paths on;    # Allow export multipath routes (ECMP)\n}")
    s += f"\n\n# Watch interface up/down events.\nprotocol device {{{log}\n  scan time 2;    # Scan interfaces every 2 seconds\n}}"
    s += f"\n\nprotocol direct {{{log}"
    if dialect == "bird2":
        s += "\n  ipv4;"
    s += ("\n  interface -\"cali*\", -\"kube-ipvs*\", \"*\"; # Exclude cali* and kube-ipvs* but\n"
          "                                          # include everything else.  In\n"
          "                                          # IPVS-mode, kube-proxy creates a\n"
          "                                          # kube-ipvs0 interface. We exclude\n"
          "                                          # kube-ipvs0 because this interface\n"
          "                                          # gets an address for every in use\n"
          "                                          # cluster IP. We use static routes\n"
          "                                          # for when we legitimately want to\n"
          "                                          # export cluster IPs.\n}")
    s += "\n\n\n# Template for all BGP clients\ntemplate bgp bgp_template {" + log
    s += "\n  description \"Connection to BGP peer\";"
    if dialect == "bird2" and inp.listen_port:
        s += f"\n  local port {inp.listen_port} as {inp.asn};"
    else:
        s += f"\n  local as {inp.asn};"
    if dialect == "bird1":
        s += "\n  gateway recursive; # This should be the default, but just in case.\n  add paths on;"
    else:
        s += "\n  ipv4 {\n    gateway recursive; # This should be the default, but just in case.\n    add paths on;\n  };"
    s += ("\n  graceful restart;  # See comment in kernel section about graceful restart.\n"
          "  connect delay time 2;\n  connect retry time 5;\n  error wait time 5,30;")
    s += _timers(inp) + "\n}"
    s += "\n\n# -------------- BGP Filters ------------------\n# No v4 BGPFilters configured"
    s += "\n\n# ------------- Node-to-node mesh -------------"
    s += _mesh_section(inp, dialect)
    s += "\n\n\n# ------------- Global peers -------------\n"
    globals_ = sorted((p for p in inp.peers if p.kind == "Global"), key=lambda p: p.key(inp.name))
    if globals_:
        s += "\n"
        for p in globals_:
            s += f"\n\n# For peer {p.key(inp.name)}\n" + _explicit_peer(inp, p, dialect) + "\n"
        s += "\n"
    else:
        s += "# No global peers configured."
    s += "\n\n\n# ------------- Node-specific peers -------------\n\n"
    nodes_ = sorted((p for p in inp.peers if p.kind == "Node"), key=lambda p: p.key(inp.name))
    if nodes_:
        s += "\n"
        for p in nodes_:
            s += f"\n\n# For peer {p.key(inp.name)}\n" + _explicit_peer(inp, p, dialect) + "\n"
        s += "\n"
    else:
        s += "# No node-specific peers configured."
    return s + "\n\n"


def _mesh_section(inp: BirdInput, dialect: str) -> str:
    if inp.cluster_id is not None:
        return (f"\n# This node ({inp.name}) is configured as a route reflector with cluster ID {inp.cluster_id};\n"
                "# ignore node-to-node mesh setting.")
    if not inp.mesh_enabled:
        return "\n\n# Node-to-node mesh disabled\n"
    out = "\n\n"
    mesh = {p.address: p for p in inp.mesh_peers}
    if inp.hosts is not None:
        for host in sorted(inp.hosts, key=lambda h: h.name):
            if host.address is None:
                out += "\n\n"
                continue
            out += f"\n\n\n\n# For peer /bgp/v1/host/{host.name}/ip_addr_v4\n"
            if host.address == inp.address:
                out += f"# Skipping ourselves ({inp.address})"
            elif host.cluster_id is not None:
                out += (f"# Skipping {host.address} ({host.name}) as it is a route reflector with cluster ID "
                        f"{host.cluster_id}\n")
            elif host.address in mesh:
                out += _mesh_peer(inp, mesh[host.address], dialect)
    else:
        for p in sorted(inp.mesh_peers, key=lambda p: p.peer_node or ""):
            out += f"\n\n\n\n# For peer {p.key(inp.name)}\n" + _mesh_peer(inp, p, dialect)
    return out + "\n"


def _mesh_peer(inp: BirdInput, p: BirdPeer, dialect: str) -> str:
    port = f"port {p.port} " if p.port else ""
    s = f"protocol bgp {p.name} from bgp_template {{\n  neighbor {p.address} {port}as {p.asn};"
    s += _SOURCE.format(ip=inp.address) + "\n"
    s += _channel([_IMPORT_ALL, _EXPORT.format(internal="true")], dialect)
    if p.passive:
        s += _PASSIVE_MESH
    if p.restart_time:
        s += f"\n  graceful restart time {p.restart_time};"
    return s + "\n}"


def _explicit_peer(inp: BirdInput, p: BirdPeer, dialect: str) -> str:
    port = f"port {p.port} " if p.port else ""
    s = f"protocol bgp {p.name} from bgp_template {{\n  ttl security off;\n  multihop;"
    s += f"\n  neighbor {p.address} {port}as {p.asn};"
    if p.source_address:
        s += _SOURCE.format(ip=inp.address)
    internal = "true" if p.asn == inp.asn else "false"
    keep = p.keep_next_hop and p.asn != inp.asn
    extra = ["next hop keep;"] if keep and dialect == "bird2" else []
    s += "\n" + _channel([_IMPORT_ACCEPT, _EXPORT.format(internal=internal)], dialect, extra)
    if p.kind == "Global" and p.passive:
        s += _PASSIVE_GLOBAL
    if p.restart_time:
        s += f"\n  graceful restart time {p.restart_time};"
    if p.rr_client and inp.cluster_id is not None:
        s += f"\n  rr client;\n  rr cluster id {inp.cluster_id};"
    if keep and dialect == "bird1":
        s += "\n  next hop keep;"
    return s + "\n}"


def _block_key(b: BirdBlock) -> str:
    return str(b.cidr).replace("/", "-")


def render_bird_aggr_cfg(inp: BirdInput, dialect: str = "bird2") -> str:
    _check(dialect)
    blocks = sorted(inp.blocks, key=_block_key)
    s = "# Generated by confd\n\nprotocol static {"
    if dialect == "bird2":
        s += "\n   ipv4;"
    if blocks:
        s += "\n   # IP blocks for this host."
        for b in blocks:
            if b.cidr.prefixlen != 32:
                s += f"\n   route {b.cidr} blackhole;"
    else:
        s += "\n   # No IP blocks or static routes for this host."
    s += "\n}\n\n# Aggregation of routes on this host; export the block, nothing beneath it.\nfunction calico_aggr ()\n{"
    for b in blocks:
        if b.state:
            s += f"\n      # Block {b.cidr} is {b.state}"
            if b.state != "confirmed":
                continue
        else:
            s += f"\n      # Block {b.cidr} is implicitly confirmed."
        s += f"\n      if ( net = {b.cidr} ) then {{ accept; }}\n      if ( net ~ {b.cidr} ) then {{ reject; }}"
    return s + "\n}\n"


def _pool_key(p: BirdPool) -> str:
    return str(p.cidr).replace("/", "-")


def render_bird_ipam_cfg(inp: BirdInput, dialect: str = "bird2") -> str:
    _check(dialect)
    pools = sorted(inp.pools, key=_pool_key)
    s = "# Generated by confd\nfunction reject_disabled_pools ()\n{\n"
    for p in pools:
        if p.disable_bgp_export:
            s += f"\n  if ( net ~ {p.cidr} ) then {{ reject; }}"
    s += ("\n}\n\nfunction reject_tunnel_routes () {\n"
          "  # Don't export tunnel routes to other nodes, Felix programs them.\n"
          "  # IPIP routes are handled by Bird, and it does not re-advertise them.\n"
          "  if (defined(ifname)) then {\n"
          "     if ((ifname ~ \"*.cali\") || (ifname ~ \"*.calico\")) then {\n"
          "        reject;\n     }\n  }\n}\n\n"
          "function calico_export_to_bgp_peers(bool internal_peer) {\n"
          "  # filter code terminates when it calls `accept;` or `reject;`,\n"
          "  # call reject_disabled_pools() first, then reject_tunnel_routes(),\n"
          "  # then apply_communities() and then calico_aggr()\n"
          "  reject_disabled_pools();\n  if (internal_peer) then {\n    reject_tunnel_routes();\n  }\n"
          "  apply_communities();\n  calico_aggr();\n")
    for p in pools:
        if p.disable_bgp_export:
            s += f"\n  # Skip {p.cidr} as BGP export is disabled for it"
        else:
            s += f"\n  if ( net ~ {p.cidr} ) then {{\n    accept;\n  }}"
    s += "\n}\n\n"
    if dialect == "bird2":
        s += ("\n# BIRD 2 has no krt_tunnel (Calico's BIRD 1 patch: program the route through the IPIP device with\n"
              "# RTNH_F_ONLINK). The same kernel route: `X via <BGP next hop> dev <dev> proto bird onlink`.\n"
              "function calico_tunnel(string tunnel_dev) {\n"
              "  if ( tunnel_dev != \"\" && defined(bgp_next_hop) ) then {\n"
              "    ifname = tunnel_dev;\n    onlink = true;\n    gw = bgp_next_hop;\n  }\n}\n")
    s += "\nfilter calico_kernel_programming {\n"
    for p in pools:
        s += f"\n  if ( net ~ {p.cidr} ) then {{"
        if p.vxlan_mode != "Never":
            s += "\n    # Don't program VXLAN routes into the kernel - these are handled by Felix.\n    reject;\n  }"
        elif p.ipip_mode == "CrossSubnet":
            s += (f"\n    if defined(bgp_next_hop) && ( bgp_next_hop ~ {inp.network} ) then\n"
                  f"      {_tunnel('', dialect)}\n    else\n      {_tunnel(inp.tunnel_device, dialect)}\n"
                  "    accept;\n  }")
        else:
            dev = inp.tunnel_device if p.ipip_mode == "Always" else ""
            s += f"\n    {_tunnel(dev, dialect)}\n    accept;\n  }}"
        s += "\n"
    return s + "\n  accept;\n}\n"


def _tunnel(dev: str, dialect: str) -> str:
    return f'krt_tunnel = "{dev}";' if dialect == "bird1" else f'calico_tunnel("{dev}");'


def render(inp: BirdInput, dialect: str = "bird2") -> dict[str, str]:
    """The three files confd writes: {"bird.cfg": ..., "bird_aggr.cfg": ..., "bird_ipam.cfg": ...}."""
    return {"bird.cfg": render_bird_cfg(inp, dialect), "bird_aggr.cfg": render_bird_aggr_cfg(inp, dialect),
            "bird_ipam.cfg": render_bird_ipam_cfg(inp, dialect)}


def _check(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown BIRD dialect {dialect!r} (want one of {', '.join(DIALECTS)})")


def git_blob_id(text: str) -> str:
    """`git hash-object` of a text: how the tests name a file of Calico's repository without copying it."""
    import hashlib

    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# ----------------------------------------------------------------------------------------------
# Reading BIRD back


@dataclass(frozen=True)
class ProtocolRow:
    """One line of `birdc show protocols`."""

    name: str
    proto: str
    table: str
    state: str  # up | start | down | stop | flush
    since: str
    info: str


@dataclass
class ProtocolDetail:
    """What `show protocols all` adds for one protocol."""

    row: ProtocolRow
    bgp_state: str | None = None
    neighbor_address: str | None = None
    neighbor_id: str | None = None
    last_error: str | None = None
    routes: dict[str, int] = field(default_factory=dict)  # imported, exported, preferred ...
    # "Route change stats": {"import updates": {"received": 1, ...}, ...}; "---" becomes None
    stats: dict[str, dict[str, int | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class BirdRoute:
    """One route of `show route [all]`."""

    prefix: IPv4Network
    kind: str  # unicast | blackhole | unreachable | prohibit
    protocol: str
    since: str
    primary: bool
    preference: int
    via: tuple[tuple[str, str], ...] = ()  # (gateway, interface) per next hop
    dev: str | None = None  # a device route
    attrs: tuple[tuple[str, str], ...] = ()  # ("BGP.next_hop", "192.168.0.82"), ...
    source: str | None = None  # "from X" (the BGP neighbor when it differs from the protocol's)
    sync_error: bool = False  # marked `!`: the best route, which the kernel protocol failed to install

    def attr(self, name: str) -> str | None:
        return dict(self.attrs).get(name)


_HEADER_RE = re.compile(r"^Name\s+Proto\s+Table\s+State\s+Since\s+Info")


def _strip_banner(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("BIRD ")]


def parse_protocols(text: str) -> list[ProtocolRow]:
    """`birdc show protocols` (BIRD 2.0): Name Proto Table State Since Info."""
    rows = []
    for line in _strip_banner(text):
        if _HEADER_RE.match(line) or line[0].isspace():
            continue
        parts = line.split()
        if len(parts) < 5:
            continue
        rows.append(ProtocolRow(parts[0], parts[1], parts[2], parts[3], parts[4], " ".join(parts[5:])))
    return rows


_STAT_ROW = re.compile(r"^\s+(Import updates|Import withdraws|Export updates|Export withdraws):\s+(.*)$")
_STAT_COLS = ("received", "rejected", "filtered", "ignored", "accepted")


def parse_protocols_all(text: str) -> dict[str, ProtocolDetail]:
    """`birdc show protocols all`: one ProtocolDetail per protocol."""
    out: dict[str, ProtocolDetail] = {}
    cur: ProtocolDetail | None = None
    for line in _strip_banner(text):
        if _HEADER_RE.match(line):
            continue
        if not line[0].isspace():
            rows = parse_protocols(line)
            if rows:
                cur = ProtocolDetail(rows[0])
                out[cur.row.name] = cur
            continue
        if cur is None:
            continue
        m = _STAT_ROW.match(line)
        if m:
            values = m.group(2).split()
            cur.stats[m.group(1).lower()] = {c: (None if v == "---" else int(v)) for c, v in zip(_STAT_COLS, values)}
            continue
        key, _, value = line.strip().partition(":")
        value = value.strip()
        match key:
            case "BGP state":
                cur.bgp_state = value
            case "Neighbor address":
                cur.neighbor_address = value
            case "Neighbor ID":
                cur.neighbor_id = value
            case "Last error":
                cur.last_error = value
            case "Routes":
                for part in value.split(","):
                    bits = part.split()
                    if len(bits) == 2 and bits[0].isdigit():
                        cur.routes[bits[1]] = int(bits[0])
    return out


_ROUTE_RE = re.compile(
    r"^(?P<prefix>\d+\.\d+\.\d+\.\d+/\d+)?\s+(?P<kind>unicast|blackhole|unreachable|prohibit)\s+"
    r"\[(?P<proto>\S+) (?P<since>[^\]]*?)(?: from (?P<src>\S+))?\]\s*(?P<primary>[*!])?\s*\((?P<pref>\d+)")
_VIA_RE = re.compile(r"^\s+via (?P<gw>\S+) on (?P<dev>\S+)")
_DEV_RE = re.compile(r"^\s+dev (?P<dev>\S+)")
_ATTR_RE = re.compile(r"^\s+(?P<key>[A-Za-z][\w.]*):\s?(?P<value>.*)$")


def parse_routes(text: str) -> list[BirdRoute]:
    """`birdc show route [all]` (BIRD 2.0): every path, with next hops and (with `all`) attributes."""
    routes: list[BirdRoute] = []
    cur: dict[str, Any] | None = None
    prefix: IPv4Network | None = None

    def flush() -> None:
        if cur is not None:
            routes.append(BirdRoute(**cur))

    for line in text.splitlines():
        if not line.strip() or line.startswith("BIRD ") or line.startswith("Table "):
            continue
        m = _ROUTE_RE.match(line)
        if m:
            flush()
            if m.group("prefix"):
                prefix = IPv4Network(m.group("prefix"))
            if prefix is None:
                cur = None
                continue
            cur = {"prefix": prefix, "kind": m.group("kind"), "protocol": m.group("proto"), "since": m.group("since"),
                   "primary": m.group("primary") == "*", "preference": int(m.group("pref")), "via": (),
                   "dev": None, "attrs": (), "source": m.group("src"), "sync_error": m.group("primary") == "!"}
            continue
        if cur is None:
            continue
        if (v := _VIA_RE.match(line)):
            cur["via"] = (*cur["via"], (v.group("gw"), v.group("dev")))
        elif (d := _DEV_RE.match(line)):
            cur["dev"] = d.group("dev")
        elif (a := _ATTR_RE.match(line)):
            cur["attrs"] = (*cur["attrs"], (a.group("key"), a.group("value").strip()))
    flush()
    return routes


def bgp_attrs(route: BirdRoute) -> dict[str, Any]:
    """A BGP route's attributes in the shape of meshsim's /rib entries."""
    as_path = [int(x) for x in (route.attr("BGP.as_path") or "").split() if x.isdigit()]
    cl = (route.attr("BGP.cluster_list") or "").split()
    lp = route.attr("BGP.local_pref")
    med = route.attr("BGP.med")
    return {"next_hop": route.attr("BGP.next_hop") or (route.via[0][0] if route.via else None),
            "local_pref": int(lp) if lp and lp.isdigit() else None, "as_path": as_path,
            "origin": (route.attr("BGP.origin") or "").lower() or None, "med": int(med) if med and med.isdigit() else None,
            "originator_id": route.attr("BGP.originator_id"), "cluster_list": cl}


def split_reply(raw_lines: Iterable[str]) -> tuple[str, int | None]:
    """BIRD's control-socket reply (`DDDD-text`, ` text`, final `DDDD text`) as birdc prints it, and the last
    reply code (8xxx/9xxx are errors)."""
    out: list[str] = []
    code: int | None = None
    for line in raw_lines:
        if len(line) >= 5 and line[:4].isdigit() and line[4] in "- ":
            code = int(line[:4])
            text = line[5:]
            if code == 0 and not text:
                continue
            out.append(text)
        elif line.startswith(" "):
            out.append(line[1:])
        else:
            out.append(line)
    return "\n".join(out) + ("\n" if out else ""), code


__all__ = ["BirdInput", "BirdPeer", "BirdHost", "BirdBlock", "BirdPool", "bird_input", "bird_input_from_config",
           "render", "render_bird_cfg", "render_bird_aggr_cfg", "render_bird_ipam_cfg", "parse_protocols",
           "parse_protocols_all", "parse_routes", "ProtocolRow", "ProtocolDetail", "BirdRoute", "bgp_attrs", "split_reply", "git_blob_id", "FILES", "DIALECTS"]
