"""The two BGP designs of one cluster, as Calico resources: the node-to-node mesh and route reflectors.

Owns `design_of(scenario)`, `pick_reflectors(...)`, `route_reflector_design(scenario, names)`,
`full_mesh_design(scenario)` and `migration_events(before, after, after_docs)`. Route reflectors are set up the way
Calico's docs do it (networking/configuring/bgp.mdx): each chosen node gets a `routeReflectorClusterID`
(one shared ID) and the label `route-reflector=true`, one BGPPeer `peer-with-route-reflectors`
(`nodeSelector: all()`, `peerSelector: route-reflector == 'true'`) peers every node with them, and the
BGPConfiguration turns `nodeToNodeMeshEnabled` off. meshsim's own choice of reflectors spreads them over
the `topology.kubernetes.io/zone` label (when nodes carry it) and then over subnets. Every function
returns a new Scenario (or events) that keeps everything the design does not change (services, filters,
passwords, IPAM state...); `meshsim.model.sources.derive` writes it as the user's own documents with only
those changes made. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Any, Sequence

from meshsim.errors import ScenarioError, SelectorError
from meshsim.model.render import resource_dict
from meshsim.model.resources import BGPPeer, Node, Scenario
from meshsim.model.selectors import parse as parse_selector
from meshsim.model.sources import Sources, key_of

RR_LABEL = "route-reflector"
RR_PEER = BGPPeer(name="peer-with-route-reflectors", node_selector="all()",
                  peer_selector=f"{RR_LABEL} == 'true'")
DEFAULT_CLUSTER_ID = IPv4Address("244.0.0.1")
ZONE_LABEL = "topology.kubernetes.io/zone"
MESH, RR = "mesh", "rr"


def design_of(scenario: Scenario) -> str:
    """'rr' when some node has a routeReflectorClusterID, else 'mesh'."""
    return RR if reflectors_of(scenario) else MESH


def reflectors_of(scenario: Scenario) -> tuple[str, ...]:
    return tuple(n.name for n in scenario.nodes if n.rr_cluster_id is not None)


@dataclass(frozen=True)
class ReflectorChoice:
    """The nodes chosen as route reflectors and, in words, why."""

    names: tuple[str, ...]
    how: str


def _cli_error(message: str, field: str, expected: str | None = None, got: Any = None) -> ScenarioError:
    return ScenarioError("<command line>", message, field=field, expected=expected, got=got)


def _spread(candidates: Sequence[Node], count: int) -> list[Node]:
    """`count` nodes taken round-robin over zones, and within a zone round-robin over subnets; lowest
    addresses first inside each (zone, subnet) group."""
    zones: dict[str, dict[str, list[Node]]] = {}
    for n in sorted(candidates, key=lambda n: n.address):
        zone = n.label_map.get(ZONE_LABEL, "")
        zones.setdefault(zone, {}).setdefault(str(n.subnet), []).append(n)
    queues = {z: [list(group) for _, group in sorted(subnets.items())] for z, subnets in sorted(zones.items())}
    turn = {z: 0 for z in queues}
    picked: list[Node] = []
    while len(picked) < count:
        for zone, groups in queues.items():
            if len(picked) == count:
                break
            live = [g for g in groups if g]
            if not live:
                continue
            group = live[turn[zone] % len(live)]
            turn[zone] += 1
            picked.append(group.pop(0))
    return picked


def pick_reflectors(scenario: Scenario, count: int | None = None, selector: str | None = None,
                    prefer: Sequence[str] = (), avoid: Sequence[str] = ()) -> ReflectorChoice:
    """Choose the route reflectors of `scenario`.

    `selector` (a Calico selector on node labels) narrows the candidates; `count` defaults to every node it
    matches, or 2 without a selector (Calico's docs: clients peer with "typically 2 for redundancy").
    `prefer` names nodes taken first when they are candidates (the same nodes at every cluster size);
    `avoid` names nodes taken last (those the timeline stops, crashes or fills with pods).
    """
    nodes = list(scenario.nodes)
    if selector is not None:
        try:
            sel = parse_selector(selector)
        except SelectorError as exc:
            raise _cli_error(f"invalid selector: {exc.message} at position {exc.pos}", "--reflector-selector",
                             "a Calico selector such as zone == 'a' or has(rr-candidate)", selector) from None
        candidates = [n for n in nodes if sel.matches(n.label_map)]
        if not candidates:
            raise _cli_error("the selector matches no node of the cluster", "--reflector-selector",
                             "a selector matching at least one Node's labels", selector)
    else:
        candidates = nodes
    if count is None:
        count = len(candidates) if selector is not None else min(2, len(nodes) - 1)
    if count < 1 or count >= len(nodes):
        raise _cli_error("route reflectors must be at least 1 and fewer than the cluster's nodes",
                         "--reflectors", f"1..{len(nodes) - 1} for {len(nodes)} nodes", count)
    if count > len(candidates):
        raise _cli_error(f"the selector matches only {len(candidates)} nodes "
                         f"({', '.join(n.name for n in candidates)})", "--reflectors",
                         f"at most {len(candidates)}", count)
    first = [n for name in prefer for n in candidates if n.name == name][:count]
    others = [n for n in candidates if n not in first]
    calm = [n for n in others if n.name not in avoid]
    rest = _spread(calm, min(len(calm), count - len(first)))
    rest += _spread([n for n in others if n.name in avoid], count - len(first) - len(rest))
    order = {n.name: i for i, n in enumerate(nodes)}
    chosen = sorted(first + rest, key=lambda n: order[n.name])  # in the cluster's order
    zones = sorted({n.label_map.get(ZONE_LABEL) for n in chosen} - {None})
    subnets = sorted({str(n.subnet) for n in chosen})
    where = (f"zones {', '.join(zones)}" if zones else "") + ("; " if zones else "") + f"subnets {', '.join(subnets)}"
    source = (f"selector {selector!r} matched {len(candidates)} node(s)" if selector is not None
              else f"meshsim's choice among {len(candidates)} nodes")
    if first and not rest:
        source += ", the same nodes as at the other sizes"
    if avoid and not first and any(n.name not in avoid for n in candidates):
        source += ", nodes the timeline leaves alone first"
    how = f"{source}; picked {', '.join(n.name for n in chosen)} spread over {where}"
    return ReflectorChoice(tuple(n.name for n in chosen), how)


def route_reflector_design(scenario: Scenario, reflectors: Sequence[str],
                           cluster_id: IPv4Address = DEFAULT_CLUSTER_ID) -> Scenario:
    """The cluster with `reflectors` as route reflectors, set up as Calico's docs prescribe. Everything else
    stays; the mesh's own session settings move to the reflector BGPPeer, which now carries the node-to-node
    sessions: `nodeMeshPassword` becomes its `password` and `nodeMeshMaxRestartTime` its `maxRestartTime`
    (Calico's validator refuses both on a BGPConfiguration whose mesh is off)."""
    chosen = set(reflectors)
    unknown = chosen - {n.name for n in scenario.nodes}
    if unknown:
        raise _cli_error("names no node of the cluster", "--reflectors", "node names of the cluster",
                         sorted(unknown))
    nodes = []
    for n in scenario.nodes:
        labels = {k: v for k, v in n.labels if k != RR_LABEL}
        if n.name in chosen:
            labels[RR_LABEL] = "true"
            n = replace(n, rr_cluster_id=cluster_id)
        else:
            n = replace(n, rr_cluster_id=None)
        nodes.append(replace(n, labels=tuple(sorted(labels.items()))))
    bgp = scenario.bgp
    peer = replace(RR_PEER, password_ref=bgp.node_mesh_password_ref, password=bgp.node_mesh_password,
                   max_restart_time=bgp.node_mesh_max_restart_time)
    peers = [p for p in scenario.peers if p.name != RR_PEER.name]
    mesh_only = {"nodeMeshPassword", "nodeMeshMaxRestartTime"}
    bgp = replace(bgp, node_to_node_mesh_enabled=False, node_mesh_password_ref=None, node_mesh_password=None,
                  node_mesh_max_restart_time=None,
                  fields_set=(bgp.fields_set - mesh_only) | {"nodeToNodeMeshEnabled"})
    return replace(scenario, nodes=tuple(nodes), peers=(*peers, peer), bgp=bgp)


def _selects_only(scenario: Scenario, selector: str | None, node: str | None, names: set[str]) -> bool:
    if node is not None:
        return node in names
    if selector is None:
        return False
    matched = {n.name for n in scenario.nodes if parse_selector(selector).matches(n.label_map)}
    return bool(matched) and matched <= names


def full_mesh_design(scenario: Scenario) -> Scenario:
    """The cluster as a node-to-node mesh: no cluster IDs, the mesh on, and the BGPPeers that peer nodes
    with the reflectors gone (peers outside the cluster, such as ToRs, stay). A password or maxRestartTime
    that every dropped peer shares moves to `nodeMeshPassword` / `nodeMeshMaxRestartTime`, so the mesh's
    sessions keep them (the reverse of `route_reflector_design`)."""
    rrs = set(reflectors_of(scenario))
    by_ip = {n.address: n.name for n in scenario.nodes}
    keep, dropped = [], []
    for p in scenario.peers:
        if p.peer_ip is not None and p.peer_ip not in by_ip:
            keep.append(p)  # an external peer
            continue
        remote_only_rr = (by_ip.get(p.peer_ip) in rrs if p.peer_ip is not None
                          else _selects_only(scenario, p.peer_selector, None, rrs))
        local_only_rr = _selects_only(scenario, p.node_selector, p.node, rrs)
        if remote_only_rr or local_only_rr:
            dropped.append(p)
            continue
        keep.append(p)
    nodes = tuple(replace(n, rr_cluster_id=None) for n in scenario.nodes)
    bgp = replace(scenario.bgp, node_to_node_mesh_enabled=True)
    if scenario.bgp.node_to_node_mesh_enabled is False and "nodeToNodeMeshEnabled" not in bgp.fields_set:
        bgp = replace(bgp, fields_set=bgp.fields_set | {"nodeToNodeMeshEnabled"})
    refs = {p.password_ref for p in dropped}
    if len(refs) == 1 and None not in refs and bgp.node_mesh_password_ref is None:
        bgp = replace(bgp, node_mesh_password_ref=dropped[0].password_ref, node_mesh_password=dropped[0].password,
                      fields_set=bgp.fields_set | {"nodeMeshPassword"})
    restarts = {p.max_restart_time for p in dropped}
    if len(restarts) == 1 and None not in restarts and bgp.node_mesh_max_restart_time is None:
        bgp = replace(bgp, node_mesh_max_restart_time=next(iter(restarts)),
                      fields_set=bgp.fields_set | {"nodeMeshMaxRestartTime"})
    return replace(scenario, nodes=nodes, peers=tuple(keep), bgp=bgp)


def migration_events(before: Scenario, after: Scenario, after_docs: Sources) -> list[dict[str, Any]]:
    """Timeline events that turn the running `before` (a mesh) into `after` (route reflectors, whose documents
    are `after_docs`) in the order of Calico's docs: each BGPPeer first (it selects nobody yet), then each
    reflector Node (cluster ID and label), then the BGPConfiguration (mesh off). Each event applies the
    resource as `after_docs` hold it, every field of the user's document included. What
    `scenarios/mesh-to-rr.yaml` does by hand, for any cluster."""
    events: list[dict[str, Any]] = []
    old = {key_of(r): r for r in (*before.peers, *before.nodes, before.bgp)}
    for res in (*after.peers, *after.nodes, after.bgp):
        key = key_of(res)
        if old.get(key) == res:
            continue
        resource = after_docs.resource(key)
        if resource is None:  # the default configuration, implicit in the user's files
            resource = resource_dict(res, after_docs.calico_api)
        match res:
            case BGPPeer():
                label = f"BGPPeer {res.name}"
            case Node():
                label = f"{res.name} becomes a route reflector" if res.rr_cluster_id is not None \
                    else f"{res.name} updated"
            case _:
                label = "turn the mesh off" if not res.node_to_node_mesh_enabled else "BGPConfiguration"
        events.append({"action": "apply", "label": label, "resource": resource})
    return events
