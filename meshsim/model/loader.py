"""Loading a scenario: every document of every file read, dispatched by apiVersion and kind, cross-checked into one
`Scenario`, with what was read past said once per topic in `Scenario.warnings`.

Owns `load_scenario(paths)` (`load_scenario_text(text, where)` for text), `parse_resource(doc)` and the rule
on kinds (README "Scenarios"):
- modelled Calico kinds (projectcalico.org/v3 as calicoctl prints them, crd.projectcalico.org/v1 as kubectl
  prints them): IPPool, Node, BGPConfiguration, BGPPeer, BGPFilter, IPAMConfiguration / IPAMConfig,
  BlockAffinity, IPAMBlock, IPAMHandle, IPReservation, WorkloadEndpoint;
- Calico kinds that do not touch BGP routing (SKIPPED_KINDS) are skipped, and one warning lists them;
- Kubernetes v1 Node, Pod, Service, Endpoints and Secret are read leniently (meshsim.model.kube);
- `List` / `<Kind>List` documents are expanded, and the IPAM part of `calicoctl datastore migrate export`
  (after its `===` lines) is read as the IPAM resources it holds;
- any other kind, and a misspelled field of a modelled kind, is an error naming file, document and field.
Cross-checks: one Scenario, one `default` BGPConfiguration and IPAM configuration, unique names and
addresses, pools that do not overlap, node addresses outside pools, references to nodes, filters and secrets.
Pure: no asyncio, no clock.
"""

from __future__ import annotations

import gc
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from meshsim.errors import ScenarioError
from meshsim.model import calico, calico_ipam, kube
from meshsim.model.calico import Reading
from meshsim.model.resources import (CALICO_API_VERSIONS, MESHSIM_API_VERSION, BGPConfiguration, BGPFilter, BGPPeer,
                                     BlockAffinity, IPAMBlock, IPAMConfiguration, IPAMHandle, IPPool, IPReservation,
                                     LoadWarning, Node, Origin, Scenario, ScenarioSpec, Secret, Service,
                                     ServiceEndpoints, WorkloadEndpoint)
from meshsim.model.scenariodoc import scenario_spec
from meshsim.model.yamldoc import Doc, parse_documents, read_documents

Parser = Callable[[Doc, Origin, Reading], Any]

CALICO_KINDS: dict[str, Parser] = {
    "IPPool": calico.ippool,
    "Node": calico.node,
    "BGPConfiguration": calico.bgpconfig,
    "BGPPeer": calico.bgppeer,
    "BGPFilter": calico.bgpfilter,
    "IPAMConfiguration": calico_ipam.ipamconfig,
    "IPAMConfig": calico_ipam.ipamconfig,
    "BlockAffinity": calico_ipam.blockaffinity,
    "IPAMBlock": calico_ipam.ipam_block,
    "IPAMHandle": calico_ipam.ipam_handle,
    "IPReservation": calico_ipam.ipreservation,
    "WorkloadEndpoint": calico_ipam.workloadendpoint,
}
CORE_KINDS: dict[str, Parser] = {
    "Node": kube.k8s_node,
    "Pod": kube.pod,
    "Service": kube.service,
    "Endpoints": kube.endpoints,
    "Secret": kube.secret,
}
SKIPPED_KINDS = ("FelixConfiguration", "ClusterInformation", "KubeControllersConfiguration", "CalicoNodeStatus",
                 "Profile", "NetworkPolicy", "GlobalNetworkPolicy", "StagedNetworkPolicy",
                 "StagedGlobalNetworkPolicy", "StagedKubernetesNetworkPolicy", "Tier", "NetworkSet",
                 "GlobalNetworkSet", "HostEndpoint", "BGPPeerStatus")
SKIP_REASON = ("they configure Felix, network policy and cluster metadata, not BGP routing, which is what meshsim "
               "emulates")
CORE_API = "v1"


def _known_kinds() -> str:
    return (", ".join(sorted({*CALICO_KINDS, "Scenario"})) + f" (Calico); {', '.join(CORE_KINDS)} ({CORE_API}); "
            f"and, skipped: {', '.join(SKIPPED_KINDS)}")


def expand_lists(doc: Doc) -> list[Doc]:
    """`kind: List` / `IPPoolList` (what calicoctl and kubectl print) -> one Doc per item."""
    data = doc.data
    if not isinstance(data, dict):
        return [doc]
    kind = data.get("kind")
    if not (isinstance(kind, str) and kind.endswith("List")):
        return [doc]
    doc.kind = kind
    doc.check_fields("", ("apiVersion", "kind", "metadata", "items"))
    items = doc.sequence("items")
    out: list[Doc] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise doc.error(f"items.{i}", "must be a mapping (a resource)", got=item)
        copy = dict(item)
        copy.setdefault("apiVersion", data.get("apiVersion"))
        if "kind" not in copy and kind != "List":
            copy["kind"] = kind[: -len("List")]
        out.append(doc.derived(copy, item))
    return out


def parse_resource(doc: Doc, reading: Reading | None = None) -> Any:
    """One document -> its typed resource (IPPool, Node, ..., ScenarioSpec), a list of resources (a migrate
    export's IPAM part), or None when the document is read past (a skipped kind, an IPv6 resource, ...)."""
    reading = reading if reading is not None else Reading()
    origin = Origin(doc.path, doc.index)
    data = doc.data
    if calico_ipam.is_migrate_export_ipam(data):
        return calico_ipam.migrate_export_ipam(doc, origin, reading)
    if not isinstance(data, dict):
        raise doc.error(None, "a document must be a mapping with apiVersion and kind",
                        expected="a Calico, Kubernetes or meshsim resource", got=data)
    kind, api = data.get("kind"), data.get("apiVersion")
    doc.kind = kind if isinstance(kind, str) else None
    meta = data.get("metadata")
    doc.name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else None
    if kind is None:
        raise doc.error("kind", "is required", expected="one of " + _known_kinds())
    if not isinstance(kind, str):
        raise doc.error("kind", "must be a string", expected="one of " + _known_kinds(), got=kind)
    if api is None:
        raise doc.error("apiVersion", "is required",
                        expected=" or ".join((*CALICO_API_VERSIONS, CORE_API, MESHSIM_API_VERSION)))
    if not isinstance(api, str):
        raise doc.error("apiVersion", "must be a string", got=api)
    if kind == "Scenario":
        if api != MESHSIM_API_VERSION:
            raise doc.error("apiVersion", "is not the meshsim API version", expected=MESHSIM_API_VERSION, got=api)
        return scenario_spec(doc, origin)
    if api == CORE_API:
        parser = CORE_KINDS.get(kind)
        if parser is None and (kind in CALICO_KINDS or kind in SKIPPED_KINDS):
            raise doc.error("apiVersion", f"is not a Calico API version ({kind} is a Calico kind)",
                            expected=" or ".join(CALICO_API_VERSIONS), got=api)
        if parser is None:
            raise doc.error("kind", f"is not a Kubernetes {CORE_API} kind meshsim reads",
                            expected="one of " + ", ".join(CORE_KINDS), got=kind)
        return parser(doc, origin, reading)
    if api not in CALICO_API_VERSIONS:
        if kind in CALICO_KINDS or kind in SKIPPED_KINDS:
            raise doc.error("apiVersion", "is not a Calico API version", expected=" or ".join(CALICO_API_VERSIONS),
                            got=api)
        raise doc.error("kind", f"is not a kind meshsim reads (apiVersion {api})", expected="one of " + _known_kinds(),
                        got=kind)
    if kind in SKIPPED_KINDS:
        reading.skipped_kinds[kind] += 1
        return None
    parser = CALICO_KINDS.get(kind)
    if parser is None:
        raise doc.error("kind", "is not a kind meshsim knows", expected="one of " + _known_kinds(), got=kind)
    return parser(doc, origin, reading)


@dataclass
class _Collected:
    pools: list[IPPool] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    bgp: list[BGPConfiguration] = field(default_factory=list)
    node_bgp: list[BGPConfiguration] = field(default_factory=list)
    peers: list[BGPPeer] = field(default_factory=list)
    filters: list[BGPFilter] = field(default_factory=list)
    ipam: list[IPAMConfiguration] = field(default_factory=list)
    affinities: list[BlockAffinity] = field(default_factory=list)
    blocks: list[IPAMBlock] = field(default_factory=list)
    handles: list[IPAMHandle] = field(default_factory=list)
    reservations: list[IPReservation] = field(default_factory=list)
    endpoints: list[WorkloadEndpoint] = field(default_factory=list)
    pods: list[WorkloadEndpoint] = field(default_factory=list)  # from v1 Pods
    services: list[Service] = field(default_factory=list)
    service_endpoints: list[ServiceEndpoints] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)
    specs: list[ScenarioSpec] = field(default_factory=list)
    docs: dict[int, Doc] = field(default_factory=dict)  # id(resource) -> doc for cross-check errors

    def add(self, res: Any, doc: Doc) -> None:
        self.docs[id(res)] = doc
        match res:
            case IPPool():
                self.pools.append(res)
            case Node():
                self.nodes.append(res)
            case BGPConfiguration():
                (self.node_bgp if res.node is not None else self.bgp).append(res)
            case BGPPeer():
                self.peers.append(res)
            case BGPFilter():
                self.filters.append(res)
            case IPAMConfiguration():
                self.ipam.append(res)
            case BlockAffinity():
                self.affinities.append(res)
            case IPAMBlock():
                self.blocks.append(res)
            case IPAMHandle():
                self.handles.append(res)
            case IPReservation():
                self.reservations.append(res)
            case WorkloadEndpoint():
                (self.pods if doc.kind == "Pod" else self.endpoints).append(res)
            case Service():
                self.services.append(res)
            case ServiceEndpoints():
                self.service_endpoints.append(res)
            case Secret():
                self.secrets.append(res)
            case ScenarioSpec():
                self.specs.append(res)


def read_scenario_docs(paths: Sequence[str | Path], reading: Reading) -> _Collected:
    got = _Collected()
    for path in paths:
        _collect(got, read_documents(path), reading)
    return got


def _collect(got: _Collected, docs: Sequence[Doc], reading: Reading) -> None:
    for top in docs:
        for doc in expand_lists(top):
            res = parse_resource(doc, reading)
            if res is None:
                continue
            for item in res if isinstance(res, list) else (res,):
                got.add(item, doc)


def load_scenario(paths: Sequence[str | Path]) -> Scenario:
    """Read, validate and cross-check one scenario made of one or more YAML files."""
    if not paths:
        raise ScenarioError("<command line>", "no scenario file given", expected="one or more YAML files")
    from meshsim.model.crosscheck import cross_check

    reading = Reading()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # thousands of small frozen resources, no cycles: see yamldoc.parse_documents
    try:
        got = read_scenario_docs(paths, reading)
        return cross_check(got, tuple(str(p) for p in paths), reading)
    finally:
        if gc_was_enabled:
            gc.enable()


def load_scenario_text(text: str, where: str) -> Scenario:
    """`load_scenario` on YAML text that is not (yet) a file, such as a design variant `meshsim compare` is
    about to write; `where` names it in errors and becomes `Scenario.files`."""
    from meshsim.model.crosscheck import cross_check

    reading = Reading()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        got = _Collected()
        _collect(got, parse_documents(text, where), reading)
        return cross_check(got, (where,), reading)
    finally:
        if gc_was_enabled:
            gc.enable()


def warnings_of(reading: Reading) -> tuple[LoadWarning, ...]:
    """What the load read past, one warning per topic."""
    out: list[LoadWarning] = []
    if reading.skipped_kinds:
        total = sum(reading.skipped_kinds.values())
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(reading.skipped_kinds.items()))
        out.append(LoadWarning("skipped-kinds", f"skipped {total} document{'s' if total != 1 else ''} of kinds that "
                                                f"do not touch BGP routing ({kinds}): {SKIP_REASON}"))
    if reading.ipv6:
        what = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in sorted(reading.ipv6.items()))
        out.append(LoadWarning("ipv6", f"IPv6 is not modelled (meshsim emulates IPv4 BGP); read past: {what}"))
    if reading.newer_fields:
        out.append(LoadWarning("newer-fields", "fields of newer Calico releases than v3.28, not modelled and "
                                               f"ignored: {', '.join(sorted(reading.newer_fields))}"))
    if reading.no_bgp_nodes:
        names = sorted(reading.no_bgp_nodes)
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        out.append(LoadWarning("no-bgp-address", f"{len(names)} node{'s' if len(names) != 1 else ''} without an IPv4 "
                               f"BGP address (spec.bgp.ipv4Address / the projectcalico.org/IPv4Address annotation) "
                               f"left out, as confd leaves them out of the mesh: {shown}; their pods and IPAM "
                               "blocks are left out too"))
    for topic, messages in reading.notes.items():
        if topic == "host-network pods":
            continue
        counted = Counter(messages)
        text = "; ".join(m if n == 1 else f"{m} (x{n})" for m, n in counted.items())
        out.append(LoadWarning(topic, text))
    return tuple(out)


__all__ = ["load_scenario", "load_scenario_text", "parse_resource", "expand_lists", "SKIPPED_KINDS", "CALICO_KINDS",
           "CORE_KINDS",
           "warnings_of", "read_scenario_docs"]
