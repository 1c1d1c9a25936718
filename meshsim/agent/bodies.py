"""Checking what arrives at a node's API, completely, before anything is applied.

Owns one function per request body or query value: each returns typed data or raises `HttpError(400,
...)` naming the field and what was expected, so a bad request never half-applies (a bad block in
POST /local does not withdraw the node's real blocks first) and never becomes a 500.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, fields, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from meshsim.agent.config import LocalState, NodeConfig, PeerConfig
from meshsim.agent.http import HttpError
from meshsim.model.resources import ENCAP_MODES


def _bad(field: str, expected: str, got: Any) -> HttpError:
    text = repr(got)
    if len(text) > 80:
        text = text[:77] + "..."
    return HttpError(400, f"{field}: expected {expected}, got {text}")


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad("body", f"a JSON object ({what})", body)
    return body


def _strings(body: dict[str, Any], key: str, check: Any, what: str) -> tuple[str, ...]:
    value = body.get(key, [])
    if not isinstance(value, list):
        raise _bad(key, f"a list of {what}", value)
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _bad(f"{key}[{i}]", what, item)
        try:
            check(item)
        except ValueError:
            raise _bad(f"{key}[{i}]", what, item) from None
        out.append(item)
    return tuple(out)


_CIDR_LISTS = ("blocks", "affine", "originate", "static_routes", "reject_cidrs", "rr_accept")


def local_state(body: Any) -> LocalState:
    """POST /local: LocalState.to_json()'s shape ({"blocks": [CIDR], "affine": [CIDR], "workloads": [[IP, IFACE]],
    "originate": [CIDR], "static_routes", "reject_cidrs", "rr_accept": [CIDR], "tunnel": IP|null}), all checked."""
    known = (*_CIDR_LISTS, "workloads", "tunnel")
    body = _object(body, ", ".join(known))
    unknown = set(body) - set(known)
    if unknown:
        raise _bad(sorted(unknown)[0], f"one of {', '.join(known)}", sorted(unknown)[0])
    lists = {key: _strings(body, key, IPv4Network, "an IPv4 CIDR") for key in _CIDR_LISTS}
    raw = body.get("workloads", [])
    if not isinstance(raw, list):
        raise _bad("workloads", "a list of [IP, interface]", raw)
    workloads = []
    for i, w in enumerate(raw):
        if not (isinstance(w, list) and len(w) == 2 and all(isinstance(x, str) for x in w)):
            raise _bad(f"workloads[{i}]", "[IP, interface]", w)
        try:
            IPv4Address(w[0])
        except ValueError:
            raise _bad(f"workloads[{i}][0]", "an IPv4 address", w[0]) from None
        if not w[1] or len(w[1]) > 15 or any(c.isspace() or c == "/" for c in w[1]):
            raise _bad(f"workloads[{i}][1]", "an interface name (1-15 characters, no spaces or /)", w[1])
        workloads.append((w[0], w[1]))
    tunnel = body.get("tunnel")
    if tunnel is not None:
        try:
            IPv4Address(tunnel)
        except (ValueError, TypeError):
            raise _bad("tunnel", "an IPv4 address or null", tunnel) from None
    return LocalState(workloads=tuple(workloads), tunnel=tunnel, **lists)


_PEER_FIELDS = {f.name: f for f in fields(PeerConfig)}
_PEER_REQUIRED = tuple(f.name for f in fields(PeerConfig) if f.default is MISSING)
_PEER_TYPES = ("node-to-node mesh", "node specific", "global")
_POOL_FIELDS = ("name", "cidr", "block_size", "ipip_mode", "vxlan_mode", "disabled", "disable_bgp_export")


def _int(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 253 and value.isprintable()


def _ipv4(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        IPv4Address(value)
    except ValueError:
        return False
    return True


def _cidr(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        IPv4Network(value)
    except ValueError:
        return False
    return True


# field -> (check, what a bad value is told it should be); every field of PeerConfig has one
_PEER_CHECKS: dict[str, tuple[Any, str]] = {
    "name": (_name, "a protocol name"),
    "address": (_ipv4, "an IPv4 address"),
    "session_address": (_ipv4, "an IPv4 address"),
    "port": (lambda v: _int(v, 1, 65535), "a port 1..65535"),
    "asn": (lambda v: _int(v, 1, 0xFFFFFFFF), "an AS number 1..4294967295"),
    "passive": (lambda v: isinstance(v, bool), "true or false"),
    "rr_client": (lambda v: isinstance(v, bool), "true or false"),
    "type": (lambda v: v in _PEER_TYPES, f"one of {', '.join(_PEER_TYPES)}"),
    "peer_node": (lambda v: v is None or _name(v), "a node name or null"),
    "password": (lambda v: v is None or (isinstance(v, str) and 0 < len(v) <= 80), "a TCP-MD5 key (1-80 characters) "
                                                                                    "or null"),
    "restart_time": (lambda v: v is None or _int(v, 0, 0xFFFF), "seconds 0..65535 or null"),
    "keep_next_hop": (lambda v: isinstance(v, bool), "true or false"),
    "allow_local_as": (lambda v: _int(v, 0, 255), "a count 0..255"),
    "source_address": (lambda v: v in ("UseNodeIP", "None"), "UseNodeIP or None"),
    "ttl_security": (lambda v: _int(v, 0, 255), "a hop count 0..255"),
    "reachable_by": (lambda v: v is None or _ipv4(v), "an IPv4 address or null"),
    "filters": (lambda v: isinstance(v, list) and all(_name(x) for x in v), "a list of BGPFilter names"),
    "calico_node": (lambda v: isinstance(v, bool), "true or false"),
}
assert set(_PEER_CHECKS) == set(_PEER_FIELDS), "a PeerConfig field without a check"


def _peer(i: int, raw: Any, config: NodeConfig) -> PeerConfig:
    if not isinstance(raw, dict):
        raise _bad(f"peers[{i}]", "a peer object", raw)
    unknown = set(raw) - set(_PEER_FIELDS)
    if unknown:
        raise _bad(f"peers[{i}].{sorted(unknown)[0]}", f"one of {', '.join(_PEER_FIELDS)}", sorted(unknown)[0])
    for key in _PEER_REQUIRED:
        if key not in raw:
            raise _bad(f"peers[{i}].{key}", "present", None)
    for key, value in raw.items():
        check, what = _PEER_CHECKS[key]
        if not check(value):
            raise _bad(f"peers[{i}].{key}", what, value)
    peer = PeerConfig(**{**raw, "filters": tuple(raw.get("filters", ()))})
    # The runner only ever points a node at addresses of its own run: on one machine, loopback.
    own = IPv4Address(config.session_address)
    if own.is_loopback and not IPv4Address(peer.session_address).is_loopback:
        raise _bad(f"peers[{i}].session_address", "a 127.x address (this node runs on loopback)",
                   peer.session_address)
    return peer


def _pool(i: int, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _bad(f"pools[{i}]", "a pool object", raw)
    if set(raw) != set(_POOL_FIELDS):
        odd = sorted(set(raw) ^ set(_POOL_FIELDS))[0]
        raise _bad(f"pools[{i}].{odd}", f"exactly the fields {', '.join(_POOL_FIELDS)}", odd)
    if not _name(raw["name"]):
        raise _bad(f"pools[{i}].name", "an IPPool name", raw["name"])
    if not _cidr(raw["cidr"]):
        raise _bad(f"pools[{i}].cidr", "an IPv4 CIDR", raw["cidr"])
    prefix = IPv4Network(raw["cidr"]).prefixlen
    if not _int(raw["block_size"], max(20, prefix), 32):  # Calico's IPPool rule (meshsim.model.calico)
        raise _bad(f"pools[{i}].block_size", f"a block size {max(20, prefix)}..32", raw["block_size"])
    for key in ("ipip_mode", "vxlan_mode"):
        if raw[key] not in ENCAP_MODES:
            raise _bad(f"pools[{i}].{key}", f"one of {', '.join(ENCAP_MODES)}", raw[key])
    for key in ("disabled", "disable_bgp_export"):
        if not isinstance(raw[key], bool):
            raise _bad(f"pools[{i}].{key}", "true or false", raw[key])
    return dict(raw)


def node_config_update(config: NodeConfig, body: Any) -> NodeConfig:
    """POST /config: {"peers": [...], "pools": [...], "cluster_id": str|null} -> the node's new config."""
    body = _object(body, "peers, pools, cluster_id")
    unknown = set(body) - {"peers", "pools", "cluster_id"}
    if unknown:
        raise _bad(sorted(unknown)[0], "one of peers, pools, cluster_id", sorted(unknown)[0])
    raw_peers = body.get("peers")
    if not isinstance(raw_peers, list):
        raise _bad("peers", "a list of peers", raw_peers)
    peers = tuple(_peer(i, p, config) for i, p in enumerate(raw_peers))
    names = [p.name for p in peers]
    if len(set(names)) != len(names):
        raise _bad("peers", "unique protocol names", sorted(n for n in names if names.count(n) > 1)[0])
    raw_pools = body.get("pools", list(config.pools))
    if not isinstance(raw_pools, list):
        raise _bad("pools", "a list of pool objects", raw_pools)
    pools = tuple(_pool(i, p) for i, p in enumerate(raw_pools))
    cluster_id = body.get("cluster_id", config.cluster_id)
    if cluster_id is not None and not _ipv4(cluster_id):
        raise _bad("cluster_id", "an IPv4 address or null", cluster_id)
    return replace(config, peers=peers, pools=pools, cluster_id=cluster_id)


def peer_name(body: Any) -> str:
    body = _object(body, "peer")
    name = body.get("peer")
    if not isinstance(name, str) or not name:
        raise _bad("peer", "a protocol name (Mesh_192_168_0_82) or a node name", name)
    return name


def run_id(body: Any, expected: str) -> None:
    """POST /shutdown may say which run it is meant for; a runner never stops another run's node."""
    if body is None:
        return
    body = _object(body, "run_id")
    got = body.get("run_id")
    if got is not None and got != expected:
        raise HttpError(409, f"this node belongs to run {expected or '(none)'}, not {got}")


def query_float(query: dict[str, str], key: str, default: float) -> float:
    if key not in query:
        return default
    try:
        value = float(query[key])
    except ValueError:
        raise _bad(f"?{key}", "a number", query[key]) from None
    if not math.isfinite(value):
        raise _bad(f"?{key}", "a finite number", query[key])
    return value


def query_int(query: dict[str, str], key: str, default: int) -> int:
    if key not in query:
        return default
    try:
        return int(query[key])
    except ValueError:
        raise _bad(f"?{key}", "an integer", query[key]) from None
