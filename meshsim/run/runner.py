"""`meshsim run` (and the compose controller): a scenario's cold start and timeline, measured and reported.

Owns `run_scenario` (build the cluster model, start its nodes on a fabric, wait until every node's actual
table equals its expected table, play the timeline, measure), `RunResult` and the one `main()` every run
command uses. `--out` is checked before anything starts (a read-only place or a file is an error that starts
nothing). Cleanup order, whatever happens (failure, Ctrl-C, SIGTERM, a second Ctrl-C): what was measured is
taken from the nodes (a second Ctrl-C cuts this short), report.json is written, every process is stopped
(`close()`, shielded: a second Ctrl-C kills at once instead of cancelling the cleanup), then the tables,
status, logs and report.md are written; an error writing any of them is reported (exit 2) and leaks nothing.

About 500 lines because that cleanup order spans the run and the writing of its outputs, and is easiest to check
in one place; the output writers (`write_outputs` and its helpers) are the part to move out next.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshsim.errors import MeshsimError, RunError
from meshsim.fabric.base import Fabric
from meshsim.logs import get_logger
from meshsim.model.cluster import Cluster
from meshsim.model.names import file_stem
from meshsim.model.resources import load_scenario
from meshsim.model.timeline import parse_timeline
from meshsim.oracle.expected import expected_tables
from meshsim.report.markdown import markdown, plots
from meshsim.report.metrics import Convergence, convergence, expected_digests, spread, totals
from meshsim.run.harness import Harness
from meshsim.run.progress import cold_progress
from meshsim.run.steps import run_timeline

SCHEMA = "meshsim.report/v2"
FabricFactory = Callable[[Cluster], Fabric]
Keeper = Callable[[Harness, "RunResult"], Awaitable[None]]
"""What keeps a converged run up instead of `--keep-running`'s own loop (meshsim.run.lifecycle: `meshsim up`'s
runner, which writes the run's state record and tells `up` the run is ready)."""


@dataclass
class RunResult:
    scenario: str
    files: list[str]
    started_at: float
    nodes: list[str]
    converged: bool = False
    cold: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    interrupted: bool = False
    mode: str = "local"
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    expected: dict[str, str] = field(default_factory=dict)  # node -> expected table digest
    tables: dict[str, str] = field(default_factory=dict)  # node -> its final `ip route` text
    status: dict[str, str] = field(default_factory=dict)  # node -> its final `calicoctl node status` text
    processes: dict[str, Any] = field(default_factory=dict)  # the fabric's processes, how measured
    extra: dict[str, Any] = field(default_factory=dict)  # what the fabric adds (netns: external_peers)

    def to_json(self) -> dict[str, Any]:
        per_node = {}
        for name in self.nodes:
            snap = self.snapshots.get(name)
            if not snap:
                per_node[name] = {"answered": False}
                continue
            usage = snap["counters"]["usage"]
            per_node[name] = {
                "answered": True,
                "converged": snap["routes"]["digest"] == self.expected.get(name),
                "routes": snap["routes"]["count"],
                "sessions": {proto: {"state": s[0], "stale_routes": s[2], "flaps": s[3]}
                             for proto, s in snap["sessions"].items()},
                "counters": snap["counters"]["totals"],
                "cpu_seconds": usage["cpu_seconds"], "rss_bytes": usage["rss_bytes"], "engine": usage["engine"],
            }
        return {"schema": SCHEMA, "scenario": self.scenario, "files": self.files, "mode": self.mode,
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
                "converged": self.converged, "interrupted": self.interrupted, "error": self.error,
                "cold_start": self.cold, "events": self.events, "totals": totals(self.snapshots),
                "processes": self.processes, "nodes": per_node, **self.extra}


def cold_figures(conv: Convergence, snapshots: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "converged": conv.converged,
        "time_to_established_s": None if conv.sessions_time is None else round(conv.sessions_time, 3),
        "time_to_converged_s": None if conv.time is None else round(conv.time, 3),
        "per_node_s": spread(list(conv.per_node.values())),
        "per_node": {n: round(v, 3) for n, v in conv.per_node.items()},
        "sessions_expected": conv.sessions_expected, "sessions_established": conv.sessions_up,
        "not_converged": {n: d.to_json() for n, d in conv.diffs.items() if not d.equal},
        "nodes_differing": conv.nodes - conv.nodes_converged,
        **totals(snapshots),
    }


def prepare_out(out: Path) -> None:
    """Check `--out` before anything starts: a directory we can write to (made if missing), else a RunError."""
    try:
        if out.exists() and not out.is_dir():
            raise RunError(f"--out {out}: exists and is not a directory; nothing was started")
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".meshsim-write-check-{os.getpid()}"
        try:
            with open(probe, "wb") as f:
                f.write(b"\0" * 4096)  # a page: a full disk refuses it (an empty file needs no space)
        finally:
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise RunError(f"--out {out}: cannot write there ({exc.strerror or exc}); nothing was started") from None


def write_report_json(out: Path, result: RunResult) -> list[str]:
    """report.json alone (the measurements), as early as possible. Returns what could not be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    except OSError as exc:
        return [f"{out / 'report.json'}: {exc.strerror or exc}"]
    return []


def write_views(out: Path, result: RunResult, logs_from: Callable[[Path], None] | None = None) -> list[str]:
    """Everything but report.json: the tables, status, logs, plots and report.md. Each part is tried on its own
    (a full disk loses what does not fit, not what does); returns what could not be written."""
    failed: list[str] = []

    def attempt(what: Path, write: Callable[[], None]) -> None:
        try:
            write()
        except OSError as exc:
            failed.append(f"{what}: {exc.strerror or exc}")

    for sub, suffix, texts in (("routes", ".ip", result.tables), ("status", ".txt", result.status)):
        for name, text in texts.items():
            path = out / sub / f"{file_stem(name)}{suffix}"
            attempt(path, lambda path=path, text=text: (path.parent.mkdir(parents=True, exist_ok=True),
                                                         path.write_text(text)))
    if logs_from is not None:
        attempt(out / "logs", lambda: logs_from(out / "logs"))
    data = result.to_json()
    files: list[str] = []
    try:
        files = plots(data, out)
    except Exception as exc:  # a plotting problem (or a full disk) must not lose the measurements
        get_logger(component="report").warning("plots_failed", error=str(exc))
    attempt(out / "report.md", lambda: (out / "report.md").write_text(markdown(data, files)))
    return failed


def write_outputs(out: Path, result: RunResult, logs_from: Callable[[Path], None] | None = None) -> list[str]:
    """report.json first (the measurements), then the tables, status, logs, report.md and plots."""
    return write_report_json(out, result) + write_views(out, result, logs_from)


def summary(result: RunResult) -> str:
    c = result.cold
    lines = [f"scenario {result.scenario}: {len(result.nodes)} nodes, {c.get('sessions_expected', 0) // 2} BGP sessions; "
             f"{c.get('sessions_established', 0)}/{c.get('sessions_expected', 0)} Established as the nodes' "
             "`calicoctl node status` count them"]
    if c.get("time_to_established_s") is not None:
        lines.append(f"  all sessions Established after {c['time_to_established_s']:.2f} s")
    if c.get("time_to_converged_s") is not None:
        p = c["per_node_s"]
        per_node = (f" (per node min {p['min']:.2f} / p50 {p['p50']:.2f} / max {p['max']:.2f} s)"
                    if p.get("min") is not None else "")  # no node ran (the start failed): no spread
        lines.append(f"  converged after {c['time_to_converged_s']:.2f} s{per_node}")
    elif c.get("nodes_not_running"):
        missing = c["nodes_not_running"]
        lines.append(f"  NOT converged: {len(missing)} of {len(result.nodes)} nodes never ran "
                     f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
    elif c:
        lines.append(f"  NOT converged: {c.get('nodes_differing', 0)} nodes differ from their expected table")
        for name, d in list(c.get("not_converged", {}).items())[:5]:
            lines.append(f"    {name}: missing {len(d['missing'])} {d['missing'][:2]}, extra {len(d['extra'])} "
                         f"{d['extra'][:2]}")
    for e in result.events:
        lines.append("  " + event_line(e))
    after = result.extra.get("after_converged")
    if after:
        lines.append("  " + after_converged_line(after))
    t = totals(result.snapshots)
    lines.append(f"  routes announced {t['updates_sent']} (in {t['update_messages_sent']} UPDATE messages), "
                 f"withdrawn {t['withdrawals_sent']}; session flaps {t['flaps']}")
    workers = result.processes.get("workers") or []
    if workers:
        rss = sum(w["rss_bytes"] for w in workers)
        lines.append(f"  {len(workers)} worker processes, RSS {rss / 2**20:.0f} MiB in all "
                     f"({rss / max(1, len(result.nodes)) / 2**20:.1f} MiB per node)")
    bird = [s for s in result.snapshots.values() if s["counters"]["usage"]["engine"] == "bird"]
    if bird:
        rss = sum(s["counters"]["usage"]["rss_bytes"] for s in bird)
        lines.append(f"  {len(bird)} BIRD daemons, RSS {rss / 2**20:.0f} MiB in all")
    if result.extra.get("external_peers"):
        from meshsim.fabric.tors import summary_lines

        lines += summary_lines(result.extra)
    if result.error:
        lines.append(f"  error: {result.error}")
    if result.interrupted:
        lines.append("  interrupted: figures above are what was measured until then")
    return "\n".join(lines) + "\n"


def after_converged_line(a: dict[str, Any]) -> str:
    """What `--keep-running` saw after the run converged (the report's `after_converged`)."""
    state = "still converged" if a["converged"] else "NOT converged any more"
    kept = f"kept running {a['seconds']:.0f} s" if a.get("seconds") is not None else "kept running"
    text = (f"{kept} after converging: at the end {state}: "
            f"{a['sessions_up']}/{a['sessions_expected']} sessions Established, {a['flaps']} session flaps, "
            f"{a['running']}/{a['nodes']} nodes running")
    if a.get("changes"):
        text += "; " + "; ".join(a["changes"][:5]) + (" ..." if len(a["changes"]) > 5 else "")
    return text


def event_line(e: dict[str, Any]) -> str:
    head = f"event {e['index']} {e['event']}"
    if e.get("error"):
        return f"{head}: FAILED: {e['error']}"
    if e.get("waited") is False:
        return f"{head}: done (not waited for)"
    if not e.get("converged"):
        return f"{head}: NOT converged within {e['timeout_s']:.0f} s ({e.get('nodes_differing', 0)} nodes differ)"
    bo = e.get("blackouts") or []
    text = (f"{head}: converged in {e['convergence_s']:.2f} s, {e['routes_changed']} route changes, "
            f"{e['update_messages_received']} UPDATE messages rx"
            + (f", {len(bo)} blackouts (max {max(b['seconds'] for b in bo):.2f} s)" if bo else ""))
    stale = e.get("stale")
    if stale:
        text += (f"; stale routes kept {stale['kept_s']:.1f} s" if stale.get("kept_s") is not None
                 else "; stale routes still kept")
    return text


async def _final_views(h: Harness, result: RunResult) -> None:
    """The final tables and status of every running node, while they still run. (A node that does not answer
    within 15 s is left out of the views; its last pushed summary is still in the report.)"""
    for name in h.running():
        try:
            result.tables[name] = await h.fabric.get(name, "/routes?format=ip", timeout=15)
            result.status[name] = (await h.fabric.get(name, "/status", timeout=15))["text"]
        except (OSError, asyncio.TimeoutError, RunError, KeyError, TypeError):
            continue


async def run_scenario(files: list[str], *, out: Path | None = None, timeout: float = 120.0, progress: bool = True,
                       keep_running: bool = False, fabric_factory: FabricFactory | None = None,
                       log_level: str = "info", bgp_port: int | None = None, workers: int | None = None,
                       process_per_node: bool = False, keeper: Keeper | None = None) -> RunResult:
    """Run a scenario: cold start, then its timeline. `fabric_factory(cluster)` says where the nodes run
    (default: worker processes on this machine). Starting the processes and the nodes has no deadline (a busy
    machine makes it slow, not wrong: fabric/local.py `_wait`); the one limit on the way up is `timeout`, the
    user's `--timeout` for convergence, whose outcome is a result (NOT converged, exit 1), not a failure.
    `keeper(harness, result)`, when given, keeps the run up afterwards (in place of `keep_running`) until it
    returns or the run is cancelled."""
    log = get_logger(component="runner")
    scenario = load_scenario(files)
    cluster = Cluster.build(scenario)
    steps = parse_timeline(scenario)  # a bad timeline is rejected before anything starts
    if out is not None:
        prepare_out(out)
    if fabric_factory is None:
        from meshsim.fabric.local import WorkerFabric

        fabric: Fabric = WorkerFabric(cluster, bgp_port=bgp_port, log_level=log_level, workers=workers,
                                      process_per_node=process_per_node)
    else:
        fabric = fabric_factory(cluster)
    result = RunResult(scenario=scenario.name, files=[str(f) for f in files], started_at=time.time(),
                       nodes=[n.name for n in scenario.nodes], mode=fabric.mode)
    h = Harness(cluster, fabric)
    show, done = cold_progress() if progress else (None, lambda: None)
    result.expected = {n: e.digest for n, e in expected_digests(expected_tables(cluster)).items()}
    try:
        await h.start()
        result.started_at = h.started_at
        conv = await h.converge(timeout, progress=show)
        done()
        result.converged = conv.converged and conv.sessions_up == conv.sessions_expected
        await h.observer.refresh_until_quiet(h.running())  # the cold start's messages, not as last pushed
        result.cold = cold_figures(conv, h.observer.snapshots)
        log.info("cold_start_measured", converged=result.converged, seconds=result.cold["time_to_converged_s"])
        await run_timeline(h, steps, result, progress)
        result.converged = result.converged and all(ev.get("converged", True) for ev in result.events)
        report = getattr(h.fabric, "external_report", None)
        if report is not None:  # netns: what the ToRs learned
            result.extra = await report()
        if keeper is not None:
            await keeper(h, result)
        elif keep_running:
            await _keep_running(h, result, files)
    except asyncio.CancelledError:
        done()
        _uncancel()
        result.interrupted = True
    except MeshsimError as exc:
        done()
        result.error = str(exc)
        result.converged = False  # the run stopped part-way: what it did not play did not converge
    finally:
        await _finish(h, result, out)
    return result


def _uncancel() -> None:
    """A CancelledError (Ctrl-C, SIGTERM) was caught and handled: take it off the task's count (asyncio's rule for
    code that does not re-raise it), so the cleanup's own timeouts keep working."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        task.uncancel()


async def _finish(h: Harness, result: RunResult, out: Path | None) -> None:
    """The end of every run (module docstring): measure, report.json, close (shielded), the rest, temp files.
    Ctrl-C again during the measuring stops it; during close() it kills every process at once."""
    unwritten: list[str] = []
    try:
        try:
            await _measure_last(h, result)
        except asyncio.CancelledError:
            _uncancel()
            result.interrupted = True
        result.processes = h.fabric.describe()
        if out is not None:
            unwritten += write_report_json(out, result)
    finally:
        failed = await _close(h)
        if failed:
            result.error = f"{result.error}; {failed}" if result.error else failed
    try:
        if out is not None:
            unwritten += write_views(out, result, h.fabric.collect_logs)
    finally:
        remove = getattr(h.fabric, "remove_files", None)
        if remove is not None:
            remove()
    if unwritten:
        what = f"could not write the report: {'; '.join(unwritten[:3])}" + (" ..." if len(unwritten) > 3 else "")
        result.error = f"{result.error}; {what}" if result.error else what


async def _close(h: Harness) -> str | None:
    """Stop every process; a cancellation meanwhile (Ctrl-C again) does not abandon the cleanup, it makes it
    brutal: every process is killed at once, then the cleanup finishes. Returns what went wrong, if anything
    (the report still gets written)."""
    closing = asyncio.ensure_future(h.close(keep_files=True))
    while not closing.done():
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            if closing.done():
                break
            _uncancel()
            kill = getattr(h.fabric, "kill_all_now", None)
            if kill is not None:
                kill()
    exc = closing.exception()
    if exc is None:
        return None
    get_logger(component="runner").error("close_failed", error=repr(exc))
    kill = getattr(h.fabric, "kill_all_now", None)
    if kill is not None:
        kill()
    return f"stopping the nodes failed: {exc!r}"


async def _measure_last(h: Harness, result: RunResult) -> None:
    """The last state of every running node. What is known without asking them (their pushed summaries) is
    recorded first, so a second Ctrl-C during the questions loses only their answers."""
    cold_pending = not result.cold
    if cold_pending:
        result.cold = _cold_so_far(h, result, _convergence_now(h, result))
    result.snapshots = dict(h.observer.snapshots)
    try:
        if cold_pending:
            await h.observer.refresh(h.running())
            conv = _convergence_now(h, result)
            await h.observer.explain(conv, h.expected())
            result.cold = _cold_so_far(h, result, conv)
        result.snapshots = dict(h.observer.snapshots)
        await _final_views(h, result)
    except (MeshsimError, OSError, asyncio.TimeoutError) as exc:
        result.error = result.error or f"measuring the last state failed: {exc}"


def _convergence_now(h: Harness, result: RunResult) -> Convergence:
    return convergence(h.expected(), h.observer.snapshots, result.started_at, h.expected_sessions())


def _cold_so_far(h: Harness, result: RunResult, conv: Convergence) -> dict[str, Any]:
    """Cold-start figures of a run that ended before its cold start did: what the running nodes reached. Nodes
    that never started make it not converged (an empty or partial cluster is not a converged one)."""
    cold = cold_figures(conv, h.observer.snapshots)
    missing = [n for n in result.nodes if n not in h.running()]
    if missing:
        cold.update(converged=False, time_to_converged_s=None, time_to_established_s=None,
                    nodes_not_running=missing)
    return cold


async def _keep_running(h: Harness, result: RunResult, files: list[str]) -> None:
    """Stay up until Ctrl-C, and keep watching: what changes meanwhile is reported (issue: --keep-running
    used to report converged whatever happened after it). A node that dies ends the run with an error."""
    print("converged; nodes keep running until Ctrl-C "
          f"(try: meshsim status {' '.join(map(str, files))} --node {result.nodes[0]})", file=sys.stderr)
    watch = AfterConverged.start(h)
    try:
        while True:
            h.observer.updated.clear()
            await h.observer.updated.wait()
            if h.observer.dead:
                name, why = next(iter(sorted(h.observer.dead.items())))
                result.converged = False
                result.error = f"node {name} died while running: {why}"
                return
    finally:
        note_after_converged(h, result, watch)


@dataclass(frozen=True)
class AfterConverged:
    """How a run looked when it began to be kept up after converging (`--keep-running`, `meshsim up`): when,
    which nodes ran, their session flaps so far (per node, or only the total: meshsim/run/keeper.py's form)."""

    since: float | None
    running: frozenset[str]
    flaps: dict[str, int] | int

    @classmethod
    def start(cls, h: Harness) -> "AfterConverged":
        return cls(time.time(), frozenset(h.running()),
                   {n: s["counters"]["totals"].get("flaps", 0) for n, s in h.observer.snapshots.items()})


def note_after_converged(h: Harness, result: RunResult, seen: AfterConverged | int) -> None:
    """What changed while the run was kept up, as the report's `after_converged`: still converged or not,
    sessions, flaps since, which nodes stopped, died or differ. Not converged any more at the end makes the run
    not converged. `seen` is the run when keeping began (AfterConverged.start), or only its flap total then."""
    base = seen if isinstance(seen, AfterConverged) else AfterConverged(None, frozenset(result.nodes), seen)
    expected = h.expected()
    snaps = h.observer.snapshots
    conv = convergence(expected, snaps, result.started_at, h.expected_sessions())
    running = set(h.running())
    changes = [f"node {n} died" for n in sorted(h.observer.dead)]
    changes += [f"node {n} not running" for n in sorted(base.running - running) if n not in h.observer.dead]
    changes += [f"node {n}: BGP stopped" for n in sorted(running)
                if n in snaps and not snaps[n].get("bgp_running", True)]
    if isinstance(base.flaps, dict):
        before = base.flaps
        flapped = {n: snaps[n]["counters"]["totals"].get("flaps", 0) - before.get(n, 0) for n in sorted(running)
                   if n in snaps}
        flapped = {n: f for n, f in flapped.items() if f > 0}
        flaps = sum(flapped.values())
        if flapped:
            changes.append("sessions flapped on " + ", ".join(f"{n} ({f}x)" for n, f in list(flapped.items())[:5])
                           + (" ..." if len(flapped) > 5 else ""))
    else:
        flaps = totals(snaps)["flaps"] - base.flaps
        if flaps > 0:
            changes.append(f"sessions flapped {flaps}x")
    differ = sorted(set(expected) - conv.equal)
    if differ:
        changes.append(f"{len(differ)} nodes differ from their expected table ({', '.join(differ[:5])}"
                       + (", ...)" if len(differ) > 5 else ")"))
    ok = conv.converged and conv.sessions_up == conv.sessions_expected and base.running <= running
    result.extra["after_converged"] = {
        "converged": ok, "sessions_up": conv.sessions_up, "sessions_expected": conv.sessions_expected,
        "flaps": flaps, "running": len(running & base.running), "nodes": len(base.running), "changes": changes}
    if base.since is not None:
        result.extra["after_converged"]["seconds"] = round(time.time() - base.since, 1)
    if not ok:
        result.converged = False


def main(args: Any, fabric_factory: FabricFactory | None = None, mode_check: Callable[[Cluster], None] | None = None,
         keeper: Keeper | None = None) -> int:
    """The one entry point of every run command: `meshsim run` and the compose controller."""
    out = Path(args.out) if getattr(args, "out", None) else None

    async def go() -> RunResult:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # also when started with SIGINT ignored (`cmd &` in a script)
            loop.add_signal_handler(sig, task.cancel)
        from meshsim.cli import print_warnings  # what the load read past, on stderr

        scenario = load_scenario(args.files)
        print_warnings(scenario)
        if mode_check is not None:
            mode_check(Cluster.build(scenario))
        return await run_scenario(list(args.files), out=out, timeout=args.timeout,
                                  keep_running=getattr(args, "keep_running", False), fabric_factory=fabric_factory,
                                  log_level=getattr(args, "log_level", None) or "info",
                                  bgp_port=getattr(args, "port", None), workers=getattr(args, "workers", None),
                                  process_per_node=getattr(args, "process_per_node", False), keeper=keeper)

    try:
        result = asyncio.run(go())
    except (KeyboardInterrupt, asyncio.CancelledError):  # before the handlers are in place, or after the run
        print("meshsim: interrupted; every node process was stopped", file=sys.stderr)
        return 130
    sys.stdout.write(summary(result))
    if out is not None:
        print(f"  report: {out / 'report.json'}; final tables in {out / 'routes'}/, status in {out / 'status'}/")
    if result.error and not result.interrupted:
        raise RunError(result.error)
    if result.interrupted:
        return 130
    return 0 if result.converged else 1
