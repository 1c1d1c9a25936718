"""BIRD as calico-node runs it: confd's three config files for one node (and, re-exported for its callers,
BIRD's own output read back: meshsim.engines.bird.readback).

Owns
- `render(inp, dialect)` of a `BirdInput` (meshsim.engines.bird.inputs: what confd reads from the datastore for
  one node: its address and subnet, AS, cluster ID, its BGP peers with their options, its IPAM blocks with their
  affinity state, the IP pools, BGPFilters, communities, service routes): `bird.cfg`, `bird_aggr.cfg` and `bird_ipam.cfg` as confd renders them from
  Calico v3.28's templates (`confd/etc/calico/confd/templates/*.template`). `dialect="bird1"` reproduces
  Calico's output byte for byte (whitespace included; checked against Calico's compiled test outputs
  `confd/tests/compiled_templates/...` by git blob id in tests/unit/test_bird.py). `dialect="bird2"` is
  what meshsim runs, because Debian ships BIRD 2 (bird2 2.0.12) and Calico's BIRD is a patched 1.x;
- every BGP feature of v3.28's templates: BGPFilter functions (`bgpFilterBIRDFuncs`, names truncated and
  hashed past BIRD's 64 characters as `BGPFilterFunctionName` does) and their calls in explicit peers,
  `apply_communities()`, passwords, `graceful restart time`, `next hop keep`, `allow local as`, `ttl
  security`, `reachable_by` static routes, service static routes and reject CIDRs, the RR's LB ranges,
  `listen bgp [address A] [port P]`, ignored interfaces; explicit peerings to our own address print
  `# Skipping ourselves` as confd does.

Where BIRD 2's syntax forces a difference (every other line is the same text as Calico's):

| Calico (BIRD 1.x)                                   | meshsim (BIRD 2)                                    | why |
|-----------------------------------------------------|-----------------------------------------------------|-----|
| kernel: `import all; export filter calico_kernel_programming;` | the same inside `ipv4 { ... };`, and `metric 0;` | BIRD 2 puts import/export in channels; its kernel protocol defaults to `metric 32`, which `ip route` would print |
| direct / static: no channel                          | `ipv4;`                                             | a BIRD 2 protocol without a channel carries no routes |
| template: `gateway recursive; add paths on;`         | `ipv4 { gateway recursive; add paths on; };`         | channel options in BIRD 2 (a protocol's `ipv4 { }` extends the template's) |
| bgp: `import all;` / `import filter {...}; export filter {...};` | the same inside `ipv4 { ... };`          | channel options |
| `next hop keep;`                                     | inside the channel                                  | channel option |
| `listen bgp [address A] port N;`                     | `local [A] port N` in the template                  | BIRD 2 has no global `listen bgp` |
| kernel filter: no device-route line                 | `if ( source = RTS_DEVICE ) then { reject; }` first | BIRD 1.6 keeps device routes out of the kernel unless `device routes;`; BIRD 2 has no such switch |
| `krt_tunnel = "tunl0";` / `krt_tunnel = "";`         | `calico_tunnel("tunl0");` / `calico_tunnel("");`    | `krt_tunnel` is Calico's BIRD patch (sets the IPIP device and RTNH_F_ONLINK); BIRD 2 says the same with `ifname`, `onlink` and `gw` in a small function |

meshsim additions, present only when asked for: `graceful restart wait` (spec.timers.restartWait, when not BIRD's
240 s); `hold time` / `keepalive time` in the template when the
scenario's timers differ from BIRD's defaults (240 s / 80 s, what Calico runs). Disabled pools are rendered
like `disableBGPExport` pools (not exported), as meshsim's expected tables assume.
Pure: no asyncio, no subprocess, no clock.
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv4Network
from typing import Sequence

from meshsim.engines.bird.inputs import (BirdBlock, BirdFilter, BirdHost, BirdInput, BirdPeer, BirdPool,
                                         FilterRuleTuple, bird_input, bird_input_from_config)
from meshsim.engines.bird.readback import (BirdRoute, ProtocolDetail, ProtocolRow, bgp_attrs, parse_protocols,
                                           parse_protocols_all, parse_routes, split_reply)

BIRD_DEFAULT_HOLD = 240.0
BIRD_DEFAULT_KEEPALIVE = 80.0
DIALECTS = ("bird1", "bird2")
FILES = ("bird.cfg", "bird_aggr.cfg", "bird_ipam.cfg")
MAX_BIRD_SYMBOL = 64  # template_funcs.go BGPFilterFunctionName: maxBIRDSymLen


# ----------------------------------------------------------------------------------------------
# Rendering (the Go templates' whitespace is reproduced on purpose: dialect bird1 is byte-exact)

_PASSIVE_MESH = "\n  passive on; # Mesh is unidirectional, peer will connect to us."
_PASSIVE_GLOBAL = "\n  passive on; # Peering is unidirectional, peer will connect to us."
_SOURCE = "\n  source address {ip};  # The local address we use for the TCP connection"
_IMPORT_ALL = ("  import all;        # Import all routes, since we don't know what the upstream\n"
               "                     # topology is and therefore have to trust the ToR/RR.")
_EXPORT_END = ("    calico_export_to_bgp_peers({internal});\n    reject;\n"
               "  }};  # Only want to export routes for workloads.")
_IMPORT_END = ("    accept; # Prior to introduction of BGP Filters we used \"import all\" so use "
               "default accept behaviour on import\n  };")


def _logging(inp: BirdInput) -> str:
    level = inp.log_severity.lower()
    if level == "debug":
        return "\n  debug all;"
    if level == "info":
        return "\n  debug { states };"
    # confd getLogSeverityKVPair: debug and info pass, everything else becomes "none".
    return ""


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


def _apply_communities(inp: BirdInput) -> str:
    s = "function apply_communities ()\n{"
    for cidr, communities in inp.communities:
        s += f"\n      if ( net ~ {cidr} ) then {{"
        for c in communities:
            parts = c.split(":")
            if len(parts) == 2:
                s += f"\n          bgp_community.add(({parts[0]}, {parts[1]}));"
            else:
                s += f"\n          bgp_large_community.add(({parts[0]}, {parts[1]}, {parts[2]}));"
        s += "\n      }"
    return s + "\n}"


def filter_function_name(name: str, direction: str, version: str = "4") -> str:
    """template_funcs.go BGPFilterFunctionName: 'bgp_<name>_<direction>FilterV<version>', the name truncated and
    suffixed with 16 hex digits of its SHA-256 when the symbol would pass 64 characters."""
    pieces = ["bgp_", "", "_", direction.lower(), "FilterV", version]
    limit = MAX_BIRD_SYMBOL - len("".join(pieces))
    if len(name) > limit:
        digest = hashlib.sha256(name.encode()).hexdigest().upper()[:16]
        name = f"{name[:limit - 17]}_{digest}"
    pieces[1] = name
    return "'" + "".join(pieces) + "'"


_OPERATORS = {"Equal": "=", "NotEqual": "!=", "In": "~", "NotIn": "!~"}


def _filter_statement(rule: FilterRuleTuple) -> str:
    """template_funcs.go filterStatement."""
    action, cidr, operator, source, iface = rule
    conditions = []
    if cidr is not None:
        conditions.append(f"(net {_OPERATORS[operator or 'In']} {cidr})")
    if source:
        conditions.append("((defined(source))&&(source ~ [ RTS_BGP ]))")
    if iface:
        conditions.append(f'((defined(ifname))&&(ifname ~ "{iface}"))')
    statement = f"{action.lower()};"
    return f"if ({'&&'.join(conditions)}) then {{ {statement} }}" if conditions else statement


def filter_lines(filters: Sequence[BirdFilter]) -> list[str]:
    """template_funcs.go BGPFilterBIRDFuncs(..., 4)."""
    lines: list[str] = []
    for f in filters:
        if not f.import_v4 and not f.export_v4:
            continue
        lines.append(f"# v4 BGPFilter {f.name}")
        for direction, rules in (("import", f.import_v4), ("export", f.export_v4)):
            if rules:
                lines.append(f"function {filter_function_name(f.name, direction)}() {{")
                lines += [f"  {_filter_statement(r)}" for r in rules]
                lines.append("}")
    return lines or ["# No v4 BGPFilters configured"]


def render_bird_cfg(inp: BirdInput, dialect: str = "bird2") -> str:
    _check(dialect)
    rid = str(inp.router_id or inp.address)
    log = _logging(inp)
    s = _apply_communities(inp)
    s += "\n\n# Generated by confd\ninclude \"bird_aggr.cfg\";\ninclude \"bird_ipam.cfg\";"
    s += f"\n\nrouter id {rid};"
    if inp.restart_wait is not None and inp.restart_wait != 240.0:
        s += f"\ngraceful restart wait {int(round(inp.restart_wait))};  # meshsim: the scenario's spec.timers.restartWait"
    if inp.listen_port:
        s += f"\n# Set {inp.listen_port_scope} listen_port"
    if dialect == "bird1" and (inp.listen_port or inp.bind_address):
        address = f" address {inp.bind_address}" if inp.bind_address else ""
        port = f" port {inp.listen_port}" if inp.listen_port else ""
        s += f"\nlisten bgp{address}{port};"
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
    if inp.ignored_interfaces:
        ignored = "".join(f'-"{i}", ' for i in inp.ignored_interfaces)
        s += f'\n  interface {ignored}-"cali*", -"kube-ipvs*", "*";\n}}'
    else:
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
    if dialect == "bird2" and (inp.listen_port or inp.bind_address):
        address = f" {inp.bind_address}" if inp.bind_address else ""
        port = f" port {inp.listen_port}" if inp.listen_port else ""
        s += f"\n  local{address}{port} as {inp.asn};"
    else:
        s += f"\n  local as {inp.asn};"
    if dialect == "bird1":
        s += "\n  gateway recursive; # This should be the default, but just in case.\n  add paths on;"
    else:
        s += "\n  ipv4 {\n    gateway recursive; # This should be the default, but just in case.\n    add paths on;\n  };"
    s += ("\n  graceful restart;  # See comment in kernel section about graceful restart.\n"
          "  connect delay time 2;\n  connect retry time 5;\n  error wait time 5,30;")
    s += _timers(inp) + "\n}"
    s += "\n\n# -------------- BGP Filters ------------------"
    s += "".join("\n" + line for line in filter_lines(inp.filters))
    s += "\n\n# ------------- Node-to-node mesh -------------"
    s += _mesh_section(inp, dialect)
    s += "\n\n\n# ------------- Global peers -------------\n"
    s += _explicit_section(inp, "Global", dialect) or "# No global peers configured."
    s += "\n\n\n# ------------- Node-specific peers -------------\n\n"
    s += _explicit_section(inp, "Node", dialect) or "# No node-specific peers configured."
    return s + "\n\n"


def _explicit_section(inp: BirdInput, kind: str, dialect: str) -> str:
    """The `range gets .../peer_v4/*` loop: every key sorted, our own address skipped with a comment."""
    entries = [(p.key(inp.name), p) for p in inp.peers if p.kind == kind]
    prefix = "/bgp/v1/global/peer_v4/" if kind == "Global" else f"/bgp/v1/host/{inp.name}/peer_v4/"
    entries += [(key, None) for key in inp.skipped_peer_keys if key.startswith(prefix)]
    if not entries:
        return ""
    out = "\n"
    for key, p in sorted(entries, key=lambda e: e[0]):
        if p is None:
            out += f"\n\n# For peer {key}\n# Skipping ourselves ({inp.address})\n"
        else:
            out += f"\n\n# For peer {key}\n" + _explicit_peer(inp, p, dialect) + "\n"
    return out + "\n"


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
    s += _channel([_IMPORT_ALL, "  export filter {\n" + _EXPORT_END.format(internal="true")], dialect)
    if p.passive:
        s += _PASSIVE_MESH
    if p.restart_time:
        s += f"\n  graceful restart time {p.restart_time};"
    if p.password:
        s += f'\n  password "{p.password}";'
    return s + "\n}"


def _filter_calls(inp: BirdInput, p: BirdPeer, direction: str) -> str:
    filters = {f.name: f for f in inp.filters}
    out = ""
    for name in p.filters:
        f = filters.get(name)
        if f is not None and (f.import_v4 if direction == "import" else f.export_v4):
            out += f"\n    {filter_function_name(name, direction)}();"
    return out


def _explicit_peer(inp: BirdInput, p: BirdPeer, dialect: str) -> str:
    port = f"port {p.port} " if p.port else ""
    s = f"protocol bgp {p.name} from bgp_template {{"
    if p.ttl_security:
        s += f"\n  ttl security on;\n  multihop {p.ttl_security};"
    else:
        s += "\n  ttl security off;\n  multihop;"
    s += f"\n  neighbor {p.address} {port}as {p.asn};"
    if p.source_address:
        s += _SOURCE.format(ip=inp.address)
    internal = "true" if p.asn == inp.asn else "false"
    keep = p.keep_next_hop and p.asn != inp.asn
    extra = ["next hop keep;"] if keep and dialect == "bird2" else []
    imports = "  import filter {" + _filter_calls(inp, p, "import") + "\n" + _IMPORT_END
    exports = "  export filter {" + _filter_calls(inp, p, "export") + "\n" + _EXPORT_END.format(internal=internal)
    s += "\n" + _channel([imports, exports], dialect, extra)
    if p.kind == "Global" and p.passive:
        s += _PASSIVE_GLOBAL
    if p.restart_time:
        s += f"\n  graceful restart time {p.restart_time};"
    if p.rr_client and inp.cluster_id is not None:
        s += f"\n  rr client;\n  rr cluster id {inp.cluster_id};"
    if p.password:
        s += f'\n  password "{p.password}";'
    if keep and dialect == "bird1":
        s += "\n  next hop keep;"
    if p.num_allow_local_as:
        s += f"\n  allow local as {p.num_allow_local_as};"
    return s + "\n}"


def _route_key(cidr: IPv4Network) -> str:
    return str(cidr).replace("/", "-")


def _block_key(b: BirdBlock) -> str:
    return _route_key(b.cidr)


def render_bird_aggr_cfg(inp: BirdInput, dialect: str = "bird2") -> str:
    _check(dialect)
    blocks = sorted(inp.blocks, key=_block_key)
    s = "# Generated by confd\n\nprotocol static {"
    if dialect == "bird2":
        s += "\n   ipv4;"
    added = False
    if blocks:
        added = True
        s += "\n   # IP blocks for this host."
        for b in blocks:
            if b.cidr.prefixlen != 32:
                s += f"\n   route {b.cidr} blackhole;"
    if inp.static_routes:
        added = True
        s += "\n   # Static routes."
        for cidr in sorted(inp.static_routes, key=_route_key):
            s += f"\n   route {cidr} blackhole;"
    for kind, what in (("Global", "global BGP peers"), ("Node", "node specific BGP peers")):
        reachable = sorted((p.key(inp.name), p) for p in inp.peers if p.kind == kind and p.reachable_by)
        if reachable:
            added = True
            s += f"\n   # Static routes needed for {what}."
            for _key, p in reachable:
                s += f"\n   route {p.address}/32 via {p.reachable_by};"
    if not added:
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
          "  apply_communities();\n  calico_aggr();")
    if inp.static_routes:
        s += "\n\n  # Export static routes."
        for cidr in sorted(inp.static_routes, key=_route_key):
            s += f"\n  if ( net ~ {cidr} ) then {{ accept; }}"
    if inp.cluster_id is not None and inp.lb_ips:
        s += "\n\n  # Configured as a RR - accept any routes within configured LB service IP ranges"
        for cidr in inp.lb_ips:
            s += f"\n  if ( net ~ {cidr} ) then {{ accept; }}"
    s += "\n"
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
    s += "\nfilter calico_kernel_programming {"
    if dialect == "bird2":
        s += ("\n\n  # BIRD 2 would program the direct protocol's device routes (the tunnel address on tunl0);"
              "\n  # BIRD 1.6 leaves them out unless `device routes` is set, which Calico does not set."
              "\n  if ( source = RTS_DEVICE ) then { reject; }")
    if inp.reject_cidrs:
        s += "\n\n  # Don't program static routes into kernel."
        for cidr in sorted(inp.reject_cidrs, key=_route_key):
            s += f"\n  if ( net ~ {cidr} ) then {{ reject; }}"
    s += "\n"
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
    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


__all__ = ["BirdInput", "BirdPeer", "BirdHost", "BirdBlock", "BirdPool", "BirdFilter", "bird_input",
           "bird_input_from_config", "render", "render_bird_cfg", "render_bird_aggr_cfg", "render_bird_ipam_cfg",
           "filter_function_name", "filter_lines", "parse_protocols", "parse_protocols_all", "parse_routes",
           "ProtocolRow", "ProtocolDetail", "BirdRoute", "bgp_attrs", "split_reply", "git_blob_id", "FILES",
           "DIALECTS", "IPv4Address"]
