"""`birdc show protocols|route|status` as a Calico node prints it, from a `BirdState` (meshsim.report.birdtable).

Two formats, byte for byte (tests/unit/test_birdc_golden.py checks them against real daemons):
- `bird1`: Calico's BIRD (projectcalico/bird, BIRD 1.6.8 plus patches that change no `show` output; its banner
  says `BIRD v0.3.3+birdv1.6.8 ready.`): nest/proto.c proto_cmd_show, proto/bgp/bgp.c bgp_show_proto_info,
  nest/rt-table.c rt_show_rte, nest/rt-attr.c rta_show, nest/cmds.c cmd_show_status;
- `bird2`: BIRD 2.0.12 (Debian's bird2, what meshsim's `implementation: bird` nodes run): channels, the
  capability lists, `Table master4:`, millisecond times.
Commands (`parse_command`): `protocols [all] [NAME]`, `route [all|primary] [for ADDRESS|PREFIX] [protocol NAME]`
(or a bare PREFIX), `status`; a leading `show` is allowed. Pure: the caller passes the clock (`Clock`).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network
from typing import Any, Callable, Sequence

from meshsim.errors import MeshsimError
from meshsim.report.birdtable import BirdState, Protocol, Rte, Stats, network_order, path_order

FORMATS = ("bird1", "bird2")
DEFAULT_VERSION = {"bird1": "v0.3.3+birdv1.6.8", "bird2": "2.0.12"}
_RECENT = 20 * 3600  # BIRD's default time formats: the time of day within 20 hours, else the date
_ORIGINS = {"igp": "IGP", "egp": "EGP", "incomplete": "Incomplete"}


class BirdcError(MeshsimError):
    """A `show` command meshsim does not know (the text says which forms it knows)."""


@dataclass(frozen=True)
class Clock:
    now: float
    localtime: Callable[[float], Any]  # time.localtime, or time.gmtime in tests

    def _parts(self, ts: float) -> tuple[str, str, int]:
        t = self.localtime(ts)
        return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}",
                int(round(ts * 1000)) % 1000)

    def short(self, ts: float, dialect: str) -> str:
        """tf_route / tf_proto: "%T" (BIRD 2 "%T.%3f") within 20 hours, else "%F"."""
        date, hms, ms = self._parts(ts)
        if ts <= self.now - _RECENT:
            return date
        return hms if dialect == "bird1" else f"{hms}.{ms:03d}"

    def long(self, ts: float, dialect: str) -> str:
        """tf_base: "%F %T" (BIRD 2 "%F %T.%3f")."""
        date, hms, ms = self._parts(ts)
        return f"{date} {hms}" if dialect == "bird1" else f"{date} {hms}.{ms:03d}"


@dataclass(frozen=True)
class Command:
    what: str  # protocols | route | status
    all: bool = False
    name: str | None = None  # protocols NAME
    primary: bool = False
    for_address: bool = False  # `for X`: the longest match; a bare prefix: that network only
    prefix: IPv4Network | None = None
    protocol: str | None = None  # route protocol NAME


USAGE = ("protocols [all] [NAME] | route [all] [primary] [for ADDRESS|PREFIX] [protocol NAME] | route PREFIX | "
         "status")


def parse_command(words: Sequence[str]) -> Command:
    w = [x for x in words]
    if w and w[0] == "show":
        w = w[1:]
    if not w:
        raise BirdcError(f"no command; expected one of: {USAGE}")
    what, rest = w[0], w[1:]
    if what in ("protocols", "protocol"):
        all_ = "all" in rest
        names = [x for x in rest if x != "all"]
        if len(names) > 1:
            raise BirdcError(f"`show protocols` takes one protocol name, got {' '.join(names)}; expected {USAGE}")
        return Command("protocols", all=all_, name=names[0] if names else None)
    if what == "status":
        if rest:
            raise BirdcError(f"`show status` takes no arguments, got {' '.join(rest)}")
        return Command("status")
    if what == "route":
        cmd: dict[str, Any] = {}
        i = 0
        while i < len(rest):
            word = rest[i]
            if word in ("all", "primary"):
                cmd[word] = True
            elif word in ("for", "protocol") and i + 1 < len(rest):
                i += 1
                if word == "protocol":
                    cmd["protocol"] = rest[i]
                else:
                    cmd["for_address"], cmd["prefix"] = True, _prefix(rest[i])
            elif "prefix" not in cmd and ("." in word):
                cmd["prefix"] = _prefix(word)
            else:
                raise BirdcError(f"unknown `show route` argument {word!r}; expected {USAGE}")
            i += 1
        return Command("route", **cmd)
    raise BirdcError(f"unknown command {what!r}; expected one of: {USAGE}")


def _prefix(text: str) -> IPv4Network:
    try:
        return ip_network(text if "/" in text else f"{text}/32", strict=False)  # type: ignore[return-value]
    except ValueError:
        raise BirdcError(f"{text!r} is not an IPv4 address or prefix") from None


# ----------------------------------------------------------------------------------------------
# The commands


def render(state: BirdState, command: Command | Sequence[str], clock: Clock, *, dialect: str = "bird1",
           version: str | None = None) -> str:
    """What `birdc show ...` prints, its `BIRD <version> ready.` banner first."""
    if dialect not in FORMATS:
        raise BirdcError(f"unknown format {dialect!r}; expected one of {', '.join(FORMATS)}")
    cmd = command if isinstance(command, Command) else parse_command(command)
    version = version or DEFAULT_VERSION[dialect]
    lines = [f"BIRD {version} ready."]
    if cmd.what == "status":
        lines += _status(state, clock, dialect, version)
    elif cmd.what == "protocols":
        lines += _protocols(state, cmd, clock, dialect)
    else:
        lines += _routes(state, cmd, clock, dialect)
    return "\n".join(lines) + "\n"


def _status(state: BirdState, clock: Clock, dialect: str, version: str) -> list[str]:
    out = [f"BIRD {version}", f"Router ID is {state.facts.router_id}"]
    if dialect == "bird2":
        out.append(f"Hostname is {state.hostname}")
    out += [f"Current server time is {clock.long(clock.now, dialect)}",
            f"Last reboot on {clock.long(state.started_at, dialect)}",
            f"Last reconfiguration on {clock.long(state.started_at, dialect)}", "Daemon is up and running"]
    return out


def _protocols(state: BirdState, cmd: Command, clock: Clock, dialect: str) -> list[str]:
    protos = [p for p in state.protocols if cmd.name is None or p.name == cmd.name]
    if not protos:
        return ["No protocols match"]
    if dialect == "bird1":
        out = ["name     proto    table    state  since       info"]
    else:
        out = [f"{'Name':<10} {'Proto':<10} {'Table':<10} {'State':<6} {'Since':<12}  Info"]
    for p in protos:
        since = clock.short(p.since, dialect)
        if dialect == "bird1":
            out.append(f"{p.name:<8} {p.proto:<8} {'master':<8} {p.state:<5}  {since:<10}  {_info(p)}")
        else:
            table = "master4" if p.proto in ("Static", "Kernel") else "---"
            out.append(f"{p.name:<10} {p.proto:<10} {table:<10} {p.state:<6} {since:<12}  {_info(p)}")
        if cmd.all:
            out += _detail1(state, p, clock) if dialect == "bird1" else _detail2(state, p, clock)
            out.append("")
    return out


def _info(p: Protocol) -> str:
    """bgp_get_status(): "%-14s%s" of the BGP state and the last error; only the error when down."""
    if p.proto != "BGP":
        return ""
    if p.state == "down":
        return p.last_error
    return f"{p.bgp_state:<14}{p.last_error}"


def _stats(s: Stats, indent: str) -> list[str]:
    return [f"{indent}Routes:         {s.imported} imported, {s.exported} exported, {s.preferred} preferred",
            f"{indent}Route change stats:     received   rejected   filtered    ignored   accepted",
            f"{indent}  Import updates:     {s.import_received:10d} {s.import_rejected:10d} {s.import_filtered:10d} "
            f"{s.import_ignored:10d} {s.import_accepted:10d}",
            f"{indent}  Import withdraws:   {s.import_withdraws_received:10d} {s.import_withdraws_rejected:10d}"
            f"        --- {s.import_withdraws_ignored:10d} {s.import_withdraws_accepted:10d}",
            f"{indent}  Export updates:     {s.export_received:10d} {s.export_rejected:10d} {s.export_filtered:10d}"
            f"        --- {s.export_accepted:10d}",
            f"{indent}  Export withdraws:   {s.export_withdraws_received:10d}        ---        ---        --- "
            f"{s.export_withdraws_accepted:10d}"]


def _timers(state: BirdState, p: Protocol, clock: Clock) -> tuple[float, float]:
    """Seconds left on the hold and keepalive timers: both restart with every KEEPALIVE, one per keepalive
    interval."""
    f = state.facts
    since = p.established_at or p.since
    into = (clock.now - since) % f.keepalive_time if f.keepalive_time else 0.0
    return max(0.0, f.hold_time - into), max(0.0, f.keepalive_time - into)


def _session(state: BirdState, p: Protocol, dialect: str) -> str:
    assert p.peer is not None
    internal = p.peer.asn == state.facts.asn
    multihop = internal or p.peer.kind != "Mesh"  # iBGP is multihop by default; explicit peers say `multihop`
    words = ["internal" if internal else "external"] + (["multihop"] if multihop else []) + \
        (["route-reflector"] if p.peer.rr_client and state.facts.cluster_id else []) + ["AS4"]
    if dialect == "bird1":
        words += ["add-path-rx", "add-path-tx"]
    return " ".join(words)


def _detail1(state: BirdState, p: Protocol, clock: Clock) -> list[str]:
    out = []
    if p.proto == "BGP":
        out.append("  Description:    Connection to BGP peer")
    out += [f"  Preference:     {p.preference}", f"  Input filter:   {p.input_filter}",
            f"  Output filter:  {p.output_filter}"]
    if p.state != "down":
        out += _stats(p.stats_for("bird1") or Stats(), "  ")
    if p.proto != "BGP" or p.peer is None:
        return out
    out += [f"  BGP state:          {'Down' if p.state == 'down' else p.bgp_state}",
            f"    Neighbor address: {p.peer.address}", f"    Neighbor AS:      {p.peer.asn}"]
    if p.state == "up":
        hold, keep = _timers(state, p, clock)
        out += [f"    Neighbor ID:      {p.peer.address}",
                "    Neighbor caps:    refresh enhanced-refresh restart-able llgr-aware AS4 add-path-rx add-path-tx",
                f"    Session:          {_session(state, p, 'bird1')}",
                f"    Source address:   {state.facts.router_id}",
                f"    Hold timer:       {int(hold)}/{state.facts.hold_time}",
                f"    Keepalive timer:  {int(keep)}/{state.facts.keepalive_time}"]
    if p.last_error:
        out.append(f"    Last error:       {p.last_error}")
    return out


_CAPS = ["      Multiprotocol", "        AF announced: ipv4", "      Route refresh", "      Graceful restart",
         "        Restart time: 120", "        AF supported: ipv4", "        AF preserved:", "      4-octet AS numbers",
         "      ADD-PATH", "        RX: ipv4", "        TX: ipv4", "      Enhanced refresh",
         "      Long-lived graceful restart"]


def _channel(p: Protocol) -> list[str]:
    state = {"up": "UP", "start": "START"}.get(p.state, "DOWN")
    out = ["  Channel ipv4", f"    State:          {state}", "    Table:          master4",
           f"    Preference:     {p.preference}", f"    Input filter:   {p.input_filter}",
           f"    Output filter:  {p.output_filter}"]
    if state != "DOWN":
        out += _stats(p.stats_for("bird2") or Stats(), "    ")
    return out


def _detail2(state: BirdState, p: Protocol, clock: Clock) -> list[str]:
    if p.proto == "Device":
        return []
    if p.proto != "BGP" or p.peer is None:
        return _channel(p)
    out = ["  Description:    Connection to BGP peer",
           f"  BGP state:          {'Down' if p.state == 'down' else p.bgp_state}",
           f"    Neighbor address: {p.peer.address}", f"    Neighbor AS:      {p.peer.asn}",
           f"    Local AS:         {state.facts.asn}"]
    if p.state == "up":
        hold, keep = _timers(state, p, clock)
        out += [f"    Neighbor ID:      {p.peer.address}", "    Local capabilities", *_CAPS,
                "    Neighbor capabilities", *_CAPS, f"    Session:          {_session(state, p, 'bird2')}",
                f"    Source address:   {state.facts.router_id}",
                f"    Hold timer:       {hold:.3f}/{state.facts.hold_time}",
                f"    Keepalive timer:  {keep:.3f}/{state.facts.keepalive_time}"]
    if p.last_error:
        out.append(f"    Last error:       {p.last_error}")
    out += _channel(p)
    if p.state == "up":
        out.append(f"    BGP Next hop:   {state.facts.router_id}")
    out.append("    IGP IPv4 table: master4")
    return out


# ----------------------------------------------------------------------------------------------
# Routes


def select_networks(state: BirdState, cmd: Command) -> dict[IPv4Network, list[Rte]]:
    nets = state.networks()
    if cmd.prefix is not None:
        if cmd.for_address:  # net_route(): the longest prefix that holds it
            holders = [n for n in nets if cmd.prefix.subnet_of(n)]
            nets = {max(holders, key=lambda n: n.prefixlen): nets[max(holders, key=lambda n: n.prefixlen)]} \
                if holders else {}
        else:
            nets = {cmd.prefix: nets[cmd.prefix]} if cmd.prefix in nets else {}
    return nets


def _routes(state: BirdState, cmd: Command, clock: Clock, dialect: str) -> list[str]:
    nets = select_networks(state, cmd)
    out: list[str] = []
    shown = 0
    for net in network_order(nets, dialect):
        first = True
        for r in path_order(nets[net]):
            if cmd.protocol is not None and r.protocol != cmd.protocol:
                continue
            if cmd.primary and not r.primary:
                continue
            if dialect == "bird2" and shown == 0:
                out.append("Table master4:")
            out += _rte(state, r, str(net) if first else "", clock, dialect, cmd.all)
            first = False
            shown += 1
    if cmd.prefix is not None and not shown:
        return ["Network not in table"]
    return out


def _bgp_info(r: Rte, dialect: str) -> str:
    """bgp_get_route_info(): " (PREF/IGP_METRIC) [ASNo]" (BIRD 2 shows no IGP metric 0)."""
    attrs = r.bgp or {}
    path = list(attrs.get("as_path") or [])
    origin = "ie?"[("igp", "egp", "incomplete").index(str(attrs.get("origin") or "igp"))]
    metric = "/0" if dialect == "bird1" else ""
    return f" ({r.pref}{'s' if r.stale else ''}{metric}) [{f'AS{path[-1]}' if path else ''}{origin}]"


def _rte(state: BirdState, r: Rte, ia: str, clock: Clock, dialect: str, verbose: bool) -> list[str]:
    tm = clock.short(r.since, dialect)
    src = f" from {r.neighbor}" if r.source == "BGP" and r.neighbor is not None and r.neighbor != r.gw else ""
    sync_error = dialect == "bird2" and r.source == "device" and r.prefix == state.facts.subnet
    mark = (" !" if sync_error else " *") if r.primary else ""
    info = _bgp_info(r, dialect) if r.source == "BGP" else f" ({r.pref})"
    if r.dest == "blackhole":
        via = "blackhole"
    elif r.gw is not None:
        via = f"via {r.gw} on {r.iface}"
    else:
        via = f"dev {r.iface}"
    if dialect == "bird1":
        out = [f"{ia:<18} {via} [{r.protocol} {tm}{src}]{mark}{info}"]
        if verbose:
            out.append(f"\tType: {r.source} unicast univ")
    else:
        out = [f"{ia:<20} {r.dest} [{r.protocol} {tm}{src}]{mark}{info}"]
        if r.dest == "unicast":
            out.append(f"\t{via}")
        if verbose:
            out.append(f"\tType: {r.source} univ")
    if not verbose:
        return out
    if r.source == "inherit":
        out += ["\tKernel.source: 3", "\tKernel.metric: 0"]
        if dialect == "bird2" and r.scope_link:
            out.append("\tKernel.scope: 253")
    if r.source == "BGP":
        a = r.bgp or {}
        out += [f"\tBGP.origin: {_ORIGINS.get(str(a.get('origin') or 'igp'), 'IGP')}",
                "\tBGP.as_path: " + " ".join(str(x) for x in a.get("as_path") or []),
                f"\tBGP.next_hop: {a.get('next_hop')}"]
        if a.get("med") is not None:
            out.append(f"\tBGP.med: {a['med']}")
        out.append(f"\tBGP.local_pref: {a.get('local_pref', 100)}")
        if a.get("originator_id"):
            out.append(f"\tBGP.originator_id: {a['originator_id']}")
        if a.get("cluster_list"):
            out.append("\tBGP.cluster_list: " + " ".join(str(c) for c in a["cluster_list"]))
    return out


__all__ = ["Clock", "Command", "FORMATS", "BirdcError", "parse_command", "render", "select_networks", "USAGE"]
