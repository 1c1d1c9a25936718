"""A `BirdState` from what a real BIRD 2 prints, so `meshsim show` renders an `implementation: bird` node's daemon
in either format (meshsim.report.birdc): Calico's BIRD 1.6 format from BIRD 2's own answers.

Owns `state_from_bird(facts, status, protocols_all, route_all, clock)`: `show status`, `show protocols all` and
`show route all` of BIRD 2.0 (parsed by meshsim.engines.bird.confd) become protocols with BIRD's own counters and
the table with every path. Times are read back against the caller's clock (BIRD prints the time of day for the
last 20 hours, else the date). Pure.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address
from typing import Any, Mapping

import meshsim.engines.bird.confd as confd
from meshsim.report.birdc import Clock
from meshsim.report.birdtable import BGP_PREF, BirdState, NodeFacts, Protocol, Rte, Stats

_SOURCES = {"BGP": "BGP", "inherit": "inherit", "device": "device", "static": "static"}


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def read_time(text: str, clock: Clock) -> float:
    """BIRD's "%T[.%3f]", "%F" or "%F %T[.%3f]" as a Unix time, in the clock's local time."""
    now = clock.localtime(clock.now)
    today = _days_from_civil(now.tm_year, now.tm_mon, now.tm_mday)
    sod_now = now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec + (clock.now % 1)
    m = re.fullmatch(r"(?:(\d{4})-(\d\d)-(\d\d))?\s*(?:(\d\d):(\d\d):(\d\d)(\.\d+)?)?", text.strip())
    if not m or not any(m.groups()):
        return clock.now
    day = _days_from_civil(int(m[1]), int(m[2]), int(m[3])) if m[1] else today
    sod = int(m[4]) * 3600 + int(m[5]) * 60 + int(m[6]) + float(m[7] or 0) if m[4] else 0.0
    ts = clock.now + (day - today) * 86400 + (sod - sod_now)
    if not m[1] and ts > clock.now + 60:  # printed just before midnight, read just after
        ts -= 86400
    return ts


def _stats(detail: confd.ProtocolDetail) -> Stats:
    st: Mapping[str, Mapping[str, int | None]] = detail.stats

    def get(row: str, col: str) -> int:
        return int((st.get(row) or {}).get(col) or 0)

    return Stats(imported=detail.routes.get("imported", 0), exported=detail.routes.get("exported", 0),
                 preferred=detail.routes.get("preferred", 0),
                 import_received=get("import updates", "received"), import_rejected=get("import updates", "rejected"),
                 import_filtered=get("import updates", "filtered"), import_ignored=get("import updates", "ignored"),
                 import_accepted=get("import updates", "accepted"),
                 import_withdraws_received=get("import withdraws", "received"),
                 import_withdraws_rejected=get("import withdraws", "rejected"),
                 import_withdraws_ignored=get("import withdraws", "ignored"),
                 import_withdraws_accepted=get("import withdraws", "accepted"),
                 export_received=get("export updates", "received"), export_rejected=get("export updates", "rejected"),
                 export_filtered=get("export updates", "filtered"), export_accepted=get("export updates", "accepted"),
                 export_withdraws_received=get("export withdraws", "received"),
                 export_withdraws_accepted=get("export withdraws", "accepted"))


_FILTERS = {"static1": ("ACCEPT", "REJECT", 200), "kernel1": ("ACCEPT", "calico_kernel_programming", 10),
            "device1": ("ACCEPT", "REJECT", 240), "direct1": ("ACCEPT", "REJECT", 240)}


def _protocol(facts: NodeFacts, d: confd.ProtocolDetail, clock: Clock) -> Protocol:
    row = d.row
    since = read_time(row.since, clock)
    peer = next((p for p in facts.peers if p.name == row.name), None)
    stats = _stats(d) if d.stats or d.routes else None
    if row.proto != "BGP":
        inp, out, pref = _FILTERS.get(row.name, ("ACCEPT", "REJECT", 240))
        return Protocol(row.name, row.proto, row.state, since, pref, inp, out, stats)
    state, _, error = row.info.partition(" ")
    return Protocol(row.name, "BGP", row.state, since, BGP_PREF,
                    "ACCEPT" if peer is None or peer.kind == "Mesh" else "(unnamed)", "(unnamed)", stats,
                    bgp_state=d.bgp_state or state or "Idle", last_error=d.last_error or error.strip(), peer=peer,
                    established_at=since if row.state == "up" else None)


def _rte(facts: NodeFacts, r: confd.BirdRoute, neighbors: Mapping[str, IPv4Address], clock: Clock) -> Rte:
    attrs = dict(r.attrs)
    typ = (attrs.get("Type") or "").split()
    source = _SOURCES.get(typ[0] if typ else "", "BGP" if r.protocol in neighbors else "inherit")
    gw, iface = (IPv4Address(r.via[0][0]), r.via[0][1]) if r.via else (None, r.dev)
    bgp: dict[str, Any] | None = None
    if source == "BGP":
        bgp = confd.bgp_attrs(r)
    return Rte(r.prefix, r.protocol, source, read_time(r.since, clock), dest=r.kind, gw=gw, iface=iface,
               pref=r.preference, bgp=bgp,
               neighbor=IPv4Address(r.source) if r.source else neighbors.get(r.protocol),
               primary=r.primary or r.sync_error, scope_link=attrs.get("Kernel.scope") == "253")


def state_from_bird(facts: NodeFacts, status: str, protocols_all: str, route_all: str, clock: Clock) -> BirdState:
    """The state of a real BIRD from its `show status`, `show protocols all` and `show route all`."""
    details = confd.parse_protocols_all(protocols_all)
    protocols = tuple(_protocol(facts, d, clock) for d in details.values())
    neighbors = {p.name: p.address for p in facts.peers}
    routes = tuple(_rte(facts, r, neighbors, clock) for r in confd.parse_routes(route_all))
    reboot = re.search(r"^Last reboot on (.+)$", status, re.M)
    host = re.search(r"^Hostname is (.+)$", status, re.M)
    return BirdState(facts=facts, started_at=read_time(reboot.group(1), clock) if reboot else clock.now,
                     protocols=protocols, routes=routes, hostname=host.group(1).strip() if host else facts.name)
