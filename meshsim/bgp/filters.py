"""Calico's BGPFilter rules and BGP communities, as pure functions the speaker and the oracle both use.

Owns
- `FilterRule` (one BGPFilterRuleV4 in a JSON-friendly form) and `run_filters(filters, route)`: what the BIRD
  functions confd renders from BGPFilters decide for one route. A peer's filters run in the order its BGPPeer
  lists them, each filter's rules in order; the first rule that matches decides (`accept;` / `reject;`
  terminate the BIRD filter), and when none matches the route goes on to `calico_export_to_bgp_peers` (export)
  or is accepted (import). Conditions, as confd's template_funcs.go filterStatement renders them:
  cidr with matchOperator Equal `net = C`, NotEqual `net != C`, In `net ~ C`, NotIn `net !~ C`; source
  RemotePeers `defined(source) && source ~ [ RTS_BGP ]` (a route learned over BGP); interface
  `defined(ifname) && ifname ~ "GLOB"` (BIRD's pattern: `*` any text, `?` one character);
- `RouteFacts`: what the conditions look at (the prefix, whether it came from BGP, its interface);
- `PrefixCommunities` and `add_communities`: `apply_communities()` of bird.cfg (BGPConfiguration
  prefixAdvertisements), `bgp_community.add((a,b))` / `bgp_large_community.add((a,b,c))` for every
  advertisement whose CIDR holds the route;
- communities as text, "a:b" (RFC 1997) and "a:b:c" (RFC 8092), sorted numerically.
Pure: stdlib only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Network
from typing import Any, Iterable, Sequence

ACTIONS = ("Accept", "Reject")
OPERATORS = ("Equal", "NotEqual", "In", "NotIn")


@dataclass(frozen=True)
class FilterRule:
    """One rule of a BGPFilter's importV4 / exportV4."""

    action: str  # Accept | Reject
    cidr: IPv4Network | None = None
    operator: str | None = None  # Equal | NotEqual | In | NotIn (required with cidr)
    source: str | None = None  # RemotePeers
    interface: str | None = None  # BIRD pattern, e.g. "eth*"

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"bad filter action {self.action!r}")
        if (self.cidr is None) != (self.operator is None):
            raise ValueError("a filter rule's cidr and matchOperator go together")
        if self.operator is not None and self.operator not in OPERATORS:
            raise ValueError(f"bad matchOperator {self.operator!r}")
        if isinstance(self.cidr, str):
            object.__setattr__(self, "cidr", IPv4Network(self.cidr))

    def to_json(self) -> dict[str, Any]:
        """Calico's field names (BGPFilterRuleV4)."""
        out: dict[str, Any] = {"action": self.action}
        if self.cidr is not None:
            out["cidr"] = str(self.cidr)
            out["matchOperator"] = self.operator
        if self.source is not None:
            out["source"] = self.source
        if self.interface is not None:
            out["interface"] = self.interface
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FilterRule":
        cidr = data.get("cidr")
        return cls(action=data["action"], cidr=IPv4Network(cidr) if cidr else None,
                   operator=data.get("matchOperator") or None, source=data.get("source") or None,
                   interface=data.get("interface") or None)


@dataclass(frozen=True)
class Filter:
    """One BGPFilter's rules for one direction (v4), named as the BGPFilter."""

    name: str
    rules: tuple[FilterRule, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "rules": [r.to_json() for r in self.rules]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Filter":
        return cls(name=data["name"], rules=tuple(FilterRule.from_json(r) for r in data.get("rules", ())))


@dataclass(frozen=True)
class RouteFacts:
    """What a filter condition can look at."""

    prefix: IPv4Network
    from_bgp: bool  # source ~ [ RTS_BGP ]
    ifname: str | None = None  # None: `defined(ifname)` is false (a blackhole or static route)


@lru_cache(maxsize=256)
def _pattern(glob: str) -> re.Pattern[str]:
    """BIRD's patmatch: `*` any text, `?` any one character, everything else literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob) + r"\Z",
                      re.DOTALL)


def _cidr_matches(prefix: IPv4Network, cidr: IPv4Network, operator: str) -> bool:
    inside = prefix.subnet_of(cidr)  # BIRD `net ~ C`: the prefix lies within C (C itself included)
    match operator:
        case "Equal":
            return prefix == cidr
        case "NotEqual":
            return prefix != cidr
        case "In":
            return inside
        case "NotIn":
            return not inside
    raise ValueError(f"bad matchOperator {operator!r}")


def rule_matches(rule: FilterRule, route: RouteFacts) -> bool:
    if rule.cidr is not None and not _cidr_matches(route.prefix, rule.cidr, rule.operator or "In"):
        return False
    if rule.source == "RemotePeers" and not route.from_bgp:
        return False
    if rule.interface is not None and (route.ifname is None or not _pattern(rule.interface).match(route.ifname)):
        return False
    return True


def run_filters(filters: Sequence[Filter], route: RouteFacts) -> tuple[str | None, str]:
    """("accept" | "reject" | None, why): the first matching rule of the filters in order, or None when no rule
    matches (the route falls through to what follows the filter calls in confd's BIRD filter)."""
    for f in filters:
        for i, rule in enumerate(f.rules):
            if rule_matches(rule, route):
                action = rule.action.lower()
                return action, f"BGPFilter {f.name} rule {i} ({action})"
    return None, "no BGPFilter rule matched"


# ----------------------------------------------------------------------------------------------
# Communities


@dataclass(frozen=True)
class PrefixCommunities:
    """One prefixAdvertisement: communities (values) for routes within `cidr`."""

    cidr: IPv4Network
    communities: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"cidr": str(self.cidr), "communities": list(self.communities)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PrefixCommunities":
        return cls(cidr=IPv4Network(data["cidr"]), communities=tuple(data.get("communities", ())))


def community_key(text: str) -> tuple[int, ...]:
    """Sort key: standard communities (two parts) before large ones (three), each numerically."""
    parts = tuple(int(p) for p in text.split(":"))
    return (len(parts), *parts)


def merge_communities(existing: Iterable[str], added: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(existing) | set(added), key=community_key))


def communities_for(prefix: IPv4Network, advertisements: Sequence[PrefixCommunities]) -> tuple[str, ...]:
    """apply_communities(): the communities every advertisement whose CIDR holds `prefix` adds."""
    added: set[str] = set()
    for adv in advertisements:
        if prefix.subnet_of(adv.cidr):
            added.update(adv.communities)
    return tuple(sorted(added, key=community_key))


__all__ = ["FilterRule", "Filter", "RouteFacts", "run_filters", "rule_matches", "PrefixCommunities",
           "communities_for", "merge_communities", "community_key"]
