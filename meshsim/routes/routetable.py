"""A Linux IPv4 main routing table as a Calico node shows it.

Owns `Route` (one kernel route), `RouteTable` (the main table: one route per (dst, metric),
kernel dump order, longest-prefix `lookup`, `diff` -> `RouteDelta`), the `ip route`
(iproute2 6.1) and `route -n` (net-tools 2.10) renderings, byte for byte as checked against
a real kernel, and `parse_ip_route`, which reads the `ip route` form back.
Pure: stdlib only; no asyncio, no clock, no subprocess.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

__all__ = [
    "DEFAULT",
    "ROUTE_TYPES",
    "Route",
    "RouteDelta",
    "RouteTable",
    "parse_ip_route",
]

DEFAULT = IPv4Network("0.0.0.0/0")
ROUTE_TYPES = ("unicast", "blackhole", "unreachable", "prohibit")
"""Route types of the main table; the last two are the "reject" routes (`!` in `route -n`)."""
_REJECT_TYPES = frozenset({"unreachable", "prohibit"})
_SCOPES = (None, "link", "host")
_HIDDEN_PROTO = "boot"  # RTPROT_BOOT: iproute2 prints no "proto" for it
_HIDDEN_SCOPES = frozenset({"universe", "global"})  # RT_SCOPE_UNIVERSE: not printed
_MAX_METRIC = 2**32 - 1

_ROUTE_N_HEADER = (
    "Kernel IP routing table\n"
    "Destination     Gateway         Genmask         Flags Metric Ref    Use Iface\n"
)


@dataclass(frozen=True)
class Route:
    """One kernel route.

    Normalised on construction the way the kernel makes them indistinguishable:
    proto "boot" -> None, scope "universe"/"global" -> None, metric 0 -> None.
    Strings are accepted for `dst`, `via` and `src`.
    """

    dst: IPv4Network
    """Destination prefix; 0.0.0.0/0 renders as "default"."""
    type: str = "unicast"
    """"unicast", "blackhole", "unreachable" or "prohibit" (only unicast has via/dev)."""
    via: IPv4Address | None = None
    """Gateway."""
    dev: str | None = None
    proto: str | None = None
    """"bird", "kernel", "static", "dhcp", ...; None is RTPROT_BOOT (hidden by iproute2)."""
    scope: str | None = None
    """"link", "host", or None (universe, not printed)."""
    src: IPv4Address | None = None
    """Preferred source address (prefsrc)."""
    metric: int | None = None
    """Priority; None is 0 (not printed)."""
    onlink: bool = False

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        if isinstance(self.dst, str):
            put("dst", IPv4Network(self.dst))
        if isinstance(self.via, str):
            put("via", IPv4Address(self.via))
        if isinstance(self.src, str):
            put("src", IPv4Address(self.src))
        if not isinstance(self.dst, IPv4Network):
            raise TypeError(f"dst must be an IPv4Network, not {type(self.dst).__name__}")
        if self.proto == _HIDDEN_PROTO:
            put("proto", None)
        if self.scope in _HIDDEN_SCOPES:
            put("scope", None)
        if self.metric == 0:
            put("metric", None)

        if self.type not in ROUTE_TYPES:
            raise ValueError(f"unknown route type {self.type!r} (want one of {', '.join(ROUTE_TYPES)})")
        if self.scope not in _SCOPES:
            raise ValueError(f"unknown scope {self.scope!r} (want link, host or None)")
        if self.proto is not None and (not self.proto or any(c.isspace() for c in self.proto)):
            raise ValueError(f"bad proto {self.proto!r}")
        if self.dev is not None and (not self.dev or len(self.dev) > 15 or any(c.isspace() for c in self.dev)):
            raise ValueError(f"bad device name {self.dev!r}")
        if self.metric is not None and not 0 <= self.metric <= _MAX_METRIC:
            raise ValueError(f"metric {self.metric} out of range 0..{_MAX_METRIC}")
        if self.type != "unicast":
            if self.via is not None or self.dev is not None or self.onlink:
                raise ValueError(f"a {self.type} route takes no via, dev or onlink")
        elif self.via is None and self.dev is None:
            raise ValueError(f"unicast route to {self.dst} needs via or dev")
        if self.onlink and self.via is None:
            raise ValueError("onlink needs a gateway (via)")
        if self.via is not None and self.scope is not None:
            raise ValueError(f"a route via a gateway cannot have scope {self.scope}")

    @property
    def key(self) -> tuple[IPv4Network, int]:
        """What makes a route unique in the main table: (dst, metric)."""
        return (self.dst, self.metric or 0)

    @property
    def is_reject(self) -> bool:
        """unreachable or prohibit (`!` in `route -n`)."""
        return self.type in _REJECT_TYPES

    def render_ip(self) -> str:
        """One `ip route` line as iproute2 6.1 prints it, including its trailing space, no newline."""
        words: list[str] = []
        if self.type != "unicast":
            words.append(self.type)
        words.append(_dst_text(self.dst))
        if self.via is not None:
            words += ["via", str(self.via)]
        if self.dev is not None:
            words += ["dev", self.dev]
        if self.proto is not None:
            words += ["proto", self.proto]
        if self.scope is not None:
            words += ["scope", self.scope]
        if self.src is not None:
            words += ["src", str(self.src)]
        if self.metric is not None:
            words += ["metric", str(self.metric)]
        if self.onlink:
            words.append("onlink")
        return " ".join(words) + " "

    def render_route_n(self) -> str:
        """One `route -n` row (net-tools 2.10 reading /proc/net/route), no newline."""
        dest, mask = str(self.dst.network_address), str(self.dst.netmask)
        host = "H" if self.dst.prefixlen == 32 else ""
        metric = _signed32(self.metric or 0)  # net-tools reads the u32 as a signed int
        if self.is_reject:
            return f"{dest:<15} {'-':<15} {mask:<15} {'!' + host:<5} {metric:<6d} {'-':<2} {0:7d} -"
        flags = "U" + ("G" if self.via is not None else "") + host
        gateway = str(self.via) if self.via is not None else "0.0.0.0"
        iface = self.dev or "*"  # a blackhole has no device: /proc/net/route says "*"
        return f"{dest:<15} {gateway:<15} {mask:<15} {flags:<5} {metric:<6d} {0:<2d} {0:7d} {iface}"


@dataclass(frozen=True)
class RouteDelta:
    """What changed between two tables; a changed route appears in both (removed + added)."""

    added: tuple[Route, ...] = ()
    removed: tuple[Route, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


class RouteTable:
    """An immutable set of routes, one per (dst, metric), iterated in kernel dump order.

    Dump order (the fib trie walk): ascending network address; at the same address the longer
    prefix first (so 0.0.0.0/1 precedes default); at the same prefix the lower metric first.
    """

    __slots__ = ("_routes", "_by_key")

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        by_key: dict[tuple[IPv4Network, int], Route] = {}
        for r in routes:
            if not isinstance(r, Route):
                raise TypeError(f"not a Route: {r!r}")
            if r.key in by_key:
                raise ValueError(f"two routes for {_dst_text(r.dst)} metric {r.key[1]}: "
                                 f"{by_key[r.key].render_ip().rstrip()!r} and {r.render_ip().rstrip()!r}")
            by_key[r.key] = r
        self._by_key = by_key
        self._routes = tuple(sorted(by_key.values(), key=_dump_key))

    @property
    def routes(self) -> tuple[Route, ...]:
        """All routes in kernel dump order."""
        return self._routes

    def get(self, dst: IPv4Network, metric: int | None = None) -> Route | None:
        """The route for exactly (dst, metric), if any."""
        return self._by_key.get((dst, metric or 0))

    def render_ip(self) -> str:
        """`ip route` output: one line per route, each ending " \\n"; "" for an empty table."""
        return "".join(r.render_ip() + "\n" for r in self._routes)

    def render_route_n(self) -> str:
        """`route -n` output (net-tools), both header lines included."""
        return _ROUTE_N_HEADER + "".join(r.render_route_n() + "\n" for r in self._routes)

    def lookup(self, addr: IPv4Address | str) -> Route | None:
        """Longest-prefix match (lowest metric on ties); blackhole/reject routes match too."""
        addr = IPv4Address(addr)
        best: Route | None = None
        for r in self._routes:
            if addr in r.dst and (best is None or r.dst.prefixlen > best.dst.prefixlen):
                best = r  # dump order puts the lowest metric first, so only a longer prefix wins
        return best

    def diff(self, new: RouteTable) -> RouteDelta:
        """What to do to turn this table into `new` (both sides in dump order)."""
        old_set, new_set = set(self._routes), set(new.routes)
        return RouteDelta(
            added=tuple(r for r in new.routes if r not in old_set),
            removed=tuple(r for r in self._routes if r not in new_set),
        )

    def with_routes(self, *routes: Route) -> RouteTable:
        """A copy with `routes` added, each replacing any route with the same (dst, metric)."""
        merged = dict(self._by_key)
        for r in routes:
            merged[r.key] = r
        return RouteTable(merged.values())

    def without(self, *items: Route | IPv4Network) -> RouteTable:
        """A copy without the given routes (matched by (dst, metric)) or destinations (every metric)."""
        keys = {i.key for i in items if isinstance(i, Route)}
        dsts = {i for i in items if isinstance(i, IPv4Network)}
        return RouteTable(r for r in self._routes if r.key not in keys and r.dst not in dsts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RouteTable):
            return NotImplemented
        return self._routes == other._routes

    def __hash__(self) -> int:
        return hash(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, Route) and self._by_key.get(item.key) == item

    def __repr__(self) -> str:
        return f"RouteTable({list(self._routes)!r})"


def parse_ip_route(text: str) -> RouteTable:
    """Read `ip route` output (the forms `Route.render_ip` prints) back into a table.

    Blank lines and trailing whitespace are ignored; raises ValueError naming the bad line.
    """
    routes: dict[tuple[IPv4Network, int], Route] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            route = _parse_line(line)
        except ValueError as e:
            raise ValueError(f"line {n}: {e}: {line.rstrip()!r}") from None
        if route.key in routes:
            raise ValueError(f"line {n}: a second route for {_dst_text(route.dst)} metric {route.key[1]}: "
                             f"{line.rstrip()!r}")
        routes[route.key] = route
    return RouteTable(routes.values())


_VALUE_KEYS = ("via", "dev", "proto", "scope", "src", "metric")


def _parse_line(line: str) -> Route:
    words = line.split()
    rtype = "unicast"
    if words[0] in ROUTE_TYPES:
        rtype = words.pop(0)
    if not words:
        raise ValueError("no destination")
    dst_word = words.pop(0)
    try:
        dst = DEFAULT if dst_word == "default" else IPv4Network(dst_word)
    except ValueError as e:
        raise ValueError(f"bad destination {dst_word!r} ({e})") from None
    values: dict[str, str] = {}
    onlink = False
    while words:
        word = words.pop(0)
        if word == "onlink" and not onlink:
            onlink = True
        elif word in _VALUE_KEYS and word not in values:
            if not words:
                raise ValueError(f"{word!r} without a value")
            values[word] = words.pop(0)
        else:
            raise ValueError(f"unexpected {word!r}")
    try:
        return Route(
            dst=dst,
            type=rtype,
            via=IPv4Address(values["via"]) if "via" in values else None,
            dev=values.get("dev"),
            proto=values.get("proto"),
            scope=values.get("scope"),
            src=IPv4Address(values["src"]) if "src" in values else None,
            metric=int(values["metric"]) if "metric" in values else None,
            onlink=onlink,
        )
    except ValueError as e:
        raise ValueError(str(e)) from None


def _dst_text(dst: IPv4Network) -> str:
    if dst.prefixlen == 0 and dst == DEFAULT:
        return "default"
    if dst.prefixlen == 32:
        return str(dst.network_address)
    return dst.with_prefixlen


def _dump_key(r: Route) -> tuple[int, int, int]:
    return (int(r.dst.network_address), -r.dst.prefixlen, r.metric or 0)


def _signed32(value: int) -> int:
    return value - 2**32 if value >= 2**31 else value
