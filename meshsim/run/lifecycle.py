"""`meshsim up`, `meshsim down`: a run that lives in the background, like containerlab's deploy and destroy.

Owns `up(args)`: check the scenario in the foreground (one clear error, nothing started), reserve the run's
name in its state record (meshsim/run/records.py), start a detached runner (`meshsim run --keep-running`
in a session of its own, its output in `<name>.log` beside the record) and wait on a pipe until the runner
says the run converged (its summary) or failed. Ctrl-C (or SIGTERM) while waiting brings the run down
before `up` exits. A run that does not converge within `--timeout` stays up for inspection, exit 1.
Owns `down(args)` and `stop(record)`: SIGTERM to the runner (graceful: every node stops with a Cease to its
peers, namespaces go), waited for; then whatever a runner that died without cleaning up left behind (worker
processes, nodes still answering with this run's id, namespaces, its temp dir) is removed, and the record.
`meshsim inspect` lives in meshsim/run/inspect.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from meshsim.errors import RunError
from meshsim.run import records
from meshsim.run.records import ProcessRef, RecordError, RunRecord

STOP_TIMEOUT = 60.0  # seconds a runner gets to stop its nodes before it is killed
LOG_TAIL = 30  # lines of a failed runner's log shown by `up`


# -- up ---------------------------------------------------------------------------------------------------

def _check(args: Any) -> tuple[Any, str]:
    """Everything `up` can find wrong before starting anything: the scenario, its isolation, the run name, and
    another live run holding the same node addresses."""
    from meshsim.agent.config import loopback_map
    from meshsim.cli import print_warnings
    from meshsim.fabric.local import DEFAULT_HTTP_PORT
    from meshsim.fabric.netns import check_isolation
    from meshsim.model.cluster import Cluster
    from meshsim.model.resources import load_scenario
    from meshsim.model.timeline import parse_timeline

    scenario = load_scenario(args.files)
    print_warnings(scenario)
    cluster = Cluster.build(scenario)
    parse_timeline(scenario)
    check_isolation(cluster, args.isolation)
    if args.isolation == "netns" and os.geteuid() != 0:
        raise RunError("--isolation netns needs root (it creates network namespaces, bridges and veths)")
    if args.dataplane == "kernel" and args.isolation != "netns":
        raise RunError("--dataplane kernel needs --isolation netns (each node programs its own namespace's table)")
    name = records.check_name(args.name) if args.name else records.default_name(cluster.scenario.name)
    mine = {f"{a}:{DEFAULT_HTTP_PORT}": n for n, a in loopback_map(cluster).items()}
    for other in records.all_records():
        if not other.alive():
            continue
        taken = sorted(set(mine) & {e.http for e in other.nodes.values()})
        if taken:
            more = f" (and {len(taken) - 1} more of its addresses)" if len(taken) > 1 else ""
            raise RunError(f"run {other.name} (id {other.run_id}) already holds {taken[0]}, where this scenario's "
                           f"{mine[taken[0]]} would answer{more}: `meshsim down {other.name}` stops it, or give this "
                           "scenario node addresses of its own")
    return cluster, name


def _runner_argv(args: Any, name: str, notify_fd: int) -> list[str]:
    argv = [sys.executable, "-m", "meshsim", "run", *(str(Path(f).resolve()) for f in args.files), "--keep-running",
            "--name", name, "--notify-fd", str(notify_fd), "--timeout", str(args.timeout),
            "--isolation", args.isolation, "--dataplane", args.dataplane]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    if args.port:
        argv += ["--port", str(args.port)]
    if args.process_per_node:
        argv.append("--process-per-node")
    if getattr(args, "log_level", None):
        argv += ["--log-level", args.log_level]
    return argv


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def up(args: Any) -> int:
    cluster, name = _check(args)
    rec = RunRecord(name=name, run_id="", token="", mode="netns" if args.isolation == "netns" else "local",
                    state="starting", scenario=cluster.scenario.name, files=records.files_key(args.files),
                    started_at=time.time(), runner=ProcessRef.of(os.getpid()))
    records.reserve(rec, explicit=args.name is not None)
    rec.log = str(records.log_path(rec.name))
    records.write(rec)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    proc: subprocess.Popen | None = None
    try:
        read_end, write_end = os.pipe()
        log_fd = os.open(rec.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            proc = subprocess.Popen(_runner_argv(args, rec.name, write_end), stdin=subprocess.DEVNULL,
                                    stdout=log_fd, stderr=log_fd, pass_fds=(write_end,), start_new_session=True)
        finally:
            os.close(write_end)
            os.close(log_fd)
        print(f"meshsim: starting run {rec.name}: {len(cluster.scenario.nodes)} nodes ({rec.mode}), runner pid "
              f"{proc.pid}; waiting until they converge (at most {args.timeout:g} s; log {rec.log})",
              file=sys.stderr)
        with os.fdopen(read_end, "rb") as pipe:
            message = _wait_ready(pipe)
        if message is None:
            return _runner_failed(proc, rec)
        sys.stdout.write(message["summary"])
        print(message["hints"])
        if not message["converged"]:
            print(f"meshsim: run {rec.name} did NOT converge within {args.timeout:g} s; it is left up for "
                  f"inspection (`meshsim inspect {rec.name}`; `meshsim down {rec.name}` stops it)", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        return _interrupted(proc, rec)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_ready(pipe: Any) -> dict[str, Any] | None:
    """The runner's ready message, or None when it exited without one."""
    for line in pipe:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("event") == "ready":
            return msg
    return None


def _runner_failed(proc: subprocess.Popen, rec: RunRecord) -> int:
    rc = proc.wait()
    log = Path(rec.log or "")
    text = log.read_text(errors="replace") if log.is_file() else ""
    lines = text.rstrip("\n").splitlines()
    if len(lines) > LOG_TAIL:
        lines = [f"... ({len(lines) - LOG_TAIL} earlier lines)"] + lines[-LOG_TAIL:]
    for line in lines:
        print(line, file=sys.stderr)
    print(f"meshsim: run {rec.name} did not come up (its runner exited with code {rc}); nothing is left running",
          file=sys.stderr)
    _sweep_record(rec.name)
    return rc if rc in (1, 2, 3) else 2


def _interrupted(proc: subprocess.Popen | None, rec: RunRecord) -> int:
    """Ctrl-C (or SIGTERM) while `up` waits: bring the run down before exiting; a second Ctrl-C kills it."""
    try:
        if proc is not None and proc.poll() is None:
            print(f"\nmeshsim: interrupted; stopping run {rec.name} ...", file=sys.stderr)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                proc.kill()
                proc.wait()
    except KeyboardInterrupt:
        if proc is not None:
            proc.kill()
            proc.wait()
    _sweep_record(rec.name)
    print(f"meshsim: interrupted; run {rec.name} is down, nothing is left running", file=sys.stderr)
    return 130


def _sweep_record(name: str) -> None:
    """After `up`'s runner is gone: whatever its record still names is removed, then the record and the log."""
    try:
        rec = records.read(name)
    except Exception:  # noqa: BLE001 - the runner removed it (the normal case), or it is unreadable
        records.remove(name)
        records.log_path(name).unlink(missing_ok=True)
        return
    if rec.runner is not None and rec.runner.pid != os.getpid() and rec.alive():
        return  # not ours any more (cannot happen while the name was reserved), leave it
    sweep(rec)
    records.remove(name)
    records.log_path(name).unlink(missing_ok=True)


# -- down -------------------------------------------------------------------------------------------------

def _targets(args: Any) -> list[str]:
    recs = records.all_records()
    names = [r.name for r in recs] + records.broken_records()
    if args.all:
        return names
    if args.run is not None:
        records.check_name(args.run)
        if args.run not in names:
            from meshsim.errors import NotFoundError

            raise NotFoundError("run", args.run, tuple(names))
        return [args.run]
    if not names:
        raise RunError("no emulation is up (`meshsim inspect` lists them)")
    if len(names) > 1:
        marked = [f"{r.name}{'' if r.alive() else ' (stale)'}" for r in recs] + records.broken_records()
        raise RunError(f"{len(names)} runs are recorded ({', '.join(marked)}); name one: `meshsim down RUN` (or --all)")
    return names


def down(args: Any) -> int:
    names = _targets(args)
    failed = 0
    for name in names:
        try:
            rec = records.read(name)
        except RecordError:
            records.remove(name)
            print(f"removed the unreadable record of run {name}")
            continue
        try:
            print(stop(rec, timeout=args.timeout))
        except (OSError, RunError) as exc:
            failed += 1
            print(f"meshsim: error: run {name}: {exc}", file=sys.stderr)
    return 0 if not failed else 2


def stop(rec: RunRecord, *, timeout: float = STOP_TIMEOUT) -> str:
    """Stop a run and remove its record; says what was done."""
    graceful = rec.runner is not None and rec.alive() and rec.runner.pid != os.getpid()
    forced = False
    if graceful:
        assert rec.runner is not None
        os.kill(rec.runner.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while rec.runner.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if rec.runner.alive():
            forced = True
            os.kill(rec.runner.pid, signal.SIGKILL)  # its workers die with it (PR_SET_PDEATHSIG)
            while rec.runner.alive() and time.monotonic() < deadline + 10:
                time.sleep(0.1)
    left = sweep(rec, shutdown_nodes=not graceful or forced or rec.runner is None)
    records.remove(rec.name)
    if rec.log:
        Path(rec.log).unlink(missing_ok=True)
    if rec.runner is None:  # compose: the nodes were asked to shut down; their containers are compose's
        return (f"run {rec.name} (id {rec.run_id or '-'}, {rec.mode}): {left.pop('nodes still answering')} of "
                f"{len(rec.nodes)} nodes shut down (POST /shutdown); record removed"
                + ("; `docker compose down` removes the containers" if rec.mode == "compose" else ""))
    if graceful and not forced:
        text = f"run {rec.name} (id {rec.run_id}) stopped: {len(rec.nodes)} nodes ({rec.mode}), every node stopped " \
               "gracefully"
    elif forced:
        text = f"run {rec.name} (id {rec.run_id}): its runner did not stop within {timeout:.0f} s and was killed"
    else:
        text = f"run {rec.name} (id {rec.run_id or '-'}) was stale (its runner is gone): record removed"
    done = [f"{count} {kind}" for kind, count in left.items() if count]
    return text + (f"; cleaned up {', '.join(done)}" if done else "")


def sweep(rec: RunRecord, *, shutdown_nodes: bool = True) -> dict[str, int]:
    """Remove what a run whose runner is gone left behind: its worker processes (pid and start time must
    match), nodes still answering with its run id (POST /shutdown with its token), its namespaces (and
    every process in them), its temp dir. Returns what was found, by kind."""
    out = {"worker processes": 0, "nodes still answering": 0, "namespaces": 0, "temp dirs": 0}
    for w in rec.workers:
        if w.alive():
            try:
                os.killpg(w.pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            except PermissionError:
                os.kill(w.pid, signal.SIGKILL)
            out["worker processes"] += 1
    if shutdown_nodes and rec.run_id and rec.nodes:
        out["nodes still answering"] = asyncio.run(_shutdown_nodes(rec))
    if rec.namespaces and shutil.which("ip") and os.geteuid() == 0:
        out["namespaces"] = _remove_namespaces(rec.namespaces)
    if rec.workdir and (rec.runner is None or not rec.runner.alive()):
        wd = Path(rec.workdir)
        if wd.is_dir() and wd.name.startswith("meshsim-run-") and wd.parent == Path(tempfile.gettempdir()):
            shutil.rmtree(wd, ignore_errors=True)
            out["temp dirs"] += 1
    return out


async def _shutdown_nodes(rec: RunRecord) -> int:
    from meshsim.agent.http import request

    async def one(name: str) -> bool:
        host, port = rec.nodes[name].http_host_port
        try:
            status, payload = await request(host, port, "GET", "/status", timeout=3)
            if status != 200 or not isinstance(payload, dict) or payload.get("run_id") != rec.run_id:
                return False  # nobody, or another run's node: never stop it
            status, _ = await request(host, port, "POST", "/shutdown", {"run_id": rec.run_id}, token=rec.token,
                                      timeout=5)
            return status == 200
        except (OSError, asyncio.TimeoutError, ConnectionError, ValueError):
            return False

    return sum(await asyncio.gather(*(one(n) for n in rec.nodes)))


def _remove_namespaces(names: list[str]) -> int:
    from meshsim.host.iproute import ip

    existing = {line.split()[0] for line in ip("netns", "list", check=False).splitlines() if line.strip()}
    gone = 0
    for ns in names:
        if ns not in existing:
            continue
        for pid in ip("netns", "pids", ns, check=False).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ValueError, ProcessLookupError, PermissionError):
                pass
        ip("netns", "del", ns, check=False)
        gone += 1
    return gone
