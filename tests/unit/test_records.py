"""Run state records (meshsim/run/records.py) and what reads them without a cluster: the runtime directory's
mode and owner, 0600 records written atomically, name reservation, stale runners (pid reuse included), which
run a command means, `inspect` of a stale run without its token, `down` of a stale run, and the identity
check of `status` against a fake node that answers for another run (ephemeral port on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from meshsim.cli import main
from meshsim.errors import NotFoundError, RunError
from meshsim.run import records
from meshsim.run.records import NodeEntry, ProcessRef, RecordError, RunRecord


@pytest.fixture
def rundir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MESHSIM_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir(mode=0o700)
    return tmp_path / "xdg" / "meshsim"


def record(name: str = "lab", *, runner: ProcessRef | None = None, run_id: str = "a1b2c3d4e5f6",
           files: list[str] | None = None, nodes: dict[str, NodeEntry] | None = None) -> RunRecord:
    return RunRecord(name=name, run_id=run_id, token="tok-" + name, mode="local", state="up", scenario=name,
                     files=files or [f"/scenarios/{name}.yaml"], started_at=time.time() - 75,
                     runner=runner if runner is not None else ProcessRef.of(os.getpid()),
                     nodes=nodes or {"node1": NodeEntry(http="127.0.0.9:9179", bgp="127.0.0.9:179")})


def dead_process() -> ProcessRef:
    proc = subprocess.Popen(["true"])
    ref = ProcessRef.of(proc.pid)
    proc.wait()
    return ref


def test_runtime_dir_is_private_and_follows_xdg(rundir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert records.runtime_dir() == rundir
    assert stat.S_IMODE(rundir.stat().st_mode) == 0o700
    os.chmod(rundir, 0o755)  # ours but opened by hand: closed again before a token goes in
    records.runtime_dir()
    assert stat.S_IMODE(rundir.stat().st_mode) == 0o700
    monkeypatch.setenv("MESHSIM_RUNTIME_DIR", str(tmp_path / "mounted"))
    assert records.runtime_dir() == tmp_path / "mounted"
    monkeypatch.delenv("MESHSIM_RUNTIME_DIR")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    expected = Path("/run/meshsim") if os.geteuid() == 0 else Path(f"/tmp/meshsim-{os.geteuid()}")
    assert records.runtime_dir(create=False) == expected


def test_runtime_dir_refuses_a_link_or_another_users_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "xdg").mkdir()
    (tmp_path / "xdg" / "meshsim").symlink_to(tmp_path / "elsewhere")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    with pytest.raises(RecordError, match="is not a directory"):
        records.runtime_dir()
    if os.geteuid() != 0:
        pytest.skip("handing a directory to another user needs root")
    (tmp_path / "xdg" / "meshsim").unlink()
    (tmp_path / "xdg" / "meshsim").mkdir(mode=0o700)
    os.chown(tmp_path / "xdg" / "meshsim", 65534, 65534)
    with pytest.raises(RecordError, match="belongs to uid 65534, not to you"):
        records.runtime_dir()


def test_a_record_is_written_0600_atomically_and_reads_back(rundir: Path) -> None:
    rec = record()
    path = records.write(rec)
    assert path == rundir / "lab.json" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in rundir.iterdir()] == ["lab.json"]  # no temp file left behind
    back = records.read("lab")
    assert back == rec and back.token == "tok-lab"
    rec.state = "stopping"
    records.write(rec)
    assert records.read("lab").state == "stopping"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_names_follow_the_dns_label_rule(rundir: Path) -> None:
    for bad in ("", "../etc", "Lab", "lab_1", "-lab", "x" * 64):
        with pytest.raises(RecordError, match="run name"):
            records.check_name(bad)
    assert records.default_name("Mesh vs RR (2x6)") == "mesh-vs-rr-2x6"
    assert records.default_name("___") == "run"


def test_reserve_takes_a_free_default_name_and_refuses_a_taken_explicit_one(rundir: Path) -> None:
    records.reserve(record("lab"), explicit=False)
    second = records.reserve(record("lab"), explicit=False)
    assert second.name == "lab-2" and (rundir / "lab-2.json").exists()
    with pytest.raises(RecordError, match="a run named lab is up"):
        records.reserve(record("lab"), explicit=True)
    records.write(record("old", runner=dead_process()))
    with pytest.raises(RecordError, match="a run named old left a stale record"):
        records.reserve(record("old"), explicit=True)


def test_a_runner_is_alive_only_with_its_own_start_time() -> None:
    me = ProcessRef.of(os.getpid())
    assert me.alive()
    assert not ProcessRef(os.getpid(), (me.start or 0) + 1).alive()  # the pid, reused by another process
    assert not dead_process().alive()
    assert not ProcessRef(2 ** 22 + 7, 1).alive()


def test_pick_chooses_the_run_a_command_means(rundir: Path) -> None:
    with pytest.raises(RunError, match="no emulation is up: `meshsim up SCENARIO` starts one"):
        records.pick(None)
    records.write(record("a", files=["/s/a.yaml"]))
    assert records.pick(None).name == "a"
    records.write(record("b", files=["/s/b.yaml"]))
    records.write(record("gone", runner=dead_process(), files=["/s/a.yaml"]))
    with pytest.raises(RunError, match=r"2 emulations are up \(a, b\); name one to ask: --run RUN"):
        records.pick(None, verb="ask")
    assert records.pick(None, files=["/s/b.yaml"]).name == "b"
    with pytest.raises(RunError, match=r"no running emulation of /s/c.yaml.*stale records: gone"):
        records.pick(None, files=["/s/c.yaml"])
    with pytest.raises(RunError, match=r"run gone is not running \(its runner, pid \d+, is gone\): `meshsim down gone`"):
        records.pick("gone")
    with pytest.raises(NotFoundError, match="no run named 'nope'; known: a, b, gone"):
        records.pick("nope")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_inspect_lists_runs_marks_stale_ones_and_never_prints_the_token(rundir: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = cli(capsys, "inspect")
    assert rc == 0 and out == "no emulation is up (`meshsim up SCENARIO` starts one)\n"
    live = record("a")
    live.health = {"converged": True, "sessions_up": 2, "sessions_expected": 2, "nodes_converged": 1,
                   "nodes_expected": 1, "updated_at": time.time(), "dead": {},
                   "nodes": {"node1": {"state": "running", "sessions_up": 2, "sessions_expected": 2, "routes": 5,
                                       "converged": True}}}
    records.write(live)
    records.write(record("b", runner=dead_process(), run_id="0f0f0f0f0f0f"))
    rc, out, _ = cli(capsys, "inspect")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ID", "MODE", "STATE", "AGE", "NODES", "SESSIONS", "CONVERGED"]
    assert lines[1].split() == ["a", "a1b2c3d4e5f6", "local", "up", "1m15s", "1", "2/2", "yes"]
    assert lines[2].split() == ["b", "0f0f0f0f0f0f", "local", "stale", "1m15s", "1", "-", "-"]
    rc, out, _ = cli(capsys, "inspect", "a")
    assert "sessions 2/2 Established, 1/1 nodes equal their expected table (converged" in out
    assert out.splitlines()[-1].split() == ["node1", "127.0.0.9:9179", "127.0.0.9:179", "-", "running", "2/2", "5",
                                            "yes"]
    rc, out, _ = cli(capsys, "inspect", "b")
    assert "STALE: its runner is gone; it left nothing else: `meshsim down b` cleans up" in out
    for argv in (("inspect", "-o", "json"), ("inspect", "a", "-o", "json"), ("inspect", "-o", "yaml")):
        rc, out, _ = cli(capsys, *argv)
        assert rc == 0 and "tok-" not in out
    data = json.loads(cli(capsys, "inspect", "-o", "json")[1])
    assert [(r["name"], r["state"]) for r in data["runs"]] == [("a", "up"), ("b", "stale")]
    assert data["runs"][1]["left_behind"] == {"worker processes": 0}


def test_down_cleans_a_stale_run_and_refuses_to_guess(rundir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli(capsys, "down")
    assert rc == 2 and "no emulation is up" in err
    # a stale run whose "worker" (its own session, as workers are) outlived the runner
    worker = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        stale = record("s", runner=dead_process())
        stale.workers = [ProcessRef.of(worker.pid)]
        records.write(stale)
        records.write(record("t", runner=dead_process(), run_id="bbbbbbbbbbbb"))
        rc, _, err = cli(capsys, "down")
        assert rc == 2 and "2 runs are recorded (s (stale), t (stale)); name one: `meshsim down RUN` (or --all)" in err
        rc, out, _ = cli(capsys, "down", "s")
        assert rc == 0 and out.startswith("run s (id a1b2c3d4e5f6) was stale (its runner is gone): record removed; "
                                          "cleaned up 1 worker processes")
        assert worker.wait(timeout=10) == -signal.SIGKILL
        assert not (rundir / "s.json").exists()
        (rundir / "broken.json").write_text("{not json")
        rc, out, _ = cli(capsys, "inspect")
        assert "unreadable record: broken (`meshsim down broken` removes it)" in out
        rc, out, _ = cli(capsys, "down", "--all")
        assert rc == 0 and "removed the unreadable record of run broken" in out
        assert sorted(p.name for p in rundir.iterdir()) == []
        rc, _, err = cli(capsys, "down", "nope")
        assert rc == 2 and "no run named 'nope'" in err
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_status_needs_a_run_and_routes_needs_a_file(rundir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli(capsys, "status", "--node", "node1")
    assert rc == 2 and "no emulation is up: `meshsim up SCENARIO` starts one" in err
    rc, _, err = cli(capsys, "routes", "--node", "node1")
    assert rc == 2 and "meshsim routes needs the scenario FILE(s) (or --live --node NAME" in err
    records.write(record("a"))
    rc, _, err = cli(capsys, "status", "--node", "node9")
    assert rc == 2 and "no node in run a named 'node9'; known: node1" in err


class FakeNode:
    """A node API on 127.0.0.1 (ephemeral port) answering GET /status and /routes as `name` of run `run_id`."""

    def __init__(self, name: str, run_id: str) -> None:
        self.name, self.run_id = name, run_id
        self.shutdowns = []

    shutdowns: list[Any]

    async def handler(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        who = {"name": self.name, "run_id": self.run_id}
        if (method, path) == ("POST", "/shutdown"):  # (serve() has checked the token)
            self.shutdowns.append(body)
            self.run_id = "gone"  # as good as not answering for this run any more
            return 200, {"ok": True}
        if path == "/status":
            return 200, {**who, "text": f"status of {self.name}\n", "sessions": []}
        if path == "/routes":
            return 200, {**who, "ip": "default via 192.168.0.1 dev eth0 \n", "route_n": "Kernel IP routing table\n"}
        return 404, {"error": "no"}

    def __enter__(self) -> "FakeNode":
        from meshsim.agent.http import serve

        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def start() -> None:
            self.server = await serve("127.0.0.1", 0, self.handler, token="t")
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_status_refuses_a_node_of_another_run(rundir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeNode("node1", "bbbbbbbbbbbb") as fake:
        where = f"127.0.0.1:{fake.port}"
        records.write(record("mine", nodes={"node1": NodeEntry(http=where, bgp="127.0.0.1:179")}))
        records.write(record("theirs", run_id="bbbbbbbbbbbb", nodes={"node1": NodeEntry(http="127.0.0.2:1",
                                                                                         bgp="127.0.0.2:179")}))
        for argv in (("status", "--run", "mine", "--node", "node1"),
                     ("routes", "--live", "--run", "mine", "--node", "node1"),
                     ("status", "--run", "mine", "--node", "node1", "-o", "json")):
            rc, out, err = cli(capsys, *argv)
            assert rc == 2 and out == ""
            assert f"node1 at {where} belongs to run theirs (id bbbbbbbbbbbb), not mine (id a1b2c3d4e5f6)" in err
        fake.run_id = "a1b2c3d4e5f6"
        rc, out, _ = cli(capsys, "status", "--run", "mine", "--node", "node1")
        assert rc == 0 and out == "status of node1\n"
        rc, out, _ = cli(capsys, "routes", "--live", "--run", "mine", "--node", "node1")
        assert rc == 0 and out == "default via 192.168.0.1 dev eth0 \n"
        fake.name = "node2"
        rc, _, err = cli(capsys, "status", "--run", "mine", "--node", "node1")
        assert rc == 2 and f"the node answering at {where} is 'node2', not 'node1' (run mine)" in err
        fake.run_id = ""
        rc, _, err = cli(capsys, "status", "--run", "mine", "--node", "node1")
        assert rc == 2 and "belongs to no run (a node started by hand), not mine" in err


def test_a_run_without_a_local_runner_lives_while_its_nodes_answer(rundir: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Compose: the controller runs in a container and writes the record into a mounted runtime directory
    (MESHSIM_RUNTIME_DIR); no pid of this machine's keeps the run, its nodes do."""
    with FakeNode("node1", "cccccccccccc") as fake:
        where = f"127.0.0.1:{fake.port}"
        rec = record("lab", run_id="cccccccccccc", nodes={"node1": NodeEntry(http=where, bgp="10.0.0.1:179",
                                                                             container="lab-node1-1")})
        rec.runner, rec.mode, rec.token = None, "compose", "t"
        records.write(rec)
        assert records.read("lab").alive()
        rc, out, _ = cli(capsys, "status", "--node", "node1")
        assert rc == 0 and out == "status of node1\n"
        rc, out, _ = cli(capsys, "inspect")
        assert out.splitlines()[1].split()[:4] == ["lab", "cccccccccccc", "compose", "up"]
        rc, out, _ = cli(capsys, "down")
        assert rc == 0 and out == ("run lab (id cccccccccccc, compose): 1 of 1 nodes shut down (POST /shutdown); "
                                   "record removed; `docker compose down` removes the containers\n")
        assert fake.shutdowns == [{"run_id": "cccccccccccc"}] and not (rundir / "lab.json").exists()
        records.write(rec)  # its nodes now answer for no run of this record's: stale
        assert not records.read("lab").alive()
        rc, out, _ = cli(capsys, "inspect")
        assert out.splitlines()[1].split()[3] == "stale"


def test_up_refuses_before_starting_anything(rundir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Bad input, a bad name, a dataplane that needs netns, or addresses a live run holds: one clear error, no
    runner started, no record left."""
    lab = str(Path(__file__).resolve().parents[2] / "scenarios" / "three-node-ipip.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: nope}\n")
    rc, _, err = cli(capsys, "up", str(bad))
    assert rc == 2 and str(bad) in err and "cidr" in err
    rc, _, err = cli(capsys, "up", lab, "--name", "Lab_1")
    assert rc == 2 and "run name 'Lab_1' has characters or a shape a run name cannot have" in err
    rc, _, err = cli(capsys, "up", lab, "--dataplane", "kernel")
    assert rc == 2 and "--dataplane kernel needs --isolation netns" in err
    records.write(record("other", nodes={"node9": NodeEntry(http="127.168.0.82:9179", bgp="127.168.0.82:179")}))
    rc, _, err = cli(capsys, "up", lab)
    assert rc == 2 and ("run other (id a1b2c3d4e5f6) already holds 127.168.0.82:9179, where this scenario's node2 "
                        "would answer: `meshsim down other` stops it") in err
    assert sorted(p.name for p in rundir.iterdir()) == ["other.json"]
