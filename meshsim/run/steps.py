"""Playing a timeline against a running cluster and measuring each event.

Owns `run_timeline` and `run_step(harness, step)`: perform one event (through the Harness, which keeps the
model and the nodes in step), wait for the new expected tables, and measure: convergence time (from the
event to the last running node's table equal to its new expected table), per-node times, routes
changed, route announcements and UPDATE messages, sessions established / lost / flapped, CPU seconds
and peak memory per node, and blackouts (a route a node should have kept through the event that it lost
for a while). An event that does not converge within its timeout is reported with which nodes differ.

`kill-node mode: sigkill` has two phases (graceful restart, RFC 4724): its peers keep its routes as
stale, so the event converges as soon as every peer holds them; the second phase, when the restart time
runs out and they go, is awaited and measured too (`stale`), unless the next event starts the node
again (then that restart refreshes them).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from meshsim.errors import MeshsimError, RunError
from meshsim.model.timeline import Step
from meshsim.report.metrics import COUNTER_KEYS, Expected, spread
from meshsim.run.harness import Harness
from meshsim.run.observer import message_counts
from meshsim.run.progress import event_progress

DEFAULT_TIMEOUT = 60.0
NOTE_RESTARTING = "the next event starts the node again, which refreshes its stale routes"
NOTE_LATER = "not awaited with the event: measured by the next wait_converged()"
MESSAGE_KEYS = ("update_messages_sent", "update_messages_received")


def default_timeout(harness: Harness, step: Step) -> float:
    hold = harness.cluster.scenario.spec.timers.hold_time
    if step.action == "kill-node" and step.mode == "crash":
        return hold * 1.5 + 30
    return DEFAULT_TIMEOUT


def _counters(snap: dict[str, Any]) -> dict[str, float]:
    return {**message_counts(snap), "cpu_seconds": float(snap["counters"]["usage"]["cpu_seconds"])}


def _delta(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, float]:
    a = _counters(after)
    if before is None or before.get("started") != after.get("started"):
        return a  # a new incarnation of the node: its counters started from zero
    b = _counters(before)
    return {k: a[k] - b[k] for k in a}


def blackouts(old: dict[str, Expected], new: dict[str, Expected], logs: dict[str, list[list[Any]]],
              end: float) -> list[dict[str, Any]]:
    """Routes present in a node's expected table before and after the event that the node removed and
    re-added (or has not re-added by `end`). A replacement in the same programming pass is not a blackout."""
    out = []
    for node, entries in logs.items():
        if node not in old or node not in new:
            continue
        keep = {str(r.dst) for r in old[node].table.routes} & {str(r.dst) for r in new[node].table.routes}
        gone: dict[str, float] = {}
        for ts, op, dst, _line in entries:
            if dst not in keep:
                continue
            if op == "del":
                gone[dst] = ts
            elif op in ("add", "chg") and dst in gone:
                start = gone.pop(dst)
                if ts > start:
                    out.append({"node": node, "route": dst, "seconds": round(ts - start, 3)})
        for dst, start in gone.items():
            out.append({"node": node, "route": dst, "seconds": round(end - start, 3), "unrecovered": True})
    return out


async def _route_logs(h: Harness, names: list[str], since: float) -> tuple[dict[str, list[list[Any]]], list[str]]:
    logs: dict[str, list[list[Any]]] = {}
    failed: list[str] = []
    for n in names:
        try:
            logs[n] = (await h.fabric.get(n, f"/routelog?since={since}", timeout=15))["entries"]
        except (OSError, asyncio.TimeoutError, RunError, KeyError, TypeError) as exc:
            failed.append(f"{n}: {exc}")
    return logs, failed


async def _perform(h: Harness, step: Step, result: dict[str, Any]) -> float | None:
    """Do what the event says; returns when a SIGKILLed node's stale routes go (None otherwise)."""
    match step.action:
        case "add-workloads":
            pods = await h.add_pods(step.node, step.count)
            result["detail"] = f"{len(pods)} pods, {len(h.cluster.affine_blocks(step.node))} blocks on {step.node}"
        case "remove-workloads":
            pods = await h.remove_pods(step.node, step.count)
            result["detail"] = f"{len(pods)} pods removed"
        case "stop-node":
            await h.stop_node(step.node)
        case "kill-node":
            return await h.kill_node(step.node, mode=step.mode)
        case "start-node":
            await h.start_node(step.node)
        case "add-node":
            await h.add_node(step.resource, step.count)
        case "disconnect":
            await h.disconnect(step.node, step.peer)
        case "apply":
            result["detail"] = await h.apply(step.resource)
        case "sleep":
            await asyncio.sleep(step.duration)
    return None


async def run_step(h: Harness, step: Step, run_started: float, progress: Any = None,
                   next_step: Step | None = None, stale_phase: bool = True) -> dict[str, Any]:
    """Perform one event and measure it (the record `report.json` holds under `events`). `stale_phase=False`:
    a SIGKILL's second phase is not awaited here (meshsim.api leaves it to `wait_converged`)."""
    running_before = h.running()
    await h.observer.refresh(running_before)  # the counters as they are before the event, not as last pushed
    before = {n: h.observer.snapshots.get(n) for n in running_before}
    old_expected = h.expected()
    h.observer.reset_peaks()
    t = time.time()
    result: dict[str, Any] = {"index": step.index, "action": step.action, "event": step.describe(),
                              "label": step.label, "at_s": round(t - run_started, 3)}
    try:
        stale_until = await _perform(h, step, result)
    except MeshsimError as exc:
        result["error"] = str(exc)
        result["converged"] = False
        return result
    t = max(t, h.acted_at)  # timed from when the nodes were told, after the harness's oracle work
    if step.action == "sleep" or not step.wait:
        result["waited"] = False
        return result
    timeout = step.timeout or default_timeout(h, step)
    if step.action == "disconnect":
        await asyncio.sleep(0.2)  # let the teardown land before judging convergence
    conv = await h.converge(timeout, since=t, progress=progress)
    end = time.time()
    new_expected = h.expected()
    running = h.running()
    await h.observer.refresh_until_quiet(running)  # the event's messages, those still in flight included
    after = {n: h.observer.snapshots[n] for n in running if n in h.observer.snapshots}
    logs, log_errors = await _route_logs(h, [n for n in running if n in old_expected], t)
    sessions_before = {(n, p): s[0] for n, snap in before.items() if snap for p, s in snap["sessions"].items()}
    sessions_after = {(n, p): s[0] for n, snap in after.items() for p, s in snap["sessions"].items()}
    established = sum(1 for k, v in sessions_after.items() if v == "up" and sessions_before.get(k) != "up")
    lost = sum(1 for k, v in sessions_before.items() if v == "up" and sessions_after.get(k) != "up")
    sums = {k: 0.0 for k in (*COUNTER_KEYS, *MESSAGE_KEYS, "routes_changed")}
    cpu: dict[str, float] = {}
    for n, snap in after.items():
        d = _delta(before.get(n), snap)
        for k in sums:
            sums[k] += d[k]
        cpu[n] = round(d["cpu_seconds"], 4)
    peaks = {n: v for n, v in h.observer.peaks.items() if n in after}
    result.update({
        "converged": conv.converged,
        "timed_out": not conv.converged,
        "timeout_s": timeout,
        "convergence_s": None if conv.time is None else round(conv.time, 3),
        "per_node_s": spread(list(conv.per_node.values())),
        "per_node": {n: round(v, 3) for n, v in conv.per_node.items()},
        **{k: int(v) for k, v in sums.items()},
        "sessions_established": established, "sessions_lost": lost,
        "sessions_up": conv.sessions_up, "sessions_expected": conv.sessions_expected,
        "cpu_seconds": cpu, "peak_rss_bytes": peaks,
        "blackouts": blackouts(old_expected, new_expected, logs, end),
        "not_converged": {n: d.to_json() for n, d in conv.diffs.items() if not d.equal},
        "nodes_differing": conv.nodes - conv.nodes_converged,
    })
    if log_errors:
        # a route log that could not be read is said, never counted as "no blackouts"
        result["blackouts_unknown"] = log_errors
    if stale_until is not None:
        restarting = next_step is not None and next_step.action == "start-node" and next_step.node == step.node
        note = NOTE_RESTARTING if restarting else None if stale_phase else NOTE_LATER
        result["stale"] = await measure_stale(h, step, t, stale_until, wait=note is None, progress=progress, note=note)
    return result


async def measure_stale(h: Harness, step: Step, killed_at: float, until: float, *, wait: bool,
                        progress: Any, note: str | None = None) -> dict[str, Any]:
    """Graceful restart after a SIGKILL: the peers kept the node's routes; when did they let them go?"""
    prefixes = {str(p) for p in h.cluster.originated(step.node)}
    out: dict[str, Any] = {"node": step.node, "restart_time_s": round(until - killed_at, 3), "prefixes": len(prefixes)}
    if not wait:
        out["kept_s"] = None
        out["note"] = note or NOTE_RESTARTING
        return out
    h.expected(now=until)  # the oracle's answer for after the flush, computed before it (see Harness)
    await h.wait_until(until)
    conv = await h.converge(60.0, since=until, progress=progress)
    logs, errors = await _route_logs(h, h.running(), killed_at)
    per_node: dict[str, float] = {}
    for node, entries in logs.items():
        gone = [ts for ts, op, dst, _ in entries if op == "del" and dst in prefixes]
        if gone:
            per_node[node] = round(max(gone) - killed_at, 3)
    out.update({"converged": conv.converged, "kept_s": max(per_node.values()) if per_node else None,
                "per_node_kept_s": per_node, "flush_convergence_s": None if conv.time is None else round(conv.time, 3)})
    if errors:
        out["unknown"] = errors
    return out


async def run_timeline(h: Harness, steps: list[Step], result: Any, progress: bool) -> None:
    """Every event in order; each one's record goes into `result.events` as soon as it is measured."""
    for i, step in enumerate(steps):
        show = event_progress(i, len(steps), step.describe()) if progress else None
        ev = await run_step(h, step, result.started_at, show, steps[i + 1] if i + 1 < len(steps) else None)
        result.events.append(ev)
        result.snapshots = dict(h.observer.snapshots)
