"""Reading a running emulation's nodes from the command line (`meshsim status`, `routes --live`, `show`,
`peers --graph --live`).

`find_node` finds a node through the run's state record (meshsim/run/records.py): `--run RUN`, else the live
run of the scenario files given, else the only live run. `fetch_views` asks it for its JSON views and checks
*every* answer: it must come from that node of that run (its `name` and `run_id`), so a node of another run
answering at the same address is refused, never printed. `birdc` speaks a BIRD control socket (what birdc
does) for `implementation: bird` nodes, whose GET /status names it (`control_socket`).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Sequence

from meshsim.agent.http import request
from meshsim.errors import NotFoundError, RunError
from meshsim.run import records
from meshsim.run.records import RunRecord


def find_run(files: Sequence[str] | None = None, run: str | None = None) -> RunRecord:
    return records.pick(run, files=list(files or ()), verb="ask")


def find_node(files: Sequence[str] | None, node: str, run: str | None = None) -> tuple[RunRecord, str, int]:
    rec = find_run(files, run)
    entry = rec.nodes.get(node)
    if entry is None:
        raise NotFoundError(f"node in run {rec.name}", node, tuple(rec.nodes))
    host, port = entry.http_host_port
    return rec, host, port


def _owner(run_id: object) -> str:
    """Whose node it is, as a person reads it: the run's name when a record has that id."""
    if not run_id:
        return "no run (a node started by hand)"
    for rec in records.all_records():
        if rec.run_id == run_id:
            return f"run {rec.name} (id {run_id})"
    return f"run id {run_id}"


def check_identity(rec: RunRecord, node: str, where: str, payload: Any, path: str) -> None:
    """The answer must say it is `node` of run `rec` (issue 13: status printed another run's node)."""
    if not isinstance(payload, dict):
        raise RunError(f"{path} at {where} answered {type(payload).__name__}, expected a JSON object", node=node)
    name, run_id = payload.get("name"), payload.get("run_id")
    if run_id != rec.run_id:
        raise RunError(f"{node} at {where} belongs to {_owner(run_id)}, not {rec.name} (id {rec.run_id}); "
                       f"`meshsim inspect` lists what runs")
    if name != node:
        raise RunError(f"the node answering at {where} is {name!r}, not {node!r} (run {rec.name})")


def fetch_views(files: Sequence[str] | None, node: str, views: Sequence[str] = ("status", "rib", "routes"),
                run: str | None = None) -> dict[str, Any]:
    """GET /<view> of a running node for each view: {"status": {...}, "rib": {...}, "routes": {...}}, each
    answer checked to come from `node` of the run."""
    rec, host, port = find_node(files, node, run)
    where = f"{host}:{port}"
    out = {}
    for view in views:
        try:
            status, payload = asyncio.run(request(host, port, "GET", f"/{view}", timeout=10))
        except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
            raise RunError(f"nothing answers at {where} ({exc}); is the node stopped? `meshsim inspect {rec.name}` "
                           "shows its state", node=node) from None
        if status != 200:
            raise RunError(f"GET /{view} at {where} answered {status}: {payload}", node=node)
        check_identity(rec, node, where, payload, f"/{view}")
        out[view] = payload
    return out


def birdc(path: str, command: str, timeout: float = 10.0) -> tuple[str, str]:
    """(banner, reply) of one command on a BIRD control socket, both as birdc prints them."""
    from meshsim.engines.bird.confd import split_reply

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            f = s.makefile("rwb")
            hello = f.readline().decode(errors="replace").rstrip("\n")
            f.write(command.encode() + b"\n")
            f.flush()
            lines = []
            while True:
                raw = f.readline()
                if not raw:
                    break
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append(line)
                if len(line) >= 5 and line[:4].isdigit() and line[4] == " ":
                    break
    except OSError as exc:
        raise RunError(f"cannot reach BIRD's control socket {path}: {exc}") from None
    reply, _ = split_reply(lines)
    return split_reply([hello])[0].rstrip("\n"), reply


def live_status(files: Sequence[str] | None, node: str, run: str | None = None) -> str:
    return str(fetch_views(files, node, ("status",), run)["status"]["text"])


def live_routes(files: Sequence[str] | None, node: str | None, fmt: str, run: str | None = None) -> str:
    if node is None:
        raise RunError("--live needs --node NAME")
    routes = fetch_views(files, node, ("routes",), run)["routes"]
    return str(routes["ip"] if fmt == "ip" else routes["route_n"])
