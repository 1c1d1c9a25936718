"""The timeline's events as awaitable methods of `Emulation`, and `wait_converged`.

Owns `TimelineActions`, the half of `Emulation` that acts: each method builds the event a scenario's `spec.events`
would hold, validates it with `model.timeline.parse_timeline` (same rules, same errors, named after the method's
arguments) and performs and measures it with `run.steps.run_step`, the code `meshsim run` plays timelines with, so
its `EventRecord` has the timeline event's fields. A SIGKILL's second phase (its peers let its stale routes go when
the restart time runs out) is left to `wait_converged`, which measures it into the kill's record.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any, Literal

from meshsim.api.records import EmulationError, EventRecord, NotConverged
from meshsim.errors import ScenarioError


class TimelineActions:
    """Mixed into `Emulation` (meshsim.api.emulation), which provides the state used here."""

    check: bool
    _harness: Any
    _result: Any
    _lock: asyncio.Lock | None
    _pending_stale: dict[str, tuple[Any, float, float, EventRecord]]

    def _live(self) -> Any:  # pragma: no cover - Emulation's
        raise NotImplementedError

    def _sync_result(self) -> None:  # pragma: no cover - Emulation's
        raise NotImplementedError

    def _log_tails(self, nodes: Any, lines: int = 5) -> dict[str, str]:  # pragma: no cover - Emulation's
        raise NotImplementedError

    async def add_workloads(self, node: str, count: int, *, timeout: float | None = None,
                            wait: bool = True) -> EventRecord:
        """Schedule `count` pods on `node` (IPAM may claim new blocks); returns once every table has them."""
        return await self._event("add-workloads", {"node": node, "count": count}, timeout, wait)

    async def remove_workloads(self, node: str, count: int, *, timeout: float | None = None,
                               wait: bool = True) -> EventRecord:
        """Delete `count` of the node's pods (emptied blocks are released and withdrawn)."""
        return await self._event("remove-workloads", {"node": node, "count": count}, timeout, wait)

    async def stop_node(self, node: str, *, timeout: float | None = None, wait: bool = True) -> EventRecord:
        """Graceful stop: NOTIFICATION Cease to every peer, routes withdrawn at once."""
        return await self._event("stop-node", {"node": node}, timeout, wait)

    async def kill_node(self, node: str, mode: Literal["crash", "sigkill"] = "crash", *, timeout: float | None = None,
                        wait: bool = True) -> EventRecord:
        """`crash`: the host goes silent; returns when the peers' hold timers have dropped it (use short timers).
        `sigkill`: the connections reset; with graceful restart its peers keep its routes as stale: returns when
        they hold them; their expiry (the restart time, e.g. BGPConfiguration `nodeMeshMaxRestartTime`) is
        awaited and measured by the next `wait_converged()` (`record.stale`)."""
        return await self._event("kill-node", {"node": node, "mode": mode}, timeout, wait)

    async def start_node(self, node: str, *, timeout: float | None = None, wait: bool = True) -> EventRecord:
        """Start a stopped or killed node again (a killed one restarts with graceful restart)."""
        return await self._event("start-node", {"node": node}, timeout, wait)

    async def add_node(self, name: str, address: str, *, labels: dict[str, str] | None = None,
                       as_number: int | None = None, route_reflector_cluster_id: str | None = None,
                       workloads: int = 0, timeout: float | None = None, wait: bool = True) -> EventRecord:
        """Create a Node (`address` with prefix, e.g. "192.168.0.99/24", in a subnet the cluster already has)
        and start it, with `workloads` pods."""
        fields = {"name": name, "ipv4Address": address, "labels": labels, "asNumber": as_number,
                  "routeReflectorClusterID": route_reflector_cluster_id, "workloads": workloads or None}
        return await self._event("add-node", fields, timeout, wait)

    async def disconnect(self, node: str, peer: str, *, timeout: float | None = None,
                         wait: bool = True) -> EventRecord:
        """Tear down the session between two nodes once (it comes back by itself)."""
        return await self._event("disconnect", {"node": node, "peer": peer}, timeout, wait)

    async def apply(self, resource: dict[str, Any], *, timeout: float | None = None,
                    wait: bool = True) -> EventRecord:
        """`calicoctl apply` one resource (IPPool, Node, BGPConfiguration, BGPPeer, IPAMConfiguration), given as
        the mapping its YAML holds (apiVersion, kind, metadata, spec)."""
        return await self._event("apply", {"resource": resource}, timeout, wait)

    async def run_timeline(self) -> list[EventRecord]:
        """Play the scenario's own `spec.events`, as `meshsim run` does (a SIGKILL's stale phase included)."""
        from meshsim.model.timeline import parse_timeline
        from meshsim.run.steps import run_timeline

        h = self._live()
        steps = parse_timeline(h.cluster.scenario, [n.name for n in h.cluster.scenario.nodes])
        first = len(self._result.events)
        async with self._serial():
            await run_timeline(h, steps, self._result, progress=False)
        self._result.events[first:] = [EventRecord(e) for e in self._result.events[first:]]
        return list(self._result.events[first:])

    def _serial(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _step(self, action: str, fields: dict[str, Any], timeout: float | None, wait: bool) -> Any:
        """One timeline event, validated exactly as the same event in a scenario's `spec.events` would be."""
        from meshsim.model.resources import Event
        from meshsim.model.timeline import parse_timeline

        h = self._live()
        raw = {"action": action, **{k: v for k, v in fields.items() if v is not None}}
        if timeout is not None:
            raw["timeout"] = timeout
        if not wait:
            raw["wait"] = False
        sc = h.cluster.scenario
        index = len(self._result.events)
        probe = replace(sc, spec=replace(sc.spec, events=(Event(index, action, tuple(raw.items())),)))
        try:
            (step,) = parse_timeline(probe)
        except ScenarioError as exc:
            prefix = f"spec.events.{index}."
            name = (exc.field or "").removeprefix(prefix)
            name = {"ipv4Address": "address", "asNumber": "as_number",
                    "routeReflectorClusterID": "route_reflector_cluster_id"}.get(name, name)
            raise replace(exc, path=f"Emulation.{action.replace('-', '_')}()", doc=None, kind=None, name=None,
                          line=None, field=name or None) from None
        return step

    async def _event(self, action: str, fields: dict[str, Any], timeout: float | None, wait: bool) -> EventRecord:
        from meshsim.run.steps import NOTE_RESTARTING, run_step

        step = self._step(action, fields, timeout, wait)
        h = self._harness
        async with self._serial():
            if action == "start-node" and step.node in self._pending_stale:
                self._pending_stale.pop(step.node)[3]["stale"]["note"] = NOTE_RESTARTING
            record = EventRecord(await run_step(h, step, self._result.started_at, stale_phase=False))
            self._result.events.append(record)
            self._sync_result()
            until = h.stale.get(step.node) if action == "kill-node" else None
            if until is not None and record.get("stale"):
                self._pending_stale[step.node] = (step, self._result.started_at + record["at_s"], until, record)
        if record.get("error"):
            raise EmulationError(f"{record.event}: {record['error']}", record)
        if self.check and record.get("waited") is not False and not record.converged:
            raise NotConverged(f"event {record.event!r}", record["timeout_s"], record, record,
                               logs=self._log_tails(record.not_converged))
        return record

    async def wait_converged(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until every running node's table equals its expected table and the expected sessions are up.

        After `emulate(..., wait=False)` the first call measures the cold start (`cold_start`, report.json's
        `cold_start`). A SIGKILLed node's stale phase comes first: its peers keep its routes until the restart
        time has run out (then `kill_node`'s record gets its `stale` figures); `timeout` counts after that.
        Returns {converged, convergence_s, sessions_up, sessions_expected, nodes_differing, not_converged};
        raises `NotConverged` unless `check=False`."""
        from meshsim.run.runner import cold_figures
        from meshsim.run.steps import measure_stale

        h = self._live()
        async with self._serial():
            for node, (step, killed_at, until, record) in sorted(self._pending_stale.items()):
                record["stale"] = await measure_stale(h, step, killed_at, until, wait=True, progress=None)
            self._pending_stale.clear()
            cold = not self._result.cold
            since = h.started_at if cold else time.time()
            conv = await h.converge(timeout, since=since)
            if cold:
                self._result.cold = cold_figures(conv, h.observer.snapshots)
                self._sync_result()
        figures = {"converged": conv.converged and conv.sessions_up == conv.sessions_expected,
                   "convergence_s": None if conv.time is None else round(conv.time, 3),
                   "sessions_up": conv.sessions_up, "sessions_expected": conv.sessions_expected,
                   "nodes_differing": conv.nodes - conv.nodes_converged,
                   "not_converged": {n: d.to_json() for n, d in conv.diffs.items() if not d.equal}}
        if self.check and not figures["converged"]:
            raise NotConverged("the cold start" if cold else "wait_converged()", timeout, figures,
                               logs=self._log_tails(figures["not_converged"]))
        return figures


__all__ = ["TimelineActions"]
