"""A fabric without processes, for unit tests of what a run does around its nodes (its end, its report).

`FakeFabric` answers like a fabric whose nodes converge at once (their summaries carry the expected digests and
Established sessions), and records every call in `calls`, so a test can check the order of a run's cleanup. Hooks
make the parts a test is about slow or failing: `hang_gets` (GETs wait until `release_gets` is set),
`close_delay` (close() takes that long unless kill_all_now() is called), `log_bytes` (collect_logs writes a log
that big), `converge` (False: the nodes never reach their expected tables).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from meshsim.agent.config import NodeConfig, node_configs
from meshsim.fabric.base import FabricBase, SnapshotSink
from meshsim.model.cluster import Cluster
from meshsim.oracle.expected import expected_tables
from meshsim.report.metrics import COUNTER_KEYS, expected_digests, expected_sessions


class FakeFabric(FabricBase):
    mode = "fake"

    def __init__(self, cluster: Cluster, *, out: Path | None = None, close_delay: float = 0.0,
                 hang_gets: bool = False, log_bytes: int = 100, converge: bool = True) -> None:
        super().__init__(cluster)
        self.out = out
        self.close_delay = close_delay
        self.hang_gets = hang_gets
        self.release_gets = asyncio.Event()
        self.log_bytes = log_bytes
        self.converge = converge
        self.calls: list[str] = []
        self.state: dict[str, str] = {}
        self.sink: SnapshotSink | None = None
        self.killed = asyncio.Event()
        tables = expected_tables(cluster)
        self.tables = {n: t.render_ip() for n, t in tables.items()}
        self.digests = {n: e.digest for n, e in expected_digests(tables).items()}
        self.sessions = expected_sessions(cluster.peerings(), [n.name for n in cluster.scenario.nodes])

    def _configs(self) -> dict[str, NodeConfig]:
        return node_configs(self.cluster, bgp_port=179, http_port=9179, workdir=Path("/nonexistent"))

    def attach(self, sink: SnapshotSink) -> None:
        self.sink = sink

    def running(self) -> list[str]:
        return [n for n, s in self.state.items() if s == "running"]

    def summary(self, name: str) -> dict[str, Any]:
        now = time.time()
        return {"version": 1, "name": name, "run_id": self.run_id, "time": now, "started": now, "bgp_running": True,
                "routes": {"digest": self.digests[name] if self.converge else "nope", "count": 1, "changes": 1,
                           "last_change": now},
                "sessions": {proto: ["up", now, 0, 0] for node, proto in self.sessions if node == name},
                "counters": {"totals": {k: 0 for k in COUNTER_KEYS},
                             "usage": {"cpu_seconds": 0.0, "rss_bytes": 0, "engine": "fake"}}}

    async def start(self) -> None:
        self.calls.append("start")

    async def start_node(self, name: str, *, restart: bool = False, hold_bgp: bool = False) -> None:
        self.state[name] = "running"

    async def release(self, names: list[str]) -> None:
        for n in names:
            assert self.sink is not None
            self.sink.record(n, self.summary(n))

    def was_killed(self, name: str) -> bool:
        return False

    async def stop_node(self, name: str) -> None:
        self.state[name] = "stopped"

    async def kill_node(self, name: str, mode: str = "crash") -> None:
        self.state[name] = "killed"

    async def get(self, name: str, path: str, timeout: float = 10.0) -> Any:
        self.calls.append(f"get {path}")
        if self.hang_gets:
            await self.release_gets.wait()
        if path.startswith("/routes"):
            return self.tables[name]
        if path.startswith("/status"):
            return {"text": f"status of {name}\n"}
        return self.summary(name)

    async def post(self, name: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        self.calls.append(f"post {path}")
        return {"ok": True}

    def tail(self, name: str, lines: int = 5) -> str:
        return ""

    def collect_logs(self, dest: Path) -> None:
        self.calls.append("collect_logs")
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "node1.log").write_bytes(b"x" * self.log_bytes)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "workers": []}

    async def close(self) -> None:
        report = self.out is not None and (self.out / "report.json").exists()
        self.calls.append(f"close (report.json written: {report})")
        try:
            await asyncio.wait_for(self.killed.wait(), self.close_delay)
        except asyncio.TimeoutError:
            pass
        self.state = {n: "stopped" for n in self.state}
        self.calls.append("closed")

    def kill_all_now(self) -> None:
        self.calls.append("kill_all_now")
        self.killed.set()

    def remove_files(self) -> None:
        self.calls.append("remove_files")
