"""The 127.x address each node's BGP session runs on when every node is a process on one machine.

Owns `loopback_addresses(nodes)`: a node's declared address keeps its last three octets (192.168.0.81 ->
127.168.0.81), so logs and `ss` output stay readable; when that address is taken by an earlier node (10.255.0.3/8
and 11.255.0.3/8 both map to 127.255.0.3), is a network or broadcast form (x.x.x.0, x.x.x.255) or is 127.0.0.1,
the node gets the next free address of 127.254.0.0/16 instead. The result is distinct for every node by
construction, so a scenario that validates can run. `loopback_peer_addresses(peer_ips, taken)` does the same for
external BGP peers (a BGPPeer whose peerIP is no node): on loopback meshsim never sends traffic to an address a
manifest names, so such a peer's sessions go to a 127.x address of its own (distinct from every node's; the
fallback range is 127.253.0.0/16), where a test's own BGP speaker can listen. Pure: no I/O.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Iterable

_RESERVED = frozenset({IPv4Address("127.0.0.1")})
_FALLBACK_BASE = int(IPv4Address("127.254.0.0"))
_PEER_FALLBACK_BASE = int(IPv4Address("127.253.0.0"))


def loopback_addresses(nodes: Iterable[tuple[str, IPv4Address]]) -> dict[str, IPv4Address]:
    """(node name, declared address) in scenario order -> a distinct 127.x address per node."""
    out: dict[str, IPv4Address] = {}
    pairs = list(nodes)
    used: set[IPv4Address] = set(_RESERVED)
    direct: dict[str, IPv4Address] = {}
    for name, address in pairs:
        o = address.packed
        if o[3] not in (0, 255):
            direct[name] = IPv4Address(bytes([127, o[1], o[2], o[3]]))
    wanted = set(direct.values())
    fallback = _FALLBACK_BASE
    for name, _address in pairs:
        cand = direct.get(name)
        if cand is None or cand in used:
            while True:
                fallback += 1
                cand = IPv4Address(fallback)
                if cand.packed[3] in (0, 255) or cand in used or cand in wanted:
                    continue
                break
        used.add(cand)
        out[name] = cand
    return out


def loopback_peer_addresses(peer_ips: Iterable[IPv4Address], taken: Iterable[IPv4Address]
                            ) -> dict[IPv4Address, IPv4Address]:
    """External peers' addresses -> a distinct 127.x address each, none of them in `taken` (the nodes' 127.x
    addresses): the last three octets kept when free (10.0.0.1 -> 127.0.0.1 is reserved, so it is not), else the
    next free address of 127.253.0.0/16."""
    used = set(_RESERVED) | set(taken)
    out: dict[IPv4Address, IPv4Address] = {}
    fallback = _PEER_FALLBACK_BASE
    for ip in sorted(set(peer_ips)):
        o = ip.packed
        cand = IPv4Address(bytes([127, o[1], o[2], o[3]]))
        if o[3] in (0, 255) or cand in used:
            while True:
                fallback += 1
                cand = IPv4Address(fallback)
                if cand.packed[3] not in (0, 255) and cand not in used:
                    break
        used.add(cand)
        out[ip] = cand
    return out


__all__ = ["loopback_addresses", "loopback_peer_addresses"]
