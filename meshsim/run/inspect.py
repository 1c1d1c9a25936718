"""`meshsim inspect [RUN]`: the emulations that run on this machine, from their state records.

Owns `inspect(args)` and the data behind it (`run_data`): without RUN one line per run (name, id, mode, state,
age, nodes, sessions Established/expected, converged), with RUN its nodes (addresses, worker, state,
sessions, routes, converged). What a run's runner last wrote in the record (`health`, rewritten when it
changes) is shown; nothing asks the nodes. A record whose runner is gone is shown as `stale`, with what it
left behind, until `meshsim down RUN` cleans it. `-o json|yaml` prints the records themselves (the token
left out), `-o wide` adds the runner's pid and the scenario files.
"""

from __future__ import annotations

import os
import time
from typing import Any

from meshsim.report.calicoctl import columns
from meshsim.run import records
from meshsim.run.records import RunRecord


def state_of(rec: RunRecord) -> str:
    return rec.state if rec.alive() else "stale"


def _yes_no(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _sessions(h: dict[str, Any]) -> str:
    return f"{h['sessions_up']}/{h['sessions_expected']}" if "sessions_up" in h else "-"


def leftovers(rec: RunRecord) -> dict[str, int]:
    """What a stale run still holds: live worker processes and existing namespaces."""
    out = {"worker processes": sum(1 for w in rec.workers if w.alive())}
    if rec.namespaces and os.path.isdir("/run/netns"):
        existing = set(os.listdir("/run/netns"))
        out["namespaces"] = len(existing & set(rec.namespaces))
    return out


def run_data(rec: RunRecord) -> dict[str, Any]:
    """A record as `-o json|yaml` shows it: everything but the token, plus its state and age."""
    data = rec.public()
    data["state"] = state_of(rec)
    data["age_seconds"] = round(time.time() - rec.started_at, 1)
    if data["state"] == "stale":
        data["left_behind"] = leftovers(rec)
    return data


def list_text(recs: list[RunRecord], wide: bool = False) -> str:
    headers = ["NAME", "ID", "MODE", "STATE", "AGE", "NODES", "SESSIONS", "CONVERGED"]
    if wide:
        headers += ["RUNNER", "SCENARIO"]
    rows = []
    now = time.time()
    for rec in recs:
        state = state_of(rec)
        h = rec.health if state in ("up", "stopping") else {}
        row = [rec.name, rec.run_id or "-", rec.mode, state, records.age(now - rec.started_at), str(len(rec.nodes)),
               _sessions(h), _yes_no(h.get("converged"))]
        if wide:
            row += [str(rec.runner.pid) if rec.runner else "-", " ".join(rec.files)]
        rows.append(row)
    return columns(headers, rows)


def run_text(rec: RunRecord, wide: bool = False) -> str:
    state = state_of(rec)
    now = time.time()
    h = rec.health if state in ("up", "stopping") else {}
    lines = [f"run {rec.name} (id {rec.run_id or '-'}): {rec.mode}, {state}, started {records.age(now - rec.started_at)} "
             f"ago, runner pid {rec.runner.pid if rec.runner else '-'}; scenario {rec.scenario} "
             f"({' '.join(rec.files)})"]
    if h:
        lines.append(f"sessions {_sessions(h)} Established, {h['nodes_converged']}/{h['nodes_expected']} nodes equal "
                     f"their expected table ({'converged' if h['converged'] else 'NOT converged'}; as of "
                     f"{records.age(now - h.get('updated_at', now))} ago)")
        for node, why in sorted(h.get("dead", {}).items()):
            lines.append(f"node {node} died: {why}")
    if state == "stale":
        held = ", ".join(f"{n} {what}" for what, n in leftovers(rec).items() if n) or "nothing else"
        lines.append(f"STALE: its runner is gone; it left {held}: `meshsim down {rec.name}` cleans up and removes "
                     "the record")
    if rec.log or rec.workdir:
        lines.append("; ".join(([f"runner log {rec.log}"] if rec.log else [])
                               + ([f"node logs in {rec.workdir}"] if rec.workdir else [])))
    netns = any(e.namespace for e in rec.nodes.values())
    headers = ["NODE", "HTTP", "BGP"] + (["NAMESPACE"] if netns else []) + ["WORKER", "STATE", "SESSIONS", "ROUTES",
                                                                             "CONVERGED"]
    rows = []
    per_node = h.get("nodes", {})
    for name, e in rec.nodes.items():
        n = per_node.get(name, {})
        rows.append([name, e.http, e.bgp] + ([e.namespace or "-"] if netns else [])
                    + [str(e.worker or e.container or "-"), n.get("state", "-"), _sessions(n),
                       "-" if n.get("routes") is None else str(n["routes"]), _yes_no(n.get("converged"))])
    if wide and rec.namespaces:
        lines.append(f"namespaces: {' '.join(rec.namespaces)}")
    return "\n".join(lines) + "\n\n" + columns(headers, rows)


def inspect(args: Any) -> int:
    from meshsim.operator import emit

    if args.run is not None:
        rec = records.read(args.run)
        if args.output in ("json", "yaml"):
            emit(run_data(rec), args.output)
        else:
            print(run_text(rec, wide=args.output == "wide"), end="")
        return 0
    recs = records.all_records()
    broken = records.broken_records()
    if args.output in ("json", "yaml"):
        emit({"runs": [run_data(r) for r in recs], "unreadable": broken}, args.output)
        return 0
    if not recs and not broken:
        print("no emulation is up (`meshsim up SCENARIO` starts one)")
        return 0
    print(list_text(recs, wide=args.output == "wide"), end="")
    for name in broken:
        print(f"unreadable record: {name} (`meshsim down {name}` removes it)")
    return 0
