"""Shared fixtures: scenario builders for tests."""

from __future__ import annotations

import os
import subprocess
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"


def node_doc(name: str, address: str, labels: dict[str, str] | None = None, cluster_id: str | None = None,
             asn: int | None = None) -> str:
    bgp = [f"    ipv4Address: {address}"]
    if cluster_id:
        bgp.append(f"    routeReflectorClusterID: {cluster_id}")
    if asn:
        bgp.append(f"    asNumber: {asn}")
    lab = ""
    if labels:
        lab = "  labels:\n" + "".join(f"    {k}: '{v}'\n" for k, v in labels.items())
    return f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {name}\n{lab}spec:\n  bgp:\n" + \
        "\n".join(bgp) + "\n"


def pool_doc(cidr: str = "10.244.0.0/16", block_size: int = 26, ipip: str = "Always", name: str = "pool1",
             extra: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: projectcalico.org/v3
        kind: IPPool
        metadata:
          name: {name}
        spec:
          cidr: {cidr}
          blockSize: {block_size}
          ipipMode: {ipip}
        """) + extra


def scenario_doc(name: str = "test", workloads: dict[str, int] | None = None, hosts: str = "",
                 events: str = "[]") -> str:
    w = "{" + ", ".join(f"{k}: {v}" for k, v in (workloads or {}).items()) + "}"
    return textwrap.dedent(f"""\
        apiVersion: meshsim/v1
        kind: Scenario
        metadata:
          name: {name}
        spec:
          workloads: {w}
          timers: {{holdTime: 9s, keepaliveTime: 3s}}
          events: {events}
        """) + hosts


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[..., Path]:
    counter = [0]

    def write(*docs: str, name: str | None = None) -> Path:
        counter[0] += 1
        path = tmp_path / (name or f"scenario{counter[0]}.yaml")
        path.write_text("---\n".join(d if d.endswith("\n") else d + "\n" for d in docs))
        return path

    return write


@contextmanager
def tmpfs(path: Path, size: str = "64k", ro: bool = False) -> Iterator[Path]:
    """A small tmpfs of the test's own at `path` (root only, else the test is skipped): read-only, or one that
    fills up; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> None:
    """Fill the file system under `path` (a small tmpfs) to the last block."""
    subprocess.run(["dd", "if=/dev/zero", f"of={path / 'fill'}", "bs=4k"], capture_output=True)


@pytest.fixture(autouse=True)
def _logs_follow_a_live_stream():
    """A test that runs the CLI under capsys leaves structlog writing to that test's capture, closed after it;
    every later log call would raise ValueError (and kill the asyncio task that logged). Point it back at the
    live stderr when that happened."""
    yield
    import structlog

    stream = getattr(structlog.get_config()["logger_factory"], "_file", None)
    if getattr(stream, "closed", False):
        from meshsim.logs import configure

        configure()
