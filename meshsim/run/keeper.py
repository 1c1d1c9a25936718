"""The runner's side of a run state record: registering a kept-up run, keeping its record true, removing it.

Owns `Registration`, used by `meshsim run --keep-running` and by the detached runner `meshsim up` starts:
- `claim()` reserves the run's name (or adopts the reservation `up` made for this runner), before anything runs;
- `factory(inner)` wraps the fabric factory: the record gets the run id, the token, the nodes' addresses and
  the namespaces a netns run will create as soon as the fabric exists, and the worker pids as soon as they
  run, so a runner killed at any moment leaves a record `meshsim down` can clean up after;
- `keeper(harness, result)` (a runner.Keeper) marks the run up, tells `up` it is ready (its summary, over the
  pipe `up` passed as `--notify-fd`), then keeps watching: the record's `health` (sessions up/expected, which
  nodes equal their expected table, nodes that died) is rewritten when it changes, at most once a second;
- `close()` removes the record once every process is gone (only if it is still this run's record).
A record with no runner on this machine (`local_runner=False`: the compose controller, in a container, writing
into the host's runtime directory) is never written back once someone else removed it: `meshsim down` on the
host shuts the nodes down and removes the record, and the controller, which checks the record every
RECORD_CHECK_INTERVAL, ends then (as after SIGTERM), or once every node died.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from meshsim.fabric.base import Fabric
from meshsim.logs import get_logger
from meshsim.model.cluster import Cluster
from meshsim.report.metrics import convergence, totals
from meshsim.run import records
from meshsim.run.harness import Harness
from meshsim.run.records import NodeEntry, ProcessRef, RecordError, RunRecord
from meshsim.run.runner import RunResult, note_after_converged, summary

HEALTH_MIN_INTERVAL = 1.0  # seconds between two writes of the record's health
HEALTH_MAX_INTERVAL = 30.0  # ... and a write at least this often, so `inspect` can tell a live runner
RECORD_CHECK_INTERVAL = 2.0  # a runner-less keeper (compose) looks this often whether `meshsim down` removed it


def node_entries(fabric: Fabric) -> dict[str, NodeEntry]:
    """Where each node of a fabric answers, as a record lists it."""
    out = {}
    worker_of = getattr(fabric, "worker_of", {})
    for name, cfg in fabric.configs().items():
        host, port = fabric.http_address(name)
        w = worker_of.get(name)
        out[name] = NodeEntry(http=f"{host}:{port}", bgp=f"{cfg.session_address}:{cfg.bgp_port}",
                              namespace=cfg.bgp_netns or cfg.netns, worker=w.pid if w is not None else None,
                              container=getattr(fabric, "container_of", {}).get(name))
    return out


def planned_namespaces(fabric: Fabric) -> list[str]:
    """Every namespace a netns run creates, known before it creates one (fabric/topology.py names them)."""
    t = getattr(fabric, "topology", None)
    if t is None:
        return []
    names = [t.fabric, *([t.router] if t.router else []), *(tor.ns for tor in t.tors),
             *(t.node_ns(n.name) for n in fabric.cluster.scenario.nodes)]
    made = fabric.describe().get("namespaces", []) if getattr(fabric, "_set_up", False) else []
    return sorted(set(names) | set(made))


def health(h: Harness, since: float) -> dict[str, Any]:
    """The run as its runner sees it now: what `meshsim inspect` shows."""
    expected = h.expected()
    want = h.expected_sessions()
    snaps = h.observer.snapshots
    conv = convergence(expected, snaps, since, want)
    per_node_want: dict[str, list[str]] = {}
    for node, proto in want:
        per_node_want.setdefault(node, []).append(proto)
    running = set(h.running())
    states = getattr(h.fabric, "state", {})
    nodes = {}
    for name in h.fabric.configs():
        snap = snaps.get(name) if name in running else None
        protos = per_node_want.get(name, [])
        up = sum(1 for p in protos if snap is not None and (snap["sessions"].get(p) or [None])[0] == "up")
        nodes[name] = {"state": "running" if name in running else states.get(name, "not started"),
                       "sessions_up": up, "sessions_expected": len(protos),
                       "routes": snap["routes"]["count"] if snap else None,
                       "converged": name in conv.equal}
    return {"converged": conv.converged and conv.sessions_up == conv.sessions_expected,
            "sessions_up": conv.sessions_up, "sessions_expected": conv.sessions_expected,
            "nodes_converged": len(conv.equal), "nodes_expected": len(expected), "running": len(running),
            "dead": dict(h.observer.dead), "nodes": nodes}


class Registration:
    """A kept-up run's record, from its runner (see the module docstring)."""

    def __init__(self, files: list[str], scenario_name: str, *, name: str | None = None,
                 notify_fd: int | None = None, log: str | None = None, end_on_death: bool = False,
                 local_runner: bool = True, directory: Path | None = None,
                 owner: records.Owner | None = None) -> None:
        """`local_runner=False`: the runner is not a process of this machine's (a compose controller in a
        container writing into a mounted runtime directory); the record is then alive while its nodes answer.
        `directory` (default: records.runtime_dir()) and `owner`: where the record is written, for whom
        (records.mounted_dir)."""
        self.files = list(files)
        self.explicit = name is not None
        self.record = RunRecord(name=records.check_name(name) if name else records.default_name(scenario_name),
                                run_id="", token="", mode="", state="starting", scenario=scenario_name,
                                files=records.files_key(files), started_at=time.time(),
                                runner=ProcessRef.of(os.getpid()) if local_runner else None, log=log)
        self.notify_fd = notify_fd
        self.end_on_death = end_on_death
        self.directory = directory
        self.owner = owner
        self.written_id: str | None = None  # the run id the record file last held, as we wrote it
        self.brought_down = False  # someone else removed our record (`meshsim down` of a runner-less run)
        self.fabric: Fabric | None = None
        self.claimed = False
        self.ready_sent = False
        self.log = get_logger(component="record")
        self._last_health: dict[str, Any] | None = None
        self._last_write = 0.0

    # -- the record -----------------------------------------------------------------------------------
    def claim(self, adopt_run_id: str | None = None) -> str:
        """Reserve the name, or adopt the reservation `meshsim up` (our parent) made: before anything starts.
        `adopt_run_id`: a runner-less record of that run id is this run's (a compose controller run again on
        the same nodes): take it over, name and all."""
        if adopt_run_id:
            for rec in records.all_records(self.directory):
                if rec.runner is None and rec.run_id == adopt_run_id:
                    self.record.name = rec.name
                    self.claimed = True
                    self.write()
                    return rec.name
        if self.notify_fd is not None and self.explicit:
            try:
                mine = records.read(self.record.name, self.directory)
            except Exception:  # noqa: BLE001 - any problem: fall through to a fresh reservation's error
                mine = None
            if mine is not None and not mine.run_id and mine.runner is not None and mine.runner.pid == os.getppid():
                self.record.log = mine.log or self.record.log
                self.claimed = True
                self.write()
                return self.record.name
        records.reserve(self.record, explicit=self.explicit, directory=self.directory, owner=self.owner)
        self.claimed = True
        self.written_id = self.record.run_id
        return self.record.name

    def still_ours(self) -> bool:
        """The record file is there and holds the run id we last wrote into it."""
        try:
            current = records.read(self.record.name, self.directory)
        except Exception:  # noqa: BLE001 - gone, unreadable or replaced: not ours any more
            return False
        return current.run_id == self.written_id

    def write(self) -> None:
        if not self.claimed or self.brought_down:
            return
        if self.record.runner is None and self.written_id is not None:
            # check and rewrite under the directory's lock, which `meshsim down` takes to remove the record
            # (records.locked): otherwise a removal between the check and the rename would be undone
            with records.locked(self.directory or records.runtime_dir()):
                if not self.still_ours():
                    self.brought_down = True  # `meshsim down` removed it: never write it back
                    self.log.info("record_removed", run=self.record.name, by="someone else (meshsim down)")
                    return
                records.write(self.record, self.directory, self.owner)
        else:
            records.write(self.record, self.directory, self.owner)
        self.written_id = self.record.run_id
        self._last_write = time.monotonic()

    def _refresh(self) -> None:
        """Addresses, workers and namespaces as the fabric has them now."""
        f = self.fabric
        if f is None:
            return
        self.record.nodes = node_entries(f)
        workers = [w["pid"] for w in f.describe().get("workers", []) if w.get("pid") and w.get("alive", True)]
        self.record.workers = [ProcessRef.of(pid) for pid in workers]
        self.record.namespaces = planned_namespaces(f)
        self.record.workdir = str(getattr(f, "workdir", "") or "") or None

    def factory(self, inner: Callable[[Cluster], Fabric]) -> Callable[[Cluster], Fabric]:
        """Wrap a fabric factory: the record names the run's id, token, nodes and planned namespaces as soon as
        the fabric exists, and its workers as soon as they run."""

        def make(cluster: Cluster) -> Fabric:
            fabric = inner(cluster)
            self.fabric = fabric
            rec = self.record
            rec.run_id, rec.token, rec.mode = fabric.run_id, fabric.token, fabric.mode
            self._refresh()
            self.write()
            start = fabric.start

            async def start_and_record() -> None:
                try:
                    await start()
                finally:
                    self._refresh()
                    self.write()

            fabric.start = start_and_record  # type: ignore[method-assign]
            return fabric

        return make

    def close(self) -> None:
        """Remove the record (every process is gone by now), and the runner's log once `up` has read it."""
        if not self.claimed:
            return
        try:
            if not self.brought_down:
                records.remove(self.record.name, run_id=self.record.run_id or None, directory=self.directory)
            if self.record.log and self.ready_sent:
                Path(self.record.log).unlink(missing_ok=True)
        except (OSError, RecordError) as exc:
            self.log.warning("record_not_removed", run=self.record.name, error=str(exc))
        self.claimed = False

    # -- kept up ----------------------------------------------------------------------------------------
    def _write_health(self, h: Harness, result: RunResult, force: bool = False) -> None:
        """Rewrite the record when its health changed (or every HEALTH_MAX_INTERVAL, so `inspect` can tell the
        runner is alive and well)."""
        data = health(h, result.started_at)
        if not force and data == self._last_health and time.monotonic() - self._last_write < HEALTH_MAX_INTERVAL:
            return
        self._last_health = data
        self.record.health = {**data, "updated_at": time.time()}
        self._refresh()
        try:
            self.write()
        except OSError as exc:
            self.log.warning("record_not_written", run=self.record.name, error=str(exc))

    def _ready(self, h: Harness, result: RunResult) -> None:
        result.snapshots = dict(h.observer.snapshots)
        result.processes = h.fabric.describe()
        text = summary(result)
        first = next(iter(self.record.nodes), "NODE")
        name = self.record.name
        tries = (f"  try: meshsim inspect {name}; meshsim status --run {name} --node {first}; "
                 f"meshsim show {first} protocols --run {name}")
        if self.record.runner is None:  # compose: the controller's output is what `docker compose logs` shows
            print(f"{text}run {name} is up (id {self.record.run_id}, {self.record.mode}); the controller keeps "
                  f"watching it. On the host: `meshsim down {name}` shuts its nodes down (then `docker compose "
                  f"down` removes the containers)\n{tries}", file=sys.stderr, flush=True)
            self.ready_sent = True
            return
        if self.notify_fd is None:
            print(f"{'converged' if result.converged else 'NOT converged'}; run {name} (id {self.record.run_id}) "
                  f"keeps running until Ctrl-C or `meshsim down {name}`\n{tries}", file=sys.stderr)
            self.ready_sent = True
            return
        hints = (f"run {name} is up (id {self.record.run_id}, {self.record.mode}); `meshsim down {name}` stops it\n"
                 f"{tries}")
        msg = {"event": "ready", "converged": result.converged, "summary": text, "hints": hints,
               "name": name, "run_id": self.record.run_id}
        try:
            os.write(self.notify_fd, (json.dumps(msg) + "\n").encode())
        except OSError:  # `up` is gone (killed): the run stays up all the same
            pass
        finally:
            os.close(self.notify_fd)
            self.notify_fd = None
        self.ready_sent = True

    async def keeper(self, h: Harness, result: RunResult) -> None:
        """A runner.Keeper: the run is up; keep its record true until cancelled (SIGTERM, `meshsim down`)."""
        self.record.state = "up"
        self._write_health(h, result, force=True)
        self._ready(h, result)
        seen_flaps = totals(h.observer.snapshots)["flaps"]
        runnerless = self.record.runner is None
        try:
            while True:
                h.observer.updated.clear()
                try:
                    await asyncio.wait_for(h.observer.updated.wait(),
                                           RECORD_CHECK_INTERVAL if runnerless else HEALTH_MAX_INTERVAL)
                except asyncio.TimeoutError:
                    pass
                pause = self._last_write + HEALTH_MIN_INTERVAL - time.monotonic()
                if pause > 0:  # coalesce a burst of updates into one write
                    await asyncio.sleep(pause)
                if runnerless and not self.brought_down and not self.still_ours():
                    self.brought_down = True
                if self.brought_down:  # as a local run's `meshsim down` (SIGTERM) ends it: interrupted
                    self.log.info("run_brought_down", run=self.record.name)
                    result.interrupted = True
                    gone = getattr(h.fabric, "shut_down_elsewhere", None)  # compose: its nodes were shut down
                    if gone is not None:
                        await gone()
                    return
                if runnerless and h.observer.dead and set(h.running()) <= set(h.observer.dead):
                    result.converged = False
                    result.error = (f"every node of run {self.record.name} stopped answering (their containers "
                                    f"stopped?): {'; '.join(f'{n}: {w}' for n, w in sorted(h.observer.dead.items()))}")
                    return
                self._write_health(h, result)
                if h.observer.dead and self.end_on_death:
                    name, why = next(iter(sorted(h.observer.dead.items())))
                    result.converged = False
                    result.error = f"node {name} died while running: {why}"
                    return
        finally:
            if not self.brought_down:  # else the nodes are being shut down: nothing to measure
                note_after_converged(h, result, seen_flaps)
            self.record.state = "stopping"
            try:
                self.write()
            except OSError:
                pass


def run_kept(args: Any, factory: Callable[[Cluster], Fabric], mode_check: Callable[[Cluster], None]) -> int:
    """`meshsim run --keep-running` (and `up`'s runner, `--notify-fd`): the run, registered in a state record
    for as long as it is up. A record that cannot be written fails `up`; a plain `--keep-running` run goes on
    without one, with a warning."""
    from meshsim.model.resources import load_scenario
    from meshsim.run.runner import main as run_main

    scenario = load_scenario(args.files)
    up = args.notify_fd is not None
    log = records.log_path(args.name) if up and args.name else None
    reg = Registration(list(args.files), scenario.name, name=args.name, notify_fd=args.notify_fd,
                       log=str(log) if log else None, end_on_death=not up)
    try:
        reg.claim()
    except RecordError as exc:
        if up or args.name:
            raise
        print(f"meshsim: warning: {exc}; this run has no state record (inspect, down and status will not find it)",
              file=sys.stderr)
        return run_main(args, factory, mode_check=mode_check)
    try:
        return run_main(args, reg.factory(factory), mode_check=mode_check, keeper=reg.keeper)
    finally:
        reg.close()
