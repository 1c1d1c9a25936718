"""BIRD's own output read back: `birdc show protocols [all]`, `show route [all]`, and its control-socket replies.

Owns `ProtocolRow`, `ProtocolDetail`, `BirdRoute`, `parse_protocols`, `parse_protocols_all`, `parse_routes`,
`bgp_attrs` (a BGP route's attributes in the shape of meshsim's /rib entries) and `split_reply`, for BIRD 2.0's
formats. Pure: no asyncio, no subprocess, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from ipaddress import IPv4Network

@dataclass(frozen=True)
class ProtocolRow:
    """One line of `birdc show protocols`."""

    name: str
    proto: str
    table: str
    state: str  # up | start | down | stop | flush
    since: str
    info: str


@dataclass
class ProtocolDetail:
    """What `show protocols all` adds for one protocol."""

    row: ProtocolRow
    bgp_state: str | None = None
    neighbor_address: str | None = None
    neighbor_id: str | None = None
    last_error: str | None = None
    routes: dict[str, int] = field(default_factory=dict)  # imported, exported, preferred ...
    # "Route change stats": {"import updates": {"received": 1, ...}, ...}; "---" becomes None
    stats: dict[str, dict[str, int | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class BirdRoute:
    """One route of `show route [all]`."""

    prefix: IPv4Network
    kind: str  # unicast | blackhole | unreachable | prohibit
    protocol: str
    since: str
    primary: bool
    preference: int
    via: tuple[tuple[str, str], ...] = ()  # (gateway, interface) per next hop
    dev: str | None = None  # a device route
    attrs: tuple[tuple[str, str], ...] = ()  # ("BGP.next_hop", "192.168.0.82"), ...
    source: str | None = None  # "from X" (the BGP neighbor when it differs from the protocol's)
    sync_error: bool = False  # marked `!`: the best route, which the kernel protocol failed to install

    def attr(self, name: str) -> str | None:
        return dict(self.attrs).get(name)


_HEADER_RE = re.compile(r"^Name\s+Proto\s+Table\s+State\s+Since\s+Info")


def _strip_banner(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("BIRD ")]


def parse_protocols(text: str) -> list[ProtocolRow]:
    """`birdc show protocols` (BIRD 2.0): Name Proto Table State Since Info."""
    rows = []
    for line in _strip_banner(text):
        if _HEADER_RE.match(line) or line[0].isspace():
            continue
        parts = line.split()
        if len(parts) < 5:
            continue
        rows.append(ProtocolRow(parts[0], parts[1], parts[2], parts[3], parts[4], " ".join(parts[5:])))
    return rows


_STAT_ROW = re.compile(r"^\s+(Import updates|Import withdraws|Export updates|Export withdraws):\s+(.*)$")
_STAT_COLS = ("received", "rejected", "filtered", "ignored", "accepted")


def parse_protocols_all(text: str) -> dict[str, ProtocolDetail]:
    """`birdc show protocols all`: one ProtocolDetail per protocol."""
    out: dict[str, ProtocolDetail] = {}
    cur: ProtocolDetail | None = None
    for line in _strip_banner(text):
        if _HEADER_RE.match(line):
            continue
        if not line[0].isspace():
            rows = parse_protocols(line)
            if rows:
                cur = ProtocolDetail(rows[0])
                out[cur.row.name] = cur
            continue
        if cur is None:
            continue
        m = _STAT_ROW.match(line)
        if m:
            values = m.group(2).split()
            cur.stats[m.group(1).lower()] = {c: (None if v == "---" else int(v)) for c, v in zip(_STAT_COLS, values)}
            continue
        key, _, value = line.strip().partition(":")
        value = value.strip()
        match key:
            case "BGP state":
                cur.bgp_state = value
            case "Neighbor address":
                cur.neighbor_address = value
            case "Neighbor ID":
                cur.neighbor_id = value
            case "Last error":
                cur.last_error = value
            case "Routes":
                for part in value.split(","):
                    bits = part.split()
                    if len(bits) == 2 and bits[0].isdigit():
                        cur.routes[bits[1]] = int(bits[0])
    return out


_ROUTE_RE = re.compile(
    r"^(?P<prefix>\d+\.\d+\.\d+\.\d+/\d+)?\s+(?P<kind>unicast|blackhole|unreachable|prohibit)\s+"
    r"\[(?P<proto>\S+) (?P<since>[^\]]*?)(?: from (?P<src>\S+))?\]\s*(?P<primary>[*!])?\s*\((?P<pref>\d+)")
_VIA_RE = re.compile(r"^\s+via (?P<gw>\S+) on (?P<dev>\S+)")
_DEV_RE = re.compile(r"^\s+dev (?P<dev>\S+)")
_ATTR_RE = re.compile(r"^\s+(?P<key>[A-Za-z][\w.]*):\s?(?P<value>.*)$")


def parse_routes(text: str) -> list[BirdRoute]:
    """`birdc show route [all]` (BIRD 2.0): every path, with next hops and (with `all`) attributes."""
    routes: list[BirdRoute] = []
    cur: dict[str, Any] | None = None
    prefix: IPv4Network | None = None

    def flush() -> None:
        if cur is not None:
            routes.append(BirdRoute(**cur))

    for line in text.splitlines():
        if not line.strip() or line.startswith("BIRD ") or line.startswith("Table "):
            continue
        m = _ROUTE_RE.match(line)
        if m:
            flush()
            if m.group("prefix"):
                prefix = IPv4Network(m.group("prefix"))
            if prefix is None:
                cur = None
                continue
            cur = {"prefix": prefix, "kind": m.group("kind"), "protocol": m.group("proto"), "since": m.group("since"),
                   "primary": m.group("primary") == "*", "sync_error": m.group("primary") == "!",
                   "preference": int(m.group("pref")), "via": (),
                   "dev": None, "attrs": (), "source": m.group("src")}
            continue
        if cur is None:
            continue
        if (v := _VIA_RE.match(line)):
            cur["via"] = (*cur["via"], (v.group("gw"), v.group("dev")))
        elif (d := _DEV_RE.match(line)):
            cur["dev"] = d.group("dev")
        elif (a := _ATTR_RE.match(line)):
            cur["attrs"] = (*cur["attrs"], (a.group("key"), a.group("value").strip()))
    flush()
    return routes


def bgp_attrs(route: BirdRoute) -> dict[str, Any]:
    """A BGP route's attributes in the shape of meshsim's /rib entries."""
    as_path = [int(x) for x in (route.attr("BGP.as_path") or "").split() if x.isdigit()]
    cl = (route.attr("BGP.cluster_list") or "").split()
    lp = route.attr("BGP.local_pref")
    med = route.attr("BGP.med")
    return {"next_hop": route.attr("BGP.next_hop") or (route.via[0][0] if route.via else None),
            "local_pref": int(lp) if lp and lp.isdigit() else None, "as_path": as_path,
            "origin": (route.attr("BGP.origin") or "").lower() or None, "med": int(med) if med and med.isdigit() else None,
            "originator_id": route.attr("BGP.originator_id"), "cluster_list": cl, "communities": communities(route)}


_COMMUNITY_RE = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


def communities(route: BirdRoute) -> list[str]:
    """`BGP.community: (64512,100) (65000,7)` and `BGP.large_community: (64512, 300, 1)` as "a:b" / "a:b:c",
    standard before large, each sorted numerically (meshsim.bgp.filters.community_key)."""
    out = []
    for key in ("BGP.community", "BGP.large_community"):
        for m in _COMMUNITY_RE.finditer(route.attr(key) or ""):
            out.append(":".join(g for g in m.groups() if g is not None))
    return sorted(set(out), key=lambda c: (c.count(":"), *(int(p) for p in c.split(":"))))


def split_reply(raw_lines: Iterable[str]) -> tuple[str, int | None]:
    """BIRD's control-socket reply (`DDDD-text`, ` text`, final `DDDD text`) as birdc prints it, and the last
    reply code (8xxx/9xxx are errors)."""
    out: list[str] = []
    code: int | None = None
    for line in raw_lines:
        if len(line) >= 5 and line[:4].isdigit() and line[4] in "- ":
            code = int(line[:4])
            text = line[5:]
            if code == 0 and not text:
                continue
            out.append(text)
        elif line.startswith(" "):
            out.append(line[1:])
        else:
            out.append(line)
    return "\n".join(out) + ("\n" if out else ""), code


__all__ = ["ProtocolRow", "ProtocolDetail", "BirdRoute", "parse_protocols", "parse_protocols_all", "parse_routes",
           "bgp_attrs", "communities", "split_reply"]
