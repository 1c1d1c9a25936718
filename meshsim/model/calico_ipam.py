"""Reading Calico's IPAM state and workloads: IPAMConfiguration / IPAMConfig, BlockAffinity, IPAMBlock, IPAMHandle,
IPReservation and WorkloadEndpoint documents, and the IPAM part of `calicoctl datastore migrate export`.

Owns one parser per kind. The allocation state reads as the datastore holds it (libcalico-go
lib/apis/v3/ipam_block.go, blockaffinity.go, ipam_handle.go; lib/backend/model/block.go for the attribute keys
`node`, `namespace`, `pod`, `type` and the tunnel types): a block's `affinity: host:<node>`, its `allocations`
(ordinal -> index into `attributes`, null when free), `unallocated` in Calico's order, and each attribute's
`handle_id` and `secondary`. `calicoctl datastore migrate export` prints the same state as JSON after its second
`===` line ({"block_affinities": [...], "blocks": [...], "handles": [...], "config": {...}}, calicoctl
commands/datastore/migrate/migrateipam.go); `migrate_export_ipam` turns it into the same resources.
Pure: no asyncio, no clock.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

from meshsim.model.calico import TOP, Reading, check_name, is_ipv6, metadata
from meshsim.model.resources import (AFFINITY_STATES, DEFAULT_MAX_BLOCKS_PER_HOST, BlockAffinity, BlockAllocation,
                                     IPAMBlock, IPAMConfiguration, IPAMHandle, IPReservation, Origin,
                                     WorkloadEndpoint)
from meshsim.model.yamldoc import Doc

TUNNEL_TYPES = ("ipipTunnelAddress", "vxlanTunnelAddress", "vxlanV6TunnelAddress", "wireguardTunnelAddress",
                "wireguardV6TunnelAddress")


def ipamconfig(doc: Doc, origin: Origin, reading: Reading) -> IPAMConfiguration:
    """IPAMConfiguration (projectcalico.org/v3) or IPAMConfig (crd.projectcalico.org/v1), a singleton `default`."""
    name = metadata(doc)
    doc.check_fields("", TOP)
    if name != "default":
        raise doc.error("metadata.name", "Calico's IPAM configuration is a singleton", expected="'default'", got=name)
    doc.check_fields("spec", ("strictAffinity", "maxBlocksPerHost", "autoAllocateBlocks"))
    doc.boolean("spec.autoAllocateBlocks", True)
    return IPAMConfiguration(
        strict_affinity=doc.boolean("spec.strictAffinity", False),
        max_blocks_per_host=doc.integer("spec.maxBlocksPerHost", DEFAULT_MAX_BLOCKS_PER_HOST, 0, 1 << 20)
        or DEFAULT_MAX_BLOCKS_PER_HOST,
        origin=origin,
    )


def _deleted(doc: Doc, fieldpath: str) -> bool:
    """`deleted`: a bool in IPAMBlock/IPAMHandle, a string ("", "false", "true") in BlockAffinity."""
    value = doc.raw(fieldpath)
    if value in (None, "", False, "false", "False"):
        return False
    if value in (True, "true", "True"):
        return True
    raise doc.error(fieldpath, "is not a valid value", expected="true or false", got=value)


def blockaffinity(doc: Doc, origin: Origin, reading: Reading) -> BlockAffinity | None:
    name = metadata(doc, name_required=False)
    doc.check_fields("", TOP)
    doc.check_fields("spec", ("node", "cidr", "state", "deleted", "type"))
    node_name = doc.string("spec.node", required=True)
    assert node_name is not None
    check_name(doc, "spec.node", node_name)
    if is_ipv6(doc.raw("spec.cidr")):
        reading.ipv6["BlockAffinity"] += 1
        return None
    cidr = doc.network("spec.cidr", required=True)
    assert cidr is not None
    state = doc.raw("spec.state")
    implicit = state in (None, "")
    if not implicit:
        state = doc.choice("spec.state", AFFINITY_STATES, "confirmed")
    if _deleted(doc, "spec.deleted"):
        return None
    return BlockAffinity(name=name or f"{node_name}-{cidr}".replace("/", "-").replace(".", "-"), node=node_name,
                         cidr=cidr, state="confirmed" if implicit else state, implicit=implicit, origin=origin)


def _affinity_node(doc: Doc, fieldpath: str) -> str | None:
    value = doc.raw(fieldpath)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or ":" not in value:
        raise doc.error(fieldpath, "is not a block affinity", expected="host:<node name>", got=value)
    kind, _, host = value.partition(":")
    if kind != "host":
        return None  # e.g. virtual:... (a load-balancer block): not a node's block
    check_name(doc, fieldpath, host)
    return host


def _ordinal_list(doc: Doc, fieldpath: str, size: int) -> list[int]:
    out = []
    for i, v in enumerate(doc.sequence(fieldpath)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < size:
            raise doc.error(f"{fieldpath}.{i}", "is not an ordinal of the block", expected=f"an integer 0..{size - 1}",
                            got=v)
        out.append(v)
    return out


def ipam_block(doc: Doc, origin: Origin, reading: Reading, *, name: str | None = None,
               spec: str = "spec") -> IPAMBlock | None:
    """An IPAMBlock document (`spec` holds the block), or with `spec` pointing elsewhere, the same object inside
    a migrate-export entry."""
    if name is None:
        name = metadata(doc)
        doc.check_fields("", TOP)
    doc.check_fields(spec, ("cidr", "affinity", "allocations", "unallocated", "attributes", "deleted",
                            "sequenceNumber", "sequenceNumberForAllocation", "strictAffinity"))
    if is_ipv6(doc.raw(f"{spec}.cidr")):
        reading.ipv6["IPAMBlock"] += 1
        return None
    cidr = doc.network(f"{spec}.cidr", required=True)
    assert cidr is not None
    size = cidr.num_addresses
    allocations = doc.sequence(f"{spec}.allocations")
    if len(allocations) != size:
        raise doc.error(f"{spec}.allocations", f"has {len(allocations)} entries for a block of {size} addresses",
                        expected=f"{size} entries (an attribute index or null per address)")
    attributes = doc.sequence(f"{spec}.attributes")
    parsed_attrs = []
    for i, _a in enumerate(attributes):
        base = f"{spec}.attributes.{i}"
        doc.check_fields(base, ("handle_id", "secondary"))
        secondary = doc.mapping(f"{base}.secondary")
        values = {}
        for key, value in secondary.items():
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise doc.error(f"{base}.secondary.{key}", "must be a string", got=value)
            values[str(key)] = None if value is None else str(value)
        handle = doc.raw(f"{base}.handle_id")
        if handle is not None and not isinstance(handle, str):
            raise doc.error(f"{base}.handle_id", "must be a string", got=handle)
        parsed_attrs.append((handle, values))
    allocated = []
    for ordinal, index in enumerate(allocations):
        if index is None:
            continue
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(parsed_attrs):
            raise doc.error(f"{spec}.allocations.{ordinal}", "is not an index into attributes",
                            expected=f"null or an integer 0..{len(parsed_attrs) - 1}", got=index)
        handle, values = parsed_attrs[index]
        kind = values.get("type")
        allocated.append(BlockAllocation(ordinal=ordinal, handle=handle, node=values.get("node") or None,
                                         namespace=values.get("namespace") or None, pod=values.get("pod") or None,
                                         type=kind if kind in TUNNEL_TYPES else None))
    unallocated = _ordinal_list(doc, f"{spec}.unallocated", size) if doc.raw(f"{spec}.unallocated") is not None \
        else None
    if unallocated is not None:
        used = {a.ordinal for a in allocated}
        clash = next((o for o in unallocated if o in used), None)
        if clash is not None:
            raise doc.error(f"{spec}.unallocated", f"lists ordinal {clash}, which allocations says is in use",
                            expected="the free ordinals only")
    deleted = doc.raw(f"{spec}.deleted") in (True, "true")
    if deleted:
        return None
    return IPAMBlock(name=name or str(cidr).replace(".", "-").replace("/", "-"), cidr=cidr,
                     affinity=_affinity_node(doc, f"{spec}.affinity"), allocations=tuple(allocated),
                     unallocated=tuple(unallocated) if unallocated is not None else None, origin=origin)


def ipam_handle(doc: Doc, origin: Origin, reading: Reading) -> IPAMHandle | None:
    name = metadata(doc)
    doc.check_fields("", TOP)
    doc.check_fields("spec", ("handleID", "block", "deleted"))
    handle = doc.string("spec.handleID", name) or name
    blocks = []
    for key, count in doc.mapping("spec.block").items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise doc.error(f"spec.block.{key}", "must be a count of addresses", expected="an integer >= 0", got=count)
        blocks.append((str(key), count))
    if _deleted(doc, "spec.deleted"):
        return None
    return IPAMHandle(name=name, handle_id=handle, blocks=tuple(blocks), origin=origin)


def ipreservation(doc: Doc, origin: Origin, reading: Reading) -> IPReservation:
    name = metadata(doc)
    doc.check_fields("", TOP)
    doc.check_fields("spec", ("reservedCIDRs",))
    cidrs = []
    for i, item in enumerate(doc.sequence("spec.reservedCIDRs")):
        if is_ipv6(item):
            reading.ipv6["IPReservation"] += 1
            continue
        text = item if isinstance(item, str) and "/" in item else f"{item}/32" if isinstance(item, str) else item
        cidrs.append(doc.parse_network(f"spec.reservedCIDRs.{i}", text, strict=False))
    return IPReservation(name=name, reserved_cidrs=tuple(cidrs), origin=origin)


WEP_FIELDS = ("node", "pod", "interfaceName", "ipNetworks", "orchestrator", "workload", "endpoint", "containerID",
              "profiles", "mac", "serviceAccountName", "ports", "ipNATs", "ipv4Gateway", "ipv6Gateway",
              "allowSpoofedSourcePrefixes", "awsElasticIPs", "qosControls")


def workloadendpoint(doc: Doc, origin: Origin, reading: Reading) -> WorkloadEndpoint | None:
    name = metadata(doc, name_required=False)
    doc.check_fields("", TOP)
    doc.check_fields("spec", WEP_FIELDS)
    node_name = doc.string("spec.node", required=True)
    pod = doc.string("spec.pod", required=True)
    assert node_name is not None and pod is not None
    check_name(doc, "spec.node", node_name)
    namespace = doc.string("metadata.namespace", "default") or "default"
    iface = doc.string("spec.interfaceName") or None
    nets_raw = doc.sequence("spec.ipNetworks")
    if not nets_raw:
        raise doc.error("spec.ipNetworks", "needs at least one address", expected="a list like ['10.244.42.68/32']",
                        got=doc.raw("spec.ipNetworks"))
    nets: list[IPv4Network] = []
    for i, item in enumerate(nets_raw):
        if is_ipv6(item):
            reading.ipv6["WorkloadEndpoint address"] += 1
            continue
        text = item if isinstance(item, str) and "/" in item else f"{item}/32" if isinstance(item, str) else item
        net = doc.parse_network(f"spec.ipNetworks.{i}", text)
        if net.prefixlen != 32:
            raise doc.error(f"spec.ipNetworks.{i}", "a workload address must be a /32", expected="a /32", got=item)
        nets.append(net)
    if not nets:
        return None
    return WorkloadEndpoint(name=name or f"{node_name}-k8s-{pod}-eth0", namespace=namespace, node=node_name, pod=pod,
                            interface_name=iface, ip_networks=tuple(nets), origin=origin)


# ----------------------------------------------------------------------------------------------
# calicoctl datastore migrate export: the IPAM JSON part

MIGRATE_KEYS = frozenset({"block_affinities", "blocks", "handles", "config"})


def is_migrate_export_ipam(data: Any) -> bool:
    return isinstance(data, dict) and bool(data) and set(data) <= MIGRATE_KEYS and "apiVersion" not in data


def migrate_export_ipam(doc: Doc, origin: Origin, reading: Reading) -> list[Any]:
    """The resources of the IPAM JSON object `calicoctl datastore migrate export` prints: KV pairs whose keys are
    etcd paths (/calico/ipam/v2/host/<node>/ipv4/block/<cidr>, /calico/ipam/v2/assignment/ipv4/block/<cidr>,
    /calico/ipam/v2/handle/<id>) and whose values are the backend model objects."""
    doc.kind = "calicoctl datastore migrate export (IPAM)"
    out: list[Any] = []
    for i, _entry in enumerate(doc.sequence("block_affinities")):
        base = f"block_affinities.{i}"
        doc.check_fields(base, ("Key", "Value", "TTL"))
        key = doc.string(f"{base}.Key", required=True) or ""
        parts = key.strip("/").split("/")
        # calico/ipam/v2/host/<node>/ipv4/block/<a.b.c.d-nn>
        if len(parts) < 4 or parts[-3] not in ("ipv4", "ipv6") or parts[-2] != "block":
            raise doc.error(f"{base}.Key", "is not a block affinity key",
                            expected="/calico/ipam/v2/host/<node>/ipv4/block/<cidr with - for />", got=key)
        if parts[-3] == "ipv6":
            reading.ipv6["BlockAffinity"] += 1
            continue
        doc.check_fields(f"{base}.Value", ("state", "deleted"))
        node_name = check_name(doc, f"{base}.Key", parts[-4])
        cidr = doc.parse_network(f"{base}.Key", parts[-1].replace("-", "/"))
        state = doc.raw(f"{base}.Value.state")
        implicit = state in (None, "")
        if not implicit and state not in AFFINITY_STATES:
            raise doc.error(f"{base}.Value.state", "is not a valid value", expected=" | ".join(AFFINITY_STATES),
                            got=state)
        if doc.raw(f"{base}.Value.deleted") in (True, "true"):
            continue
        out.append(BlockAffinity(name=f"{node_name}-{parts[-1]}", node=node_name, cidr=cidr,
                                 state="confirmed" if implicit else state, implicit=implicit, origin=origin))
    for i, _entry in enumerate(doc.sequence("blocks")):
        base = f"blocks.{i}"
        doc.check_fields(base, ("Key", "Value", "TTL"))
        block = ipam_block(doc, origin, reading, name=f"block-{i}", spec=f"{base}.Value")
        if block is not None:
            out.append(block)
    for i, _entry in enumerate(doc.sequence("handles")):
        base = f"handles.{i}"
        doc.check_fields(base, ("Key", "Value", "TTL"))
        doc.check_fields(f"{base}.Value", ("block", "deleted"))
        key = doc.string(f"{base}.Key", required=True) or ""
        blocks = tuple((str(k), v) for k, v in doc.mapping(f"{base}.Value.block").items() if isinstance(v, int))
        out.append(IPAMHandle(name=key.rsplit("/", 1)[-1], handle_id=key.rsplit("/", 1)[-1], blocks=blocks,
                              origin=origin))
    if doc.raw("config") is not None:
        doc.check_fields("config", ("Key", "Value", "TTL"))
        doc.check_fields("config.Value", ("strict_affinity", "auto_allocate_blocks", "maxBlocksPerHost"))
        out.append(IPAMConfiguration(
            strict_affinity=doc.boolean("config.Value.strict_affinity", False),
            max_blocks_per_host=doc.integer("config.Value.maxBlocksPerHost", DEFAULT_MAX_BLOCKS_PER_HOST, 0, 1 << 20)
            or DEFAULT_MAX_BLOCKS_PER_HOST, origin=origin))
    return out


__all__ = ["ipamconfig", "blockaffinity", "ipam_block", "ipam_handle", "ipreservation", "workloadendpoint",
           "is_migrate_export_ipam", "migrate_export_ipam", "TUNNEL_TYPES"]
