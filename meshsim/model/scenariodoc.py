"""Reading meshsim's own `Scenario` document (apiVersion meshsim/v1): hosts, workloads, timers and events.

Owns `scenario_spec(doc, origin)`. Node names in `hosts` and `workloads` are keys that may hold dots
(`ip-10-0-0-1.ec2.internal`), so their fields are addressed by tuple paths. Timers are bounded the way BGP bounds
them: hold time 0 or 3..65535 s (RFC 4271 §4.2: a two-octet field), keepalive at most the hold time; NaN,
infinite and negative durations are refused. Pure: no asyncio, no clock.
"""

from __future__ import annotations

from meshsim.model.calico import check_name, metadata
from meshsim.model.resources import IMPLEMENTATIONS, Event, HostFacts, Origin, ScenarioSpec, Timers
from meshsim.model.yamldoc import Doc

MAX_HOLD_TIME = 65535.0  # RFC 4271 §4.2: Hold Time is 2 octets
MAX_WORKLOADS = 1 << 16  # pods per node: a /16 pool's worth; more is a typo, not a cluster


def scenario_spec(doc: Doc, origin: Origin) -> ScenarioSpec:
    name = metadata(doc)
    doc.check_fields("", ("apiVersion", "kind", "metadata", "spec"))
    doc.check_fields("spec", ("hosts", "workloads", "timers", "events"))
    hosts: list[tuple[str, HostFacts]] = []
    raw_hosts = doc.raw("spec.hosts")
    if raw_hosts is not None and not isinstance(raw_hosts, dict):
        raise doc.error("spec.hosts", "must be a mapping of node name (or 'default') to host facts", got=raw_hosts)
    for host, facts in (raw_hosts or {}).items():
        base = ("spec", "hosts", host)
        if host != "default":
            check_name(doc, base, host)
        doc.check_fields(base, ("interface", "gateway", "implementation"))
        gw_text = doc.raw((*base, "gateway"))
        gateway = None if gw_text in (None, "first") else doc.address((*base, "gateway"))
        interface = doc.string((*base, "interface"), "eth0") or "eth0"
        if isinstance(facts, dict) and "interface" in facts and (
                not str(facts["interface"]).strip() or len(interface) > 15 or any(c.isspace() or c == "/"
                                                                                  for c in interface)):
            raise doc.error((*base, "interface"), "is not an interface name",
                            expected="an interface name like eth0 (1-15 characters, no spaces or '/')",
                            got=facts["interface"])
        hosts.append((str(host), HostFacts(
            interface=interface, gateway=gateway,
            implementation=doc.choice((*base, "implementation"), IMPLEMENTATIONS, "meshsim"),
        )))
    workloads: list[tuple[str, int]] = []
    raw_w = doc.raw("spec.workloads")
    if raw_w is not None and not isinstance(raw_w, dict):
        raise doc.error("spec.workloads", "must be a mapping of node name to a pod count", got=raw_w)
    for node_name in raw_w or {}:
        check_name(doc, ("spec", "workloads", node_name), node_name)
        count = doc.integer(("spec", "workloads", node_name), 0, 0, MAX_WORKLOADS)
        workloads.append((str(node_name), count or 0))
    doc.check_fields("spec.timers", ("holdTime", "keepaliveTime", "restartWait"))
    wait = doc.duration("spec.timers.restartWait", None, maximum=MAX_HOLD_TIME)
    hold = doc.duration("spec.timers.holdTime", None, maximum=MAX_HOLD_TIME)
    keep = doc.duration("spec.timers.keepaliveTime", None, maximum=MAX_HOLD_TIME)
    if hold is None:
        hold = 240.0
    if hold != 0 and hold < 3:
        raise doc.error("spec.timers.holdTime", "is too short", expected="0 or at least 3s (RFC 4271 §4.2)",
                        got=doc.raw("spec.timers.holdTime"))
    if keep is None:
        keep = hold / 3
    if keep > hold:
        raise doc.error("spec.timers.keepaliveTime", "must not exceed holdTime", expected=f"<= {hold:g}s",
                        got=doc.raw("spec.timers.keepaliveTime"))
    events_raw = doc.raw("spec.events")
    if events_raw is not None and not isinstance(events_raw, list):
        raise doc.error("spec.events", "must be a list of events", expected="a list like [{action: sleep, "
                        "duration: 5s}]", got=events_raw)
    events: list[Event] = []
    for i, ev in enumerate(events_raw or []):
        if not isinstance(ev, dict) or not isinstance(ev.get("action"), str):
            raise doc.error(f"spec.events.{i}", "each event needs an action", expected="a mapping with 'action'",
                            got=ev)
        events.append(Event(index=i, action=ev["action"], fields=tuple(ev.items()),
                            line=doc.line_of(("spec", "events", i))))
    return ScenarioSpec(name=name, hosts=tuple(hosts), workloads=tuple(workloads),
                        timers=Timers(hold_time=hold, keepalive_time=keep, restart_wait=240.0 if wait is None else wait),
                        events=tuple(events), origin=origin)


__all__ = ["scenario_spec", "MAX_HOLD_TIME"]
