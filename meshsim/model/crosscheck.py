"""Cross-checking the resources of one load into a `Scenario`.

Owns `cross_check(collected, files, reading)`: the rules between documents (one Scenario, one `default`
BGPConfiguration and IPAM configuration, unique names and addresses, pools that do not overlap, node addresses
outside every pool, blocks that are blocks of a pool, references to nodes), and the resolution of what resources
refer to: BGP passwords from Secrets (a missing secret leaves the peering without a password, as calico-node does
when it cannot read it, and says so), BGPFilters named by peers (a missing one is skipped, as confd's template
skips it), IPAM state and pods of nodes that are not in the scenario (stale, or nodes without a BGP address:
left out, with a warning). Hand-written references (BGPPeer.node, BlockAffinity, WorkloadEndpoint, the
Scenario's hosts and workloads) to unknown nodes stay errors. Pure: no asyncio, no clock.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Sequence

from meshsim.errors import ScenarioError
from meshsim.model.calico import Reading
from meshsim.model.loader import _Collected, warnings_of
from meshsim.model.loopback import loopback_addresses
from meshsim.model.resources import BGPConfiguration, IPAMConfiguration, Scenario, ScenarioSpec, WorkloadEndpoint


def _dup(got: _Collected, items: Sequence[Any], key: Any, what: str, fieldpath: str) -> None:
    seen: dict[Any, Any] = {}
    for item in items:
        k = key(item)
        if k in seen:
            first = seen[k]
            raise got.docs[id(item)].error(fieldpath, f"duplicate {what} {k}; first declared in {first.origin}",
                                           expected=f"a unique {what}")
        seen[k] = item


def _known(names: set[str]) -> str:
    listed = sorted(names)
    return ", ".join(listed[:20]) + (f" and {len(listed) - 20} more" if len(listed) > 20 else "")


def cross_check(got: _Collected, files: tuple[str, ...], reading: Reading) -> Scenario:
    if len(got.specs) > 1:
        raise got.docs[id(got.specs[1])].error("kind", f"a scenario has one Scenario document; the first is in "
                                                       f"{got.specs[0].origin}", expected="a single Scenario")
    spec = got.specs[0] if got.specs else ScenarioSpec(name=_stem(files[0]))
    for many, what in ((got.bgp, "BGPConfiguration 'default'"), (got.ipam, "IPAM configuration 'default'")):
        if len(many) > 1:
            raise got.docs[id(many[1])].error("metadata.name", f"{what} declared twice; first in {many[0].origin}",
                                              expected="one")
    if not got.nodes:
        more = " (every Node lacks an IPv4 BGP address)" if reading.no_bgp_nodes else ""
        raise ScenarioError(files[0], f"the scenario declares no Node{more}",
                            expected="at least one Node resource (Calico Node, or Kubernetes v1 Node with Calico's "
                                     "annotations)")
    if not got.pools:
        raise ScenarioError(files[0], "the scenario declares no IPPool", expected="at least one IPPool resource")
    _dup(got, got.pools, lambda p: p.name, "IPPool name", "metadata.name")
    _dup(got, got.nodes, lambda n: n.name, "Node name", "metadata.name")
    _dup(got, got.nodes, lambda n: n.address, "node address", "spec.bgp.ipv4Address")
    _dup(got, got.peers, lambda p: p.name, "BGPPeer name", "metadata.name")
    _dup(got, got.filters, lambda f: f.name, "BGPFilter name", "metadata.name")
    _dup(got, got.node_bgp, lambda c: c.name, "BGPConfiguration", "metadata.name")
    _dup(got, got.blocks, lambda b: b.cidr, "IPAMBlock for block", "spec.cidr")
    for i, a in enumerate(got.pools):
        for b in got.pools[:i]:
            if a.cidr.overlaps(b.cidr):
                raise got.docs[id(a)].error("spec.cidr", f"overlaps IPPool {b.name} ({b.cidr}, {b.origin})",
                                            expected="a CIDR that overlaps no other pool", got=str(a.cidr))
    node_names = {n.name for n in got.nodes}
    left_out = set(reading.no_bgp_nodes)
    known = _known(node_names)
    for n in got.nodes:
        for p in got.pools:
            if n.address in p.cidr:
                raise got.docs[id(n)].error("spec.bgp.ipv4Address", f"the node address lies inside IPPool {p.name} "
                                            f"({p.cidr})", expected="a host address outside every pool",
                                            got=str(n.address))
    # Every node gets a distinct 127.x session address (the rule holds by construction; checked here so a
    # scenario that validates can run).
    loop = loopback_addresses((n.name, n.address) for n in got.nodes)
    assert len(set(loop.values())) == len(loop)

    bgp = got.bgp[0] if got.bgp else BGPConfiguration()
    for conf in got.node_bgp:
        if conf.node not in node_names and conf.node not in left_out:
            raise got.docs[id(conf)].error("metadata.name", "is the BGPConfiguration of no Node of the scenario",
                                           expected=f"node.<one of {known}>", got=conf.name)
    bgp = _resolve_mesh_password(got, bgp, reading)
    peers = _peers(got, node_names, left_out, known, reading)
    affinities = []
    for aff in got.affinities:
        doc = got.docs[id(aff)]
        if aff.node not in node_names:
            if aff.node in left_out:
                continue
            raise doc.error("spec.node", "names no Node of the scenario", expected=f"one of {known}", got=aff.node)
        pool = next((p for p in got.pools if aff.cidr.subnet_of(p.cidr)), None)
        if pool is None:
            raise doc.error("spec.cidr", "lies in no IPPool", expected="a block inside a declared pool",
                            got=str(aff.cidr))
        if aff.cidr.prefixlen != pool.block_size:
            raise doc.error("spec.cidr", f"is not a block of pool {pool.name}", expected=f"a /{pool.block_size}",
                            got=str(aff.cidr))
        affinities.append(aff)
    _dup(got, affinities, lambda a: a.cidr, "BlockAffinity for block", "spec.cidr")
    blocks = _blocks(got, node_names, left_out, reading)
    endpoints = _endpoints(got, node_names, left_out, known, reading)
    spec_doc = got.docs.get(id(spec)) if got.specs else None
    if spec_doc is not None:
        for host, _ in spec.hosts:
            if host != "default" and host not in node_names:
                raise spec_doc.error(("spec", "hosts", host), "names no Node of the scenario",
                                     expected=f"'default' or one of {known}", got=host)
        for node_name, _ in spec.workloads:
            if node_name not in node_names:
                raise spec_doc.error(("spec", "workloads", node_name), "names no Node of the scenario",
                                     expected=f"one of {known}", got=node_name)
    return Scenario(
        files=files, spec=spec, pools=tuple(got.pools), nodes=tuple(got.nodes), bgp=bgp, peers=tuple(peers),
        ipam=got.ipam[0] if got.ipam else IPAMConfiguration(), affinities=tuple(affinities),
        endpoints=tuple(endpoints), filters=tuple(got.filters), node_bgp=tuple(got.node_bgp),
        ipam_blocks=tuple(blocks), ipam_handles=tuple(got.handles), reservations=tuple(got.reservations),
        services=tuple(got.services), service_endpoints=tuple(got.service_endpoints), secrets=tuple(got.secrets),
        warnings=warnings_of(reading),
    )


def _stem(path: str) -> str:
    return Path(path).stem


def _secret_value(got: _Collected, ref: Any) -> str | None:
    for s in got.secrets:
        if s.name == ref.name and s.value(ref.key) is not None:
            return s.value(ref.key)
    return None


def _resolve_mesh_password(got: _Collected, bgp: BGPConfiguration, reading: Reading) -> BGPConfiguration:
    if bgp.node_mesh_password_ref is None:
        return bgp
    value = _secret_value(got, bgp.node_mesh_password_ref)
    if value is None:
        reading.note("secrets", f"BGPConfiguration default: nodeMeshPassword's {bgp.node_mesh_password_ref} is not "
                                "in the scenario; the mesh runs without a password, as calico-node does when it "
                                "cannot read the secret (add the Secret: kubectl get secret NAME -n calico-system "
                                "-o yaml)")
        return bgp
    return replace(bgp, node_mesh_password=value)


def _peers(got: _Collected, node_names: set[str], left_out: set[str], known: str, reading: Reading) -> list:
    filters = {f.name for f in got.filters}
    out = []
    for peer in got.peers:
        doc = got.docs[id(peer)]
        if peer.node is not None and peer.node not in node_names:
            if peer.node in left_out:
                continue
            raise doc.error("spec.node", "names no Node of the scenario", expected=f"one of {known}", got=peer.node)
        for name in peer.filters:
            if name not in filters:
                reading.note("filters", f"BGPPeer {peer.name} names BGPFilter {name}, which is not in the scenario; "
                                        "it is skipped, as confd's template skips a filter it cannot find")
        if peer.password_ref is not None:
            value = _secret_value(got, peer.password_ref)
            if value is None:
                reading.note("secrets", f"BGPPeer {peer.name}: its password's {peer.password_ref} is not in the "
                                        "scenario; the peering runs without a password, as calico-node does when "
                                        "it cannot read the secret")
            else:
                peer = replace(peer, password=value)
        out.append(peer)
    return out


def _blocks(got: _Collected, node_names: set[str], left_out: set[str], reading: Reading) -> list:
    out = []
    stale = 0
    for block in got.blocks:
        doc = got.docs[id(block)]
        pool = next((p for p in got.pools if block.cidr.subnet_of(p.cidr)), None)
        if pool is not None and block.cidr.prefixlen != pool.block_size:
            raise doc.error("spec.cidr", f"is not a block of pool {pool.name}", expected=f"a /{pool.block_size}",
                            got=str(block.cidr))
        if block.affinity is not None and block.affinity not in node_names:
            stale += 1
            block = replace(block, affinity=None)
        out.append(block)
    if stale:
        reading.note("ipam", f"{stale} IPAM block{'s are' if stale != 1 else ' is'} affine to nodes not in the "
                             "scenario (left out, or gone from the cluster): read as blocks without affinity")
    return out


def _endpoints(got: _Collected, node_names: set[str], left_out: set[str], known: str,
               reading: Reading) -> list[WorkloadEndpoint]:
    seen_ips: dict[IPv4Network, WorkloadEndpoint] = {}
    out = []
    outside = 0
    unknown_node = 0
    for wep in [*got.endpoints, *got.pods]:
        doc = got.docs[id(wep)]
        is_pod = doc.kind == "Pod"
        if wep.node not in node_names:
            if wep.node in left_out or is_pod:
                unknown_node += 0 if wep.node in left_out else 1
                continue
            raise doc.error("spec.node", "names no Node of the scenario", expected=f"one of {known}", got=wep.node)
        nets = []
        for i, net in enumerate(wep.ip_networks):
            fieldpath = f"status.podIPs.{i}" if is_pod else f"spec.ipNetworks.{i}"
            if not any(net.subnet_of(p.cidr) for p in got.pools):
                if is_pod:
                    outside += 1
                    continue
                raise doc.error(fieldpath, "lies in no IPPool", expected="an address inside a pool", got=str(net))
            if net in seen_ips:
                raise doc.error(fieldpath, f"is already used by {seen_ips[net].origin}",
                                expected="a unique workload address", got=str(net))
            seen_ips[net] = wep
            nets.append(net)
        if nets:
            out.append(wep if len(nets) == len(wep.ip_networks) else replace(wep, ip_networks=tuple(nets)))
    if outside:
        reading.note("pods", f"{outside} pod address{'es' if outside != 1 else ''} outside every IPPool (not "
                             "Calico IPAM's) left out")
    if unknown_node:
        reading.note("pods", f"{unknown_node} pod{'s' if unknown_node != 1 else ''} on nodes not in the scenario "
                             "left out")
    return out


__all__ = ["cross_check"]
