"""Generated clusters of any size, as Calico resources.

Owns two builders. `cluster_yaml(name, nodes, design=...)`: a synthetic cluster for benchmarks and tests, a
full mesh or route reflectors set up the way Calico's docs do it (designated nodes with a
routeReflectorClusterID and the label route-reflector=true, one BGPPeer `nodeSelector: all()` /
`peerSelector: route-reflector == 'true'`, nodeToNodeMeshEnabled false). `resized(scenario, n)`: the
user's own cluster grown or shrunk to n nodes, for `meshsim compare --nodes`: generated node k is a copy
of the user's node k (cycling), with its labels, subnet, AS, workloads and host facts; the first copy of
each user node keeps its address, and the timeline is replayed by position (the k-th node named in an
event is generated node k), and every cluster-wide resource (pools, BGP configuration, ToR peers, filters,
secrets, services) is kept; `meshsim.model.sources.derive` writes it as the user's documents with the nodes
and per-node resources changed. In both, a size counts ALL nodes, route reflectors included. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Sequence

from meshsim.errors import ScenarioError
from meshsim.model.resources import Event, Node, Scenario, ScenarioSpec


def cluster_yaml(name: str, nodes: int, *, design: str = "mesh", reflectors: int = 2, pods: int = 2,
                 hold: str = "9s", keepalive: str = "3s", subnet: str = "192.168.0.0/22",
                 pool: str = "10.244.0.0/16", ipip: str = "Always", cluster_id: str = "244.0.0.1",
                 implementation: str | None = None) -> str:
    """`nodes` nodes in all: for design 'rr', `reflectors` RR nodes (rr1..) and nodes - reflectors clients
    (node1..); for 'mesh', node1..nodeN. `implementation: bird` runs every node as real BIRD
    (`meshsim run --isolation netns`)."""
    if design not in ("mesh", "rr"):
        raise ValueError(f"unknown design {design!r}; expected mesh or rr")
    net = IPv4Network(subnet)
    rr = reflectors if design == "rr" else 0
    if design == "rr" and not 0 < rr < nodes:
        raise ValueError(f"{nodes} nodes cannot hold {rr} route reflectors and at least one client")
    if nodes + 12 > net.num_addresses:
        raise ValueError(f"{nodes} nodes do not fit in {subnet}")
    clients = nodes - rr
    docs = []
    if design == "rr":
        docs.append("apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
                    "spec: {nodeToNodeMeshEnabled: false, asNumber: 64512}\n")
        docs.append("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: peer-with-route-reflectors}\n"
                    "spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}\n")
    docs.append(f"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: default-ipv4-ippool}}\n"
                f"spec: {{cidr: {pool}, blockSize: 26, ipipMode: {ipip}, natOutgoing: true}}\n")
    first = net.network_address + 10

    def addr(i: int) -> IPv4Address:
        return first + i

    for i in range(rr):
        docs.append(f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: rr{i + 1}\n"
                    f"  labels: {{route-reflector: 'true'}}\nspec:\n  bgp:\n"
                    f"    ipv4Address: {addr(i)}/{net.prefixlen}\n    routeReflectorClusterID: {cluster_id}\n")
    for i in range(clients):
        docs.append(f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: node{i + 1}}}\n"
                    f"spec: {{bgp: {{ipv4Address: {addr(rr + i)}/{net.prefixlen}}}}}\n")
    workloads = ", ".join(f"node{i + 1}: {pods}" for i in range(clients))
    hosts = f"  hosts:\n    default: {{implementation: {implementation}}}\n" if implementation else ""
    docs.append(f"apiVersion: meshsim/v1\nkind: Scenario\nmetadata: {{name: {name}}}\n"
                f"spec:\n{hosts}  workloads: {{{workloads}}}\n  timers: {{holdTime: {hold}, keepaliveTime: {keepalive}}}\n")
    return "---\n".join(docs)


# ------------------------------------------------------------------------------------------------
# The user's cluster at another size


def _event_nodes(ev: Event, addresses: dict[IPv4Address, str]) -> list[str]:
    """Names of nodes an event refers to, in field order (node, peer, an applied Node or BGPPeer)."""
    raw = dict(ev.fields)
    out = [raw[k] for k in ("node", "peer") if isinstance(raw.get(k), str)]
    res = raw.get("resource")
    if raw.get("action") == "apply" and isinstance(res, dict):
        meta, spec = res.get("metadata") or {}, res.get("spec") or {}
        if res.get("kind") == "Node" and isinstance(meta, dict) and isinstance(meta.get("name"), str):
            out.append(meta["name"])
        if res.get("kind") == "BGPPeer" and isinstance(spec, dict):
            if isinstance(spec.get("node"), str):
                out.append(spec["node"])
            try:
                ip = IPv4Address(str(spec.get("peerIP", "")).split(":")[0])
            except ValueError:
                ip = None
            if ip in addresses:
                out.append(addresses[ip])
    return out


def timeline_nodes(scenario: Scenario) -> list[str]:
    """The scenario's nodes named by its events, in order of first mention (nodes the timeline adds are
    not among them)."""
    names = {n.name for n in scenario.nodes}
    addresses = {n.address: n.name for n in scenario.nodes}
    seen: list[str] = []
    for ev in scenario.spec.events:
        for name in _event_nodes(ev, addresses):
            if name in names and name not in seen:
                seen.append(name)
    return seen


def _added_nodes(scenario: Scenario) -> tuple[set[str], set[IPv4Address]]:
    """Names and addresses of nodes the timeline adds (add-node, or apply of a new Node)."""
    known = {n.name for n in scenario.nodes}
    names: set[str] = set()
    addrs: set[IPv4Address] = set()
    for ev in scenario.spec.events:
        raw = dict(ev.fields)
        text, name = None, None
        if raw.get("action") == "add-node":
            name, text = raw.get("name"), raw.get("ipv4Address")
        res = raw.get("resource")
        if raw.get("action") == "apply" and isinstance(res, dict) and res.get("kind") == "Node":
            name = (res.get("metadata") or {}).get("name")
            text = ((res.get("spec") or {}).get("bgp") or {}).get("ipv4Address")
        if isinstance(name, str) and name not in known:
            names.add(name)
            try:
                addrs.add(IPv4Address(str(text).split("/")[0]))
            except ValueError:
                pass
    return names, addrs


def _pinned_pods(scenario: Scenario) -> dict[str, int]:
    """Pods per node that the scenario's own state pins: its WorkloadEndpoints (and v1 Pods) when it has any,
    otherwise the workload allocations of its IPAM blocks (meshsim.model.ipamstate reads them the same way)."""
    counts: dict[str, int] = {}
    if scenario.endpoints:
        for w in scenario.endpoints:
            counts[w.node] = counts.get(w.node, 0) + 1
        return counts
    for b in scenario.ipam_blocks:
        for a in b.allocations:
            node = a.node or b.affinity
            if a.type is None and node is not None:
                counts[node] = counts.get(node, 0) + 1
    return counts


@dataclass(frozen=True)
class Resized:
    """A generated cluster and how it relates to the user's."""

    scenario: Scenario
    model_of: dict[str, str]  # generated node -> the user's node it copies
    renamed: dict[str, str]  # user node -> its first copy (same name and address: position k -> node k)
    notes: tuple[str, ...]  # what had to change (a widened subnet, pinned resources turned into counts)


def _error(scenario: Scenario, message: str, expected: str | None = None, got: Any = None) -> ScenarioError:
    return ScenarioError(scenario.files[0] if scenario.files else "<scenario>", message, field="--nodes",
                         expected=expected, got=got)


def _rename_event(raw: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    out = dict(raw)
    for k in ("node", "peer", "name"):
        if isinstance(out.get(k), str):
            out[k] = names.get(out[k], out[k])
    res = out.get("resource")
    if isinstance(res, dict):
        res = dict(res)
        meta, spec = res.get("metadata"), res.get("spec")
        if res.get("kind") == "Node" and isinstance(meta, dict) and isinstance(meta.get("name"), str):
            res["metadata"] = {**meta, "name": names.get(meta["name"], meta["name"])}
        if res.get("kind") == "BGPPeer" and isinstance(spec, dict) and isinstance(spec.get("node"), str):
            res["spec"] = {**spec, "node": names.get(spec["node"], spec["node"])}
        out["resource"] = res
    return out


def _addresses(scenario: Scenario, templates: list[Node], n: int, reserved: set[IPv4Address]) \
        -> tuple[list[tuple[IPv4Address, IPv4Network]], list[str]]:
    """An address for each of n generated nodes: copy k of template k % M in the template's subnet; the
    first copy keeps the template's address. A subnet too small for its copies is widened (and said so)."""
    m = len(templates)
    wanted: dict[IPv4Network, int] = {}
    for k in range(n):
        wanted[templates[k % m].subnet] = wanted.get(templates[k % m].subnet, 0) + 1
    notes: list[str] = []
    wide: dict[IPv4Network, IPv4Network] = {}
    for subnet, count in wanted.items():
        net = subnet
        # room for the copies, the gateway and the reserved addresses (ToRs, nodes the timeline adds)
        while net.num_addresses - 3 - sum(1 for a in reserved if a in net) < count and net.prefixlen > 8:
            net = net.supernet()
        for p in scenario.pools:
            if net.overlaps(p.cidr):
                raise _error(scenario, f"{count} nodes do not fit in subnet {subnet}, and widening it to {net} "
                             f"overlaps IPPool {p.name} ({p.cidr})", "a size that fits the cluster's subnets", n)
        if net != subnet:
            notes.append(f"subnet {subnet} widened to {net} to hold {count} nodes")
        wide[subnet] = net
    for a, b in ((a, b) for a in wide.values() for b in wide.values() if a < b):
        if a.overlaps(b):
            raise _error(scenario, f"widened subnets {a} and {b} overlap", "a smaller size", n)
    gateways = {scenario.host(t.name).gateway_for(wide[t.subnet]) for t in templates[:n]}
    taken = {t.address for t in templates[:n]} | reserved | gateways
    free: dict[IPv4Network, Any] = {net: iter(net.hosts()) for net in wide.values()}
    out = []
    for k in range(n):
        t = templates[k % m]
        net = wide[t.subnet]
        if k < m:
            out.append((t.address, net))
            continue
        addr = next(a for a in free[net] if a not in taken)
        taken.add(addr)
        out.append((addr, net))
    return out, notes


def resized(scenario: Scenario, n: int, *, first: Sequence[str] = (), name: str | None = None,
            pods: int | None = None, prefix: str = "node") -> Resized:
    """`scenario` (a mesh, see `designs.full_mesh_design`) as a cluster of `n` nodes.

    Template order: the nodes the timeline names (first mention first), then `first` (e.g. the reflectors
    chosen at the user's size), then the rest in file order. Generated node k (`node<k>`) copies template
    k mod M: labels (but `route-reflector`), subnet, AS, pods (`pods` overrides), host facts; copy k < M is the
    template itself (name and address kept), later copies are `<prefix><k>`. Per-node resources follow:
    `node: X` BGPPeers and `node.X` BGPConfigurations once per copy of X (the first copy keeps the name).
    Cluster-wide resources stay as they are: IPPools, IPReservations, the default BGPConfiguration, BGPPeers
    by selector or to addresses outside the cluster (a peerIP of a node left out is dropped), BGPFilters,
    Secrets, Services; Endpoints keep the addresses on nodes that are generated. The IPAM state
    (IPAMBlocks, IPAMHandles, BlockAffinities, WorkloadEndpoints and Pods) becomes pod counts per node, and
    pinned tunnel addresses go: the generated cluster allocates as a new one would. The timeline's node
    names are mapped by position. Every such change is said in `Resized.notes`.
    """
    from meshsim.model.designs import RR_LABEL

    named = timeline_nodes(scenario)
    if n < max(2, len(named)):
        raise _error(scenario, f"the timeline names {len(named)} nodes ({', '.join(named)}), so a generated "
                     "cluster needs at least that many" if len(named) >= 2 else "a cluster needs at least 2 nodes",
                     f"at least {max(2, len(named))}", n)
    by_name = {nd.name: nd for nd in scenario.nodes}
    by_address = {nd.address: nd.name for nd in scenario.nodes}
    order = named + [f for f in first if f in by_name and f not in named]
    order += [nd.name for nd in scenario.nodes if nd.name not in order]
    templates = [by_name[x] for x in order]
    added_names, added_addrs = _added_nodes(scenario)
    external = {p.peer_ip for p in scenario.peers if p.peer_ip is not None}
    addrs, notes = _addresses(scenario, templates, n, added_addrs | external)
    m = len(templates)
    in_use = set(by_name) | added_names
    gen_names = [t.name for t in templates[:n]]
    for k in range(m, n):
        j = k + 1
        while f"{prefix}{j}" in in_use:
            j += n
        gen_names.append(f"{prefix}{j}")
        in_use.add(gen_names[-1])
    model_of = {g: templates[k % m].name for k, g in enumerate(gen_names)}
    copies: dict[str, list[str]] = {}
    for g, t in model_of.items():
        copies.setdefault(t, []).append(g)
    renamed = {t.name: gen_names[k] for k, t in enumerate(templates[:n])}
    workloads = dict(scenario.spec.workloads)
    pinned = _pinned_pods(scenario)
    if pinned or scenario.affinities or scenario.ipam_blocks:
        notes.append("the cluster's IPAM state (IPAMBlocks, IPAMHandles, BlockAffinities, WorkloadEndpoints, "
                     "Pods) became pod counts per node; every generated node gets its blocks and tunnel address "
                     "from Calico's IPAM, as a new node would")
    nodes, pod_counts, hosts = [], [], []
    host_map = dict(scenario.spec.hosts)
    for k, g in enumerate(gen_names):
        t = templates[k % m]
        addr, net = addrs[k]
        labels = tuple((a, b) for a, b in t.labels if a != RR_LABEL)
        nodes.append(Node(name=g, address=addr, subnet=net, labels=labels, asn=t.asn))
        count = pods if pods is not None else workloads.get(t.name, 0) + pinned.get(t.name, 0)
        if count:
            pod_counts.append((g, count))
        if t.name in host_map:
            hosts.append((g, host_map[t.name]))
    if "default" in host_map:
        hosts.insert(0, ("default", host_map["default"]))
    kept = set(gen_names)
    gone_addresses = {nd.address for nd in scenario.nodes if nd.name not in kept}
    peers, more_peers = [], []
    for p in scenario.peers:
        if p.peer_ip in gone_addresses:
            notes.append(f"BGPPeer {p.name} dropped: it peers with {by_address[p.peer_ip]}, not in the "
                         "generated cluster")
            continue
        if p.node is None:
            peers.append(p)
            continue
        for i, g in enumerate(copies.get(p.node, [])):  # the first copy is the node itself: the peer as it is
            (peers if i == 0 else more_peers).append(p if i == 0 else replace(p, name=f"{p.name}-{g}", node=g))
    node_bgp, more_bgp = [], []
    for c in scenario.node_bgp:
        for i, g in enumerate(copies.get(c.node or "", [])):
            (node_bgp if i == 0 else more_bgp).append(c if i == 0 else replace(c, name=f"node.{g}"))
    service_endpoints = []
    for e in scenario.service_endpoints:
        addresses = tuple((ip, nd) for ip, nd in e.addresses if nd is None or nd in kept)
        if addresses != e.addresses:
            notes.append(f"Endpoints {e.key}: addresses on nodes not in the generated cluster dropped")
        service_endpoints.append(replace(e, addresses=addresses))
    events = tuple(replace(ev, fields=tuple(_rename_event(dict(ev.fields), renamed).items()), line=None)
                   for ev in scenario.spec.events)
    spec = ScenarioSpec(name=name or f"{scenario.name}-{n}", hosts=tuple(hosts), workloads=tuple(pod_counts),
                        timers=scenario.spec.timers, events=events)
    position = {nd.name: i for i, nd in enumerate(scenario.nodes)}
    nodes.sort(key=lambda nd: position.get(nd.name, len(position)))  # the user's order, then the copies
    out = replace(scenario, spec=spec, nodes=tuple(nodes), peers=(*peers, *more_peers),
                  node_bgp=(*node_bgp, *more_bgp), affinities=(), endpoints=(), ipam_blocks=(), ipam_handles=(),
                  service_endpoints=tuple(service_endpoints))
    return Resized(out, model_of, renamed, tuple(notes))

