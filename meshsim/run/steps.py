"""Playing a timeline against a running cluster and measuring each event.

Owns `run_step(harness, step)`: perform one event (through the Harness, which keeps the model and the
processes in step), wait for the new expected tables, and measure: convergence time (from the event to
the last running node's table equal to its new expected table), per-node times, routes changed,
UPDATEs and withdrawals, sessions established / lost / flapped, CPU seconds and peak RSS per node, and
blackouts (a route a node should have kept through the event that it lost for a while).
An event that does not converge within its timeout is reported with which nodes differ and how.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from meshsim.errors import MeshsimError
from meshsim.report.metrics import spread
from meshsim.routes.routetable import RouteTable
from meshsim.model.timeline import Step
from meshsim.run.harness import Harness

DEFAULT_TIMEOUT = 60.0


def default_timeout(harness: Harness, step: Step) -> float:
    hold = harness.cluster.scenario.spec.timers.hold_time
    if step.action == "kill-node" and step.mode == "crash":
        return hold * 1.5 + 30
    return DEFAULT_TIMEOUT


def _usage(snap: dict[str, Any]) -> tuple[int | None, float, int]:
    u = snap["counters"]["usage"]
    return u["node"]["pid"], u["node"]["cpu_seconds"] + u["exabgp"]["cpu_seconds"], \
        u["node"]["rss_bytes"] + u["exabgp"]["rss_bytes"]


def _delta(before: dict[str, Any] | None, after: dict[str, Any], path: tuple[str, ...]) -> float:
    def get(snap: dict[str, Any]) -> float:
        cur: Any = snap
        for p in path:
            cur = cur[p]
        return cur

    if before is None or _usage(before)[0] != _usage(after)[0]:
        return get(after)  # a new process: its counters started from zero
    return get(after) - get(before)


def blackouts(old: dict[str, RouteTable], new: dict[str, RouteTable], logs: dict[str, list[list[Any]]],
              end: float) -> list[dict[str, Any]]:
    """Routes present in a node's expected table before and after the event that the node removed and
    re-added (or has not re-added by `end`). A replacement in the same programming pass is not a blackout."""
    out = []
    for node, entries in logs.items():
        if node not in old or node not in new:
            continue
        keep = {str(r.dst) for r in old[node].routes} & {str(r.dst) for r in new[node].routes}
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


async def run_step(h: Harness, step: Step, run_started: float, progress=None) -> dict[str, Any]:
    running_before = h.running()
    before = {n: h.observer.snapshots.get(n) for n in running_before}
    old_expected = h.expected()
    h.observer.reset_peaks()
    t = time.time()
    result: dict[str, Any] = {"index": step.index, "action": step.action, "event": step.describe(),
                              "label": step.label, "at_s": round(t - run_started, 3)}
    try:
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
                await h.kill_node(step.node, mode=step.mode)
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
    except MeshsimError as exc:
        result["error"] = str(exc)
        result["converged"] = False
        return result
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
    after = {n: h.observer.snapshots[n] for n in running if n in h.observer.snapshots}
    logs: dict[str, list[list[Any]]] = {}
    for n in running:
        if n in old_expected:
            try:
                logs[n] = (await h.fabric.get(n, f"/routelog?since={t}", timeout=5))["entries"]
            except Exception:
                pass
    sessions_before = {(n, s["name"]): s["state"] for n, snap in before.items() if snap
                       for s in snap["status"]["sessions"]}
    sessions_after = {(n, s["name"]): s["state"] for n, snap in after.items() for s in snap["status"]["sessions"]}
    established = sum(1 for k, v in sessions_after.items() if v == "up" and sessions_before.get(k) != "up")
    lost = sum(1 for k, v in sessions_before.items() if v == "up" and sessions_after.get(k) != "up")
    counters = {k: 0.0 for k in ("updates_sent", "updates_received", "withdrawals_sent", "withdrawals_received",
                                 "flaps")}
    cpu: dict[str, float] = {}
    routes_changed = 0
    for n, snap in after.items():
        b = before.get(n)
        for k in counters:
            counters[k] += _delta(b, snap, ("counters", "totals", k))
        routes_changed += int(_delta(b, snap, ("routes", "changes")))
        cpu[n] = round(_usage(snap)[1] - (_usage(b)[1] if b and _usage(b)[0] == _usage(snap)[0] else 0.0), 3)
    peaks = {n: v for n, v in h.observer.peaks.items() if n in after}
    result.update({
        "converged": conv.converged,
        "timed_out": not conv.converged,
        "timeout_s": timeout,
        "convergence_s": None if conv.time is None else round(conv.time, 3),
        "per_node_s": spread(list(conv.per_node.values())),
        "per_node": {n: round(v, 3) for n, v in conv.per_node.items()},
        "routes_changed": routes_changed,
        **{k: int(v) for k, v in counters.items()},
        "sessions_established": established, "sessions_lost": lost,
        "sessions_up": conv.sessions_up, "sessions_expected": conv.sessions_expected,
        "cpu_seconds": cpu, "peak_rss_bytes": peaks,
        "blackouts": blackouts(old_expected, new_expected, logs, end),
        "not_converged": {n: d.to_json() for n, d in conv.diffs.items() if not d.equal},
    })
    return result
