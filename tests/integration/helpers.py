"""Helpers for integration tests that start real node processes and ExaBGP."""

from __future__ import annotations

import os
from pathlib import Path

from meshsim.runner.harness import Harness


def alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def pids_of(harness: Harness) -> set[int]:
    """Every node and ExaBGP pid the harness has seen."""
    pids: set[int] = set()
    for node in harness.fabric.nodes.values():
        pids |= node.pids_seen
    for snap in harness.observer.snapshots.values():
        epid = snap["counters"]["usage"]["exabgp"].get("pid")
        if epid:
            pids.add(int(epid))
    return pids


def leftover_processes(marker: str) -> list[str]:
    """Command lines of live processes mentioning `marker` (e.g. the run's temp dir)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and alive(int(entry)):
            out.append(f"{entry}: {cmd}")
    return out


def scenario_text(name: str, nodes: int, *, hold: str = "9s", keepalive: str = "3s", pods: int = 2,
                  rr: int = 0, base: str = "192.168.0", first: int = 81) -> str:
    """A generated scenario: `nodes` meshed nodes (or `rr` reflectors + clients when rr > 0)."""
    docs = []
    if rr:
        docs.append("apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
                    "spec: {nodeToNodeMeshEnabled: false}\n")
        docs.append("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: peer-with-rrs}\n"
                    "spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}\n")
    docs.append("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: default-ipv4-ippool}\n"
                "spec: {cidr: 10.244.0.0/16, blockSize: 26, ipipMode: Always}\n")
    names = []
    for i in range(rr):
        names.append(f"rr{i + 1}")
        docs.append(f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: rr{i + 1}\n"
                    f"  labels: {{route-reflector: 'true'}}\nspec:\n  bgp:\n    ipv4Address: {base}.{10 + i + 1}/24\n"
                    f"    routeReflectorClusterID: 244.0.0.1\n")
    for i in range(nodes):
        names.append(f"node{i + 1}")
        docs.append(f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: node{i + 1}}}\n"
                    f"spec: {{bgp: {{ipv4Address: {base}.{first + i}/24}}}}\n")
    workloads = ", ".join(f"node{i + 1}: {pods}" for i in range(nodes))
    docs.append(f"apiVersion: meshsim/v1\nkind: Scenario\nmetadata: {{name: {name}}}\n"
                f"spec:\n  workloads: {{{workloads}}}\n  timers: {{holdTime: {hold}, keepaliveTime: {keepalive}}}\n")
    return "---\n".join(docs)
