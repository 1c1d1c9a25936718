"""Open-file limits: how many workers a cluster needs, and a listener that runs out of descriptors.

A 200-node mesh once never converged: its three workers were planned for one socket per session end, but at a
cold start both ends dial, so each session briefly holds two sockets at each end; the burst passed the open-file
limit, every dial in it failed with "Too many open files", and the listener's accept loop spun on EMFILE.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from ipaddress import IPv4Address
from pathlib import Path

from meshsim.agent.config import node_configs
from meshsim.agent.netctx import NetContext
from meshsim.engines.native import transport as tr
from meshsim.fabric.local import FDS_PER_NODE, WORKER_FD_BUDGET, plan_workers
from meshsim.model.cluster import Cluster
from meshsim.model.generate import cluster_yaml
from meshsim.model.loader import load_scenario_text


def _configs(n: int, design: str = "mesh") -> dict:
    cluster = Cluster.build(load_scenario_text(cluster_yaml(f"t-{design}-{n}", n, design=design), "<t>"))
    return node_configs(cluster, bgp_port=17900, http_port=9179, workdir=Path("/nonexistent"))


def test_a_200_node_mesh_gets_workers_whose_cold_start_fits_the_open_file_limit():
    configs = _configs(200)
    plan = plan_workers(configs, cpus=2, fd_limit=20_000)
    budget = 20_000 * WORKER_FD_BUDGET
    for nodes in plan:
        both_ends_dialling = sum(2 * len(configs[n].peers) + FDS_PER_NODE for n in nodes)
        assert both_ends_dialling <= budget, (len(plan), both_ends_dialling)
    assert sorted(n for nodes in plan for n in nodes) == sorted(configs)
    assert len(plan) >= 6  # 200 x (2 x 199 + 4) descriptors / 15,000


def test_small_clusters_still_get_one_worker_per_cpu():
    assert len(plan_workers(_configs(30), cpus=2, fd_limit=20_000)) == 2
    assert len(plan_workers(_configs(500, "rr"), cpus=2, fd_limit=20_000)) == 2


class _Exhausted:
    """A listener whose accept() fails as a process out of descriptors does (the fd is a real one to watch)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()  # nothing connects: readable only when the test calls _accept itself
        self.calls = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self):
        self.calls += 1
        raise OSError(errno.EMFILE, "Too many open files")


async def test_a_listener_out_of_descriptors_pauses_instead_of_spinning(monkeypatch):
    monkeypatch.setattr(tr, "ACCEPT_PAUSE", 0.05)
    loop = asyncio.get_running_loop()
    t = tr.BgpTransport(address=IPv4Address("127.0.0.1"), port=0, net=NetContext(None), feed=lambda e: None,
                        new_conn_id=lambda: 1)
    fake = _Exhausted()
    t.listener = fake  # type: ignore[assignment]
    loop.add_reader(fake.fileno(), t._accept)
    t._accept()
    assert fake.calls == 1
    assert not loop.remove_reader(fake.fileno())  # paused: no longer watched
    await asyncio.sleep(0.2)
    assert loop.remove_reader(fake.fileno())  # watched again after the pause
    assert fake.calls == 1
    fake.sock.close()
