"""Issue 12's probes, re-run as a user (or a hostile local user) would, on real runs: an unwritable `--out`, a second
run on a running one's addresses, the runner killed with `kill -9`, the node API from another uid and from a browser,
bad bodies on a real node, SIGINT ignored and Ctrl-C twice, a start-up on a machine kept busy, and external peers
on loopback. Each checks what a user relies on: a clear error (exit 2, never a traceback), nothing left running or
holding an address, the other run untouched, the report written."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from meshsim.fabric.local import WorkerFabric
from meshsim.model.cluster import Cluster
from meshsim.model.generate import cluster_yaml
from meshsim.model.resources import load_scenario
from meshsim.run.harness import Harness
from tests.conftest import ROOT, fill, tmpfs
from tests.integration.helpers import marked_env, marked_processes, sockets_on, table

pytestmark = [pytest.mark.integration]
MESHSIM = [sys.executable, "-m", "meshsim"]


def _scenario(tmp_path: Path, name: str, nodes: int, subnet: str) -> tuple[Path, set[str]]:
    """A mesh of `nodes` on `subnet` (node1 = subnet + 10), and its nodes' 127.x addresses."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(cluster_yaml(name, nodes, subnet=subnet))
    cluster = Cluster.build(load_scenario([path]))
    addresses = {c.session_address for c in WorkerFabric(cluster, workdir=tmp_path / "unused").configs().values()}
    return path, addresses


def _status(address: str) -> dict[str, Any] | None:
    try:
        c = http.client.HTTPConnection(address, 9179, timeout=5)
        c.request("GET", "/status")
        return json.loads(c.getresponse().read())
    except (OSError, ValueError):
        return None


def _wait_established(proc: subprocess.Popen, address: str, sessions: int, bound: float = 120) -> dict[str, Any]:
    """Until the node at `address` shows `sessions` Established (a bound only against a broken run hanging the
    suite: a healthy run gets there in seconds)."""
    end = time.monotonic() + bound
    while True:
        if proc.poll() is not None:
            pytest.fail(f"meshsim run exited early ({proc.returncode}): {proc.communicate()}")
        status = _status(address)
        if status and sum(s["state"] == "up" for s in status["sessions"]) >= sessions:
            return status
        assert time.monotonic() < end, "the cluster did not come up"
        time.sleep(0.3)


def _kept_run(path: Path, out: Path, mark: str, *extra: str, sigint_ignored: bool = False) -> subprocess.Popen:
    argv = [*MESHSIM, "run", str(path), "--out", str(out), "--keep-running", *extra]
    # the run's work dir under the test's own tmp_path: a runner killed with SIGKILL cannot remove it itself
    env = {**marked_env(mark), "TMPDIR": str(out.parent)}
    if sigint_ignored:  # as a script's `cmd &` starts it: SIGINT ignored (POSIX, no job control)
        return subprocess.Popen(["sh", "-c", 'trap "" INT; exec "$@"', "sh", *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def _nothing_left(mark: str, addresses: set[str]) -> None:
    for _ in range(50):  # the kernel reaps and closes asynchronously
        left, held = marked_processes(mark), sockets_on(addresses)
        if not left and not held:
            return
        time.sleep(0.1)
    assert not left, f"processes left: {left}"
    assert not held, f"addresses still held: {held}"


# -- 1. --out ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["read-only mount", "existing file", "full disk"])
def test_an_unwritable_out_starts_nothing_and_is_a_clear_error(tmp_path, kind):
    path, addresses = _scenario(tmp_path, "outprobe", 3, "192.168.21.0/24")
    mark = f"out-{kind}-{os.getpid()}"
    place = tmp_path / "place"
    if kind == "existing file":
        place.write_text("x")
        out, ctx = place, None
    else:
        ctx = tmpfs(place, ro=kind == "read-only mount")
        ctx.__enter__()
        if kind == "full disk":
            fill(place)
        out = place / "run"
    try:
        started = time.monotonic()
        r = subprocess.run([*MESHSIM, "run", str(path), "--out", str(out)], capture_output=True, text=True,
                           env=marked_env(mark), cwd=ROOT, timeout=300)
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)
    assert r.returncode == 2, r.stderr
    assert f"meshsim: error: --out {out}" in r.stderr and "internal error" not in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert time.monotonic() - started < 60, "it failed before starting anything, not after a whole run"
    _nothing_left(mark, addresses)


def test_a_disk_that_fills_while_writing_keeps_report_json_and_leaks_nothing(tmp_path):
    """The late case: --out is fine at the start, but the report's plots and logs do not fit."""
    path, addresses = _scenario(tmp_path, "fillprobe", 3, "192.168.23.0/24")
    mark = f"fill-{os.getpid()}"
    with tmpfs(tmp_path / "small", size="40k") as small:
        r = subprocess.run([*MESHSIM, "run", str(path), "--out", str(small / "run")], capture_output=True, text=True,
                           env=marked_env(mark), cwd=ROOT, timeout=300)
        report = json.loads((small / "run" / "report.json").read_text())
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "could not write the report" in r.stderr and "No space left on device" in r.stderr, r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    assert report["converged"] is True and len(report["nodes"]) == 3
    assert "converged after" in r.stdout, "the summary is still printed"
    _nothing_left(mark, addresses)


# -- 2. a second run ------------------------------------------------------------------------------------------------


def test_a_second_run_fails_clearly_and_leaves_the_first_one_running(tmp_path):
    path, addresses = _scenario(tmp_path, "tworuns", 3, "192.168.24.0/24")
    node1 = "127.168.24.10"
    mark = f"tworuns-{os.getpid()}"
    first = _kept_run(path, tmp_path / "first", mark)
    try:
        before = _wait_established(first, node1, 2)
        r = subprocess.run([*MESHSIM, "run", str(path), "--out", str(tmp_path / "second")], capture_output=True,
                           text=True, env=marked_env(mark + "-2"), cwd=ROOT, timeout=300)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert "address already in use (127.168.24.10 HTTP port 9179" in r.stderr, r.stderr
        assert "another meshsim run" in r.stderr and "internal error" not in r.stderr
        assert "NOT converged" in r.stdout
        _nothing_left(mark + "-2", set())
        # an unauthenticated POST /shutdown (what the old cleanup sent) is refused
        c = http.client.HTTPConnection(node1, 9179, timeout=5)
        c.request("POST", "/shutdown", body=b"{}", headers={"Content-Type": "application/json"})
        assert c.getresponse().status == 401
        time.sleep(1.0)
        after = _status(node1)
        assert after is not None and after["run_id"] == before["run_id"] and after["bgp_running"]
        assert [s["state"] for s in after["sessions"]] == ["up", "up"]
        first.send_signal(signal.SIGINT)
        stdout, stderr = first.communicate(timeout=120)
    finally:
        _stop(first)
    assert first.returncode == 130, stderr
    report = json.loads((tmp_path / "first" / "report.json").read_text())
    assert report["converged"] is True and report["after_converged"]["converged"] is True
    assert report["after_converged"]["flaps"] == 0 and report["after_converged"]["changes"] == []
    assert "still converged" in stdout
    _nothing_left(mark, addresses)


def test_a_bgp_port_held_by_another_program_is_a_clear_error_not_a_hang(tmp_path):
    """The BGP listeners bind when the cold start is released; a refusal there used to go unanswered."""
    import socket

    path, addresses = _scenario(tmp_path, "bgptaken", 3, "192.168.30.0/24")
    mark = f"bgptaken-{os.getpid()}"
    holder = socket.socket()
    holder.bind(("127.168.30.11", 179))
    holder.listen()
    try:
        r = subprocess.run([*MESHSIM, "run", str(path)], capture_output=True, text=True, env=marked_env(mark),
                           cwd=ROOT, timeout=300)
    finally:
        holder.close()
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "node node2: address already in use (127.168.30.11 BGP port 179)" in r.stderr, r.stderr
    _nothing_left(mark, addresses)


# -- 3. kill -9 ------------------------------------------------------------------------------------------------------


def test_a_runner_killed_with_sigkill_takes_its_workers_along_and_the_next_run_binds(tmp_path):
    path, addresses = _scenario(tmp_path, "sigkill", 3, "192.168.25.0/24")
    mark = f"sigkill-{os.getpid()}"
    proc = _kept_run(path, tmp_path / "out", mark)
    try:
        _wait_established(proc, "127.168.25.10", 2)
        workers = [p for p in marked_processes(mark) if " worker" in p]
        assert workers, "the run has worker processes"
        proc.kill()  # kill -9: no cleanup of its own runs
        proc.communicate()
    finally:
        _stop(proc)
    _nothing_left(mark, addresses)  # PR_SET_PDEATHSIG: the kernel killed them
    r = subprocess.run([*MESHSIM, "run", str(path)], capture_output=True, text=True, env=marked_env(mark + "-next"),
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, (r.stdout, r.stderr)
    _nothing_left(mark + "-next", addresses)


# -- 4 and 6. the node API of a real node --------------------------------------------------------------------------


def _as_user(uid: int, host: str, port: int, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
    """One request from a process of another user (stdlib only: it cannot read this tree); the status."""
    code = ("import http.client, json, sys\n"
            "a = json.loads(sys.argv[1])\n"
            "c = http.client.HTTPConnection(a['host'], a['port'], timeout=10)\n"
            "c.request(a['method'], a['path'], body=a['body'].encode(), headers=a['headers'])\n"
            "print(c.getresponse().status)\n")
    arg = json.dumps({"host": host, "port": port, "method": method, "path": path, "headers": headers,
                      "body": body.decode()})
    out = subprocess.run(["/usr/bin/python3", "-c", code, arg], capture_output=True, text=True, timeout=30, cwd="/",
                         env={"PATH": "/usr/bin:/bin"}, user=uid, group=uid, extra_groups=[])
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


async def test_the_node_api_refuses_other_users_browsers_and_bad_bodies(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("acting as another user needs root")
    path, _ = _scenario(tmp_path, "api", 3, "192.168.26.0/24")
    cluster = Cluster.build(load_scenario([path]))
    async with asyncio.timeout(120):
        async with Harness(cluster) as h:
            assert (await h.converge(60)).converged
            host, port = h.fabric.http_address("node1")
            token = h.fabric.token
            json_ct = {"Content-Type": "application/json"}
            for what in ("/shutdown", "/stop", "/teardown", "/config", "/local"):
                for headers in (json_ct, {**json_ct, "Authorization": "Bearer guessed"}):
                    status = await asyncio.to_thread(_as_user, 65534, host, port, "POST", what, headers, b"{}")
                    assert status == 401, (what, headers, status)
            # what a web page in a local browser could send: even with the token it gets nowhere
            auth = {"Authorization": f"Bearer {token}"}
            cases = [({**json_ct, **auth, "Host": "evil.example"}, 421),
                     ({**json_ct, **auth, "Origin": "http://evil.example"}, 403),
                     ({"Content-Type": "text/plain", **auth}, 415)]
            for headers, want in cases:
                status = await asyncio.to_thread(_as_user, 65534, host, port, "POST", "/shutdown", headers, b"{}")
                assert status == want, (headers, status)
            # GETs stay open: `curl .../status` works for everyone
            assert await asyncio.to_thread(_as_user, 65534, host, port, "GET", "/status", {}, b"") == 200
            # bad bodies with the token: 400, nothing applied (the half-applied POST /local)
            block = next(b for b in h.fabric.configs()["node1"].local.blocks)
            before = await table(h, "node1")
            assert f"blackhole {block} proto bird" in before
            for what, body in (("/local", {"blocks": ["not-a-cidr"]}),
                               ("/local", {"blocks": [block, "not-a-cidr"], "affine": [block]}),
                               ("/config", {"peers": [], "pools": [{"name": "p", "cidr": "banana"}]}),
                               ("/config", {"peers": "none"}),
                               ("/teardown", {"peer": 5})):
                status = await asyncio.to_thread(_as_user, 0, host, port, "POST", what, {**json_ct, **auth},
                                                 json.dumps(body).encode())
                assert status == 400, (what, body, status)
            status = await asyncio.to_thread(_as_user, 0, host, port, "POST", "/local", {**json_ct, **auth}, b"{bl")
            assert status == 400
            assert await table(h, "node1") == before
            conv = await h.converge(10, since=time.time())
            assert conv.converged and conv.sessions_up == conv.sessions_expected, "peers still have node1's block"
            assert [s["state"] for s in (await h.fabric.get("node1", "/status"))["sessions"]] == ["up", "up"]


# -- 9. --keep-running is watched ------------------------------------------------------------------------------------


async def test_keep_running_reports_a_node_stopped_and_a_session_flapped(tmp_path, capsys):
    from meshsim.run.runner import run_scenario, summary

    path, _ = _scenario(tmp_path, "watched", 3, "192.168.31.0/24")
    out = tmp_path / "out"
    made: list[WorkerFabric] = []

    def factory(cluster: Cluster) -> WorkerFabric:
        made.append(WorkerFabric(cluster))
        return made[-1]

    said: list[str] = []
    async with asyncio.timeout(180):
        task = asyncio.create_task(run_scenario([path], out=out, keep_running=True, progress=False, timeout=60,
                                                fabric_factory=factory))
        try:
            while "keep running until Ctrl-C" not in "".join(said):
                said.append(capsys.readouterr().err)
                assert not task.done(), task.result()
                await asyncio.sleep(0.1)
            f = made[0]
            await f.post("node1", "/teardown", {"peer": "node2"})  # the session drops and comes back: a flap
            await f.post("node3", "/stop", {})  # BGP stopped on node3 (Cease to its peers)
            snaps = f.sink.snapshots  # type: ignore[union-attr]
            while snaps["node3"]["bgp_running"] or snaps["node1"]["counters"]["totals"]["flaps"] < 1:
                await asyncio.sleep(0.1)
        finally:
            task.cancel()  # Ctrl-C
            result = await task
    after = result.extra["after_converged"]
    assert after["converged"] is False and after["flaps"] >= 1, after
    assert "node node3: BGP stopped" in after["changes"], after
    assert result.converged is False and result.interrupted
    text = summary(result)
    assert "NOT converged any more" in text and "node node3: BGP stopped" in text
    md = (out / "report.md").read_text()
    assert "## After converging (kept running)" in md and "- node node3: BGP stopped" in md


# -- 10. SIGINT ignored; Ctrl-C twice -------------------------------------------------------------------------------


@pytest.mark.parametrize("interrupts", [1, 2])
def test_a_run_started_with_sigint_ignored_stops_on_kill_int_and_keeps_its_report(tmp_path, interrupts):
    path, addresses = _scenario(tmp_path, "sigint", 3, "192.168.27.0/24")
    mark = f"sigint-{interrupts}-{os.getpid()}"
    out = tmp_path / "out"
    proc = _kept_run(path, out, mark, sigint_ignored=True)
    try:
        _wait_established(proc, "127.168.27.10", 2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        if interrupts == 2:  # Ctrl-C twice, quickly: the second lands in the cleanup
            time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        _stop(proc)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is True and len(report["nodes"]) == 3
    assert (out / "report.md").exists()
    _nothing_left(mark, addresses)


# -- 11. a busy machine -------------------------------------------------------------------------------------------


def test_a_start_up_on_a_machine_kept_busy_by_two_cpu_hogs_succeeds(tmp_path):
    """The issue's probe: an 80-node mesh with two CPU hogs on the box. No deadline here: the run's own outcome
    (its convergence timeout is the user's, set far out) decides."""
    path, addresses = _scenario(tmp_path, "busy", 80, "192.168.40.0/24")
    mark = f"busy-{os.getpid()}"
    hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(2)]
    try:
        r = subprocess.run([*MESHSIM, "run", str(path), "--out", str(tmp_path / "out"), "--timeout", "3600"],
                           capture_output=True, text=True, env=marked_env(mark), cwd=ROOT)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["converged"] and report["cold_start"]["sessions_established"] == 80 * 79
    _nothing_left(mark, addresses)


# -- 12. external peers ---------------------------------------------------------------------------------------------

TOR = """---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 192.0.2.1, asNumber: 65001}
"""


def test_meshsim_run_refuses_an_external_peer_on_loopback(tmp_path):
    path, addresses = _scenario(tmp_path, "torrun", 2, "192.168.28.0/24")
    path.write_text(path.read_text() + TOR)
    mark = f"torrun-{os.getpid()}"
    r = subprocess.run([*MESHSIM, "run", str(path)], capture_output=True, text=True, env=marked_env(mark), cwd=ROOT,
                       timeout=120)
    assert r.returncode == 2
    assert "meshsim never connects to an address it did not create" in r.stderr and "192.0.2.1" in r.stderr
    _nothing_left(mark, addresses)


async def test_the_library_dials_an_external_peer_at_its_127_address_never_the_manifests(tmp_path):
    """Harness (what compare and a test's own code use) on loopback: the ToR's sessions go to a 127.x address of
    its own, where a test's BGP speaker listens (here: a bare listener that reads the node's OPEN)."""
    path, _ = _scenario(tmp_path, "torlib", 2, "192.168.29.0/24")
    path.write_text(path.read_text() + TOR)
    cluster = Cluster.build(load_scenario([path]))
    fabric = WorkerFabric(cluster)
    peers = {p.name: p for p in fabric.configs()["node1"].peers}
    tor = next(p for p in peers.values() if p.peer_node is None)
    assert tor.address == "192.0.2.1" and tor.session_address.startswith("127.")
    node_addresses = {c.session_address for c in fabric.configs().values()}
    assert tor.session_address not in node_addresses
    opened: asyncio.Queue = asyncio.Queue()

    async def speaker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(4096)
        await opened.put((writer.get_extra_info("peername")[0], data))
        writer.close()

    server = await asyncio.start_server(speaker, tor.session_address, tor.port)
    try:
        async with asyncio.timeout(120):
            async with Harness(cluster, fabric) as h:
                source, data = await opened.get()
                assert source in node_addresses and data[:16] == b"\xff" * 16 and data[18] == 1, data[:20]
                status = await h.fabric.get("node1", "/status")
                assert any(s["peer"] == "192.0.2.1" for s in status["sessions"]), "shown as Calico shows it"
    finally:
        server.close()
