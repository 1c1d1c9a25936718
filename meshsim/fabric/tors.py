"""External BGP peers (ToRs) of an `--isolation netns` run, as real `gobgpd` daemons in namespaces of their own.

Owns `TorDaemons`: start one passive gobgpd per ToR (exporting nothing), stop them, and `external_report()`:
what each learned, checked against what it should learn (every prefix a running node may export, with the
owner's address among its next hops); `summary_lines()` prints that for `meshsim run`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

from meshsim.errors import RunError
from meshsim.fabric.topology import Tor, Topology
from meshsim.host import procs
from meshsim.logs import get_logger
from meshsim.model.cluster import Cluster

TOR_API_PORT = 50051


class TorDaemons:
    """The gobgpd ToRs of one run."""

    def __init__(self, cluster: Cluster, topology: Topology, workdir: Path, running: Any, tor_wait: float = 20.0,
                 log: Any = None) -> None:
        self.cluster = cluster
        self.topology = topology
        self.workdir = workdir
        self.running = running  # () -> list of running node names
        self.tor_wait = tor_wait
        self.log = log or get_logger(component="tors")
        self.procs: dict[int, asyncio.subprocess.Process] = {}

    def _tor_config(self, tor: Tor) -> str:
        hold = int(round(self.cluster.scenario.spec.timers.hold_time))
        keep = int(round(self.cluster.scenario.spec.timers.keepalive_time))
        lines = ["[global.config]", f"  as = {tor.asn}", f'  router-id = "{tor.address}"', "  port = 179",
                 f'  local-address-list = ["{tor.address}"]', "[global.apply-policy.config]",
                 '  default-export-policy = "reject-route"', ""]
        for node, (addr, asn) in sorted(tor.neighbors.items()):
            lines += ["[[neighbors]]", "  [neighbors.config]", f'    neighbor-address = "{addr}"', f"    peer-as = {asn}",
                      f'    description = "{node}"', "  [neighbors.transport.config]", "    passive-mode = true",
                      f'    local-address = "{tor.address}"', "  [neighbors.timers.config]", f"    hold-time = {hold}",
                      f"    keepalive-interval = {keep}", "  [neighbors.ebgp-multihop.config]", "    enabled = true",
                      "    multihop-ttl = 64", "  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]",
                      '      afi-safi-name = "ipv4-unicast"', ""]
        return "\n".join(lines)

    async def start(self) -> None:
        if not self.topology.tors:
            return
        if shutil.which("gobgpd") is None:
            raise RunError("the scenario has an external BGP peer (a BGPPeer with a peerIP that is no node); "
                           "meshsim realises it with gobgpd, which is not installed (apt-get install gobgpd)")
        for tor in self.topology.tors:
            d = self.workdir / f"tor{tor.index}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "gobgpd.toml").write_text(self._tor_config(tor))
            with open(d / "gobgpd.log", "ab") as logf:
                proc = await procs.spawn(
                    ["ip", "netns", "exec", tor.ns, "gobgpd", "-f", str(d / "gobgpd.toml"), "-t", "toml", "-p",
                     "--pprof-disable", "--api-hosts", f"127.0.0.1:{TOR_API_PORT}"],
                    stdout=logf, stderr=asyncio.subprocess.STDOUT)
            self.procs[tor.index] = proc
            self.log.info("tor_started", address=str(tor.address), asn=tor.asn, pid=proc.pid,
                          neighbors=len(tor.neighbors))

    async def stop(self) -> None:
        await asyncio.gather(*(procs.stop(p, grace=5) for p in self.procs.values()))
        self.procs.clear()

    async def _gobgp(self, tor: Tor, *args: str) -> Any:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", tor.ns, "gobgp", "-u", "127.0.0.1", "-p", str(TOR_API_PORT), *args, "-j",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:  # gobgp answers from gobgpd's memory in milliseconds: 20 s is a hung daemon, not a busy machine
            out, err = await asyncio.wait_for(proc.communicate(), 20)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode:
            raise RunError(f"gobgp {' '.join(args)} in {tor.ns}: {err.decode().strip()}")
        return json.loads(out or b"null")

    def tor_expected(self, tor: Tor) -> dict[str, str]:
        """What a ToR should learn: every prefix a running node originates and may export (its blocks and borrowed
        /32s), with that node's address as next hop."""
        from meshsim.oracle.expected import exportable

        running = set(self.running())
        out = {}
        for node in self.cluster.scenario.nodes:
            if node.name not in running:
                continue
            for prefix in self.cluster.originated(node.name):
                if exportable(self.cluster, node.name, prefix):
                    out[str(prefix)] = str(node.address)
        return out

    async def tor_state(self, tor: Tor) -> dict[str, Any]:
        rib = await self._gobgp(tor, "global", "rib", "-a", "ipv4") or {}
        neighbors = await self._gobgp(tor, "neighbor") or []
        states = {1: "idle", 2: "connect", 3: "active", 4: "opensent", 5: "openconfirm", 6: "established"}
        sessions = {}
        for n in neighbors:
            st = n.get("state", {})
            sessions[st.get("neighbor_address") or n.get("conf", {}).get("neighbor_address")] = \
                states.get(st.get("session_state"), str(st.get("session_state")))
        learned = {}
        for prefix, paths in rib.items():
            entries = []
            for path in paths:
                nh = None
                as_path: list[int] = []
                for attr in path.get("attrs", []):
                    if attr.get("type") == 3:
                        nh = attr.get("nexthop")
                    elif attr.get("type") == 2:
                        for seg in attr.get("as_paths", []):
                            as_path += seg.get("asns", [])
                entries.append({"next_hop": nh, "as_path": as_path, "from": path.get("source-id") or
                                path.get("neighbor-ip"), "best": bool(path.get("best"))})
            best = next((e for e in entries if e["best"]), entries[0] if entries else None)
            learned[prefix] = {"best": best, "paths": entries}
        return {"sessions": sessions, "learned": learned}

    async def external_report(self) -> dict[str, Any]:
        """For every ToR: its sessions, every prefix it learned with every path, and the check that it learned
        every block of the cluster with the right next hops: for each block, the path its owner advertised carries
        the owner's address, and every path's next hop is a node of the cluster. (An iBGP ToR hears each block from
        its owner only; an eBGP ToR hears it from every node it peers with, each advertising itself as next hop, so
        its best path may go through any of them.) Waits up to `tor_wait` seconds for the ToR to get there."""
        out = []
        nodes = {str(n.address) for n in self.cluster.scenario.nodes}
        for tor in self.topology.tors:
            # Called once the cluster converged, when the ToR has had its routes for as long as the nodes; the wait
            # covers the last UPDATEs in flight. Past it the report says what the ToR lacks (no run fails on it).
            deadline = time.monotonic() + self.tor_wait
            while True:
                try:
                    state = await self.tor_state(tor)
                except (RunError, OSError, asyncio.TimeoutError, ValueError) as exc:
                    state = {"sessions": {}, "learned": {}, "error": str(exc)}
                expected = self.tor_expected(tor)
                learned = state["learned"]
                missing = sorted(p for p in expected if p not in learned)
                no_owner = sorted(p for p, nh in expected.items() if p in learned
                                  and not any(e["next_hop"] == nh for e in learned[p]["paths"]))
                foreign = sorted(p for p, entry in learned.items()
                                 if any(e["next_hop"] not in nodes for e in entry["paths"]))
                extra = sorted(p for p in learned if p not in expected)
                best_owner = sum(1 for p, nh in expected.items() if p in learned
                                 and (learned[p]["best"] or {}).get("next_hop") == nh)
                ok = not missing and not no_owner and not foreign and not extra
                if ok or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            out.append({"address": str(tor.address), "asn": tor.asn, "implementation": "gobgpd",
                        "ebgp": any(asn != tor.asn for _, asn in tor.neighbors.values()), "namespace": tor.ns,
                        **state, "expected": expected, "missing": missing, "without_owner_path": no_owner,
                        "foreign_next_hop": foreign, "unexpected": extra, "best_via_owner": best_owner, "ok": ok})
        return {"external_peers": out}


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The lines `meshsim run` prints for the ToRs."""
    lines = []
    for tor in report.get("external_peers", []):
        up = sum(1 for s in tor["sessions"].values() if s == "established")
        n = len(tor["expected"])
        got = n - len(tor["missing"])
        right = got - len(tor["without_owner_path"])
        kind = "eBGP" if tor.get("ebgp") else "iBGP"
        lines.append(f"  ToR {tor['address']} (gobgpd, AS {tor['asn']}, {kind}): {up}/{len(tor['sessions'])} sessions "
                     f"established; learned {got}/{n} blocks, {right}/{n} with the owner's next hop, best path via "
                     f"the owner for {tor['best_via_owner']}/{n}" + ("" if tor["ok"] else "  (NOT as expected)"))
        for prefix, entry in sorted(tor["learned"].items()):
            best = entry["best"] or {}
            others = sorted({e["next_hop"] for e in entry["paths"]} - {best.get("next_hop")})
            lines.append(f"    {prefix:<20} best via {best.get('next_hop')} as-path {best.get('as_path') or []}"
                         + (f"; also via {', '.join(others)}" if others else ""))
    return lines


