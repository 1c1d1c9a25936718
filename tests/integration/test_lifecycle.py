"""The run lifecycle on real nodes (`meshsim up`, `inspect`, `down`; `status`, `routes --live`, `show` through
the run's state record): two runs up at once in different 127.x ranges, a node of another run refused, a
stale record (runner killed) reported and cleaned, Ctrl-C during `up`, `run --keep-running` stopped by
`down`, netns runs (root). Every test ends with no process, namespace or record left.

Each test gets its own runtime directory (XDG_RUNTIME_DIR) so it never sees another helper's runs. Addresses:
192.168.201.0/24 and 192.168.202.0/24 (HTTP on 127.168.201.x / 127.168.202.x), used by no other test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest

from meshsim.agent.http import request
from meshsim.model.generate import cluster_yaml
from tests.integration.helpers import ctrl_c_when

ROOT = Path(__file__).resolve().parents[2]
A_NET, B_NET = "192.168.201.0/24", "192.168.202.0/24"


class Cli:
    """`meshsim` in a subprocess, with a runtime directory of its own."""

    def __init__(self, tmp: Path) -> None:
        self.xdg = tmp / "xdg"
        self.xdg.mkdir(mode=0o700)
        self.dir = self.xdg / "meshsim"
        self.env = {**os.environ, "XDG_RUNTIME_DIR": str(self.xdg), "PYTHONPATH": str(ROOT)}
        self.env.pop("MESHSIM_RUNTIME_DIR", None)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "meshsim", *args]

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env, cwd=ROOT,
                              timeout=timeout)

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env, cwd=ROOT, **kw)

    def record(self, name: str) -> dict[str, Any]:
        return json.loads((self.dir / f"{name}.json").read_text())

    def inspect(self) -> list[dict[str, Any]]:
        res = self("inspect", "-o", "json")
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)["runs"]

    def down_all(self) -> None:
        if self.dir.is_dir() and any(self.dir.glob("*.json")):
            self("down", "--all")


@pytest.fixture
def cli(tmp_path: Path):
    c = Cli(tmp_path)
    try:
        yield c
    finally:
        c.down_all()  # whatever a failed test left up


def scenario(tmp: Path, name: str, subnet: str, nodes: int = 3, events: str = "") -> Path:
    text = cluster_yaml(name, nodes, subnet=subnet)
    if events:  # the Scenario document is the last one; its spec is the last mapping
        assert text.rstrip().endswith("keepaliveTime: 3s}"), text
        text += f"  events:\n{events}"
    path = tmp / f"{name}.yaml"
    path.write_text(text)
    return path


def alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] not in "ZX"


def processes_of(rec: dict[str, Any]) -> list[int]:
    return [p["pid"] for p in [rec["runner"], *rec["workers"]] if p]


def answers(http: str) -> bool:
    try:
        with urlopen(f"http://{http}/status", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def wait_gone(pids: list[int], seconds: float = 15) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def namespaces() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


def test_two_runs_up_inspect_status_and_down(cli: Cli, tmp_path: Path) -> None:
    a, b = scenario(tmp_path, "lc-a", A_NET, 4), scenario(tmp_path, "lc-b", B_NET, 3)
    ups = [cli.popen("up", str(a)), cli.popen("up", str(b), "--name", "bee", "--workers", "1")]  # both at once
    outs = [p.communicate(timeout=180) for p in ups]
    for p, (out, err) in zip(ups, outs):
        assert p.returncode == 0, out + err
    out_a, err_a = outs[0]
    assert out_a.startswith("scenario lc-a: 4 nodes, 6 BGP sessions; 12/12 Established")
    assert "run lc-a is up (id " in out_a and "`meshsim down lc-a` stops it" in out_a
    assert "meshsim: starting run lc-a: 4 nodes (local)" in err_a

    # the records: private, complete, one per run, different addresses
    assert stat.S_IMODE(cli.dir.stat().st_mode) == 0o700
    assert sorted(p.name for p in cli.dir.glob("*.json")) == ["bee.json", "lc-a.json"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in cli.dir.iterdir()} == {0o600}
    ra, rb = cli.record("lc-a"), cli.record("bee")
    assert ra["run_id"] != rb["run_id"] and ra["token"] != rb["token"] and len(ra["token"]) >= 32
    assert ra["mode"] == "local" and ra["state"] == "up" and ra["files"] == [str(a.resolve())]
    assert ra["nodes"]["node1"] == {"http": "127.168.201.10:9179", "bgp": "127.168.201.10:179", "namespace": None,
                                    "worker": ra["nodes"]["node1"]["worker"], "container": None}
    assert {e["http"] for e in rb["nodes"].values()} == {f"127.168.202.{i}:9179" for i in (10, 11, 12)}
    assert all(alive(p) for p in processes_of(ra) + processes_of(rb))
    assert {w["pid"] for w in ra["workers"]} == {e["worker"] for e in ra["nodes"].values()}
    assert len(rb["workers"]) == 1 and {e["worker"] for e in rb["nodes"].values()} == {rb["workers"][0]["pid"]}

    # inspect: both runs, and the nodes of one
    runs = {r["name"]: r for r in cli.inspect()}
    assert sorted(runs) == ["bee", "lc-a"] and all("token" not in r for r in runs.values())
    assert runs["lc-a"]["health"]["sessions_up"] == 12 and runs["lc-a"]["health"]["converged"] is True
    assert runs["bee"]["health"]["sessions_expected"] == 6
    res = cli("inspect")
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines()[1:]}
    assert rows["lc-a"][2:4] == ["local", "up"] and rows["lc-a"][5:] == ["4", "12/12", "yes"]
    assert rows["bee"][5:] == ["3", "6/6", "yes"]
    res = cli("inspect", "bee")
    assert res.returncode == 0 and "sessions 6/6 Established, 3/3 nodes equal their expected table" in res.stdout
    assert res.stdout.splitlines()[-1].split()[:3] == ["node3", "127.168.202.12:9179", "127.168.202.12:179"]

    # status, routes --live, show: by --run, by scenario file; never a guess between two runs
    res = cli("status", "--node", "node1")
    assert res.returncode == 2 and "2 emulations are up (" in res.stderr  # (in the order they started)
    assert "; name one to ask: --run RUN" in res.stderr and "lc-a" in res.stderr and "bee" in res.stderr
    res = cli("status", "--run", "bee", "--node", "node1")
    assert res.returncode == 0 and "| 192.168.202.11 | node-to-node mesh | up    |" in res.stdout
    assert "192.168.201." not in res.stdout
    res = cli("status", str(a), "--node", "node2")
    assert res.returncode == 0 and res.stdout.count("Established") == 3 and "192.168.201.10" in res.stdout
    res = cli("routes", "--live", "--run", "lc-a", "--node", "node1")
    expected = cli("routes", str(a), "--node", "node1")
    assert res.returncode == 0 and res.stdout == expected.stdout
    res = cli("show", "node2", "protocols", "--run", "bee")
    assert res.returncode == 0 and "Mesh_192_168_202_10 BGP      master   up" in res.stdout
    res = cli("status", "--run", "bee", "--node", "node1", "-o", "json")
    assert json.loads(res.stdout)["run_id"] == rb["run_id"]
    res = cli("peers", "--graph", str(tmp_path / "bee.dot"), "--live", "--run", "bee")
    assert res.returncode == 0 and (tmp_path / "bee.dot").read_text().count(" color=\"#2ca02c\"") == 3  # 3 up

    # the record's token is the run's: a POST without it is refused, with it accepted (409: wrong run_id,
    # so nothing happens)
    import asyncio

    status, _ = asyncio.run(request("127.168.201.10", 9179, "POST", "/shutdown", {"run_id": "x"}))
    assert status == 401
    status, body = asyncio.run(request("127.168.201.10", 9179, "POST", "/shutdown", {"run_id": "x"},
                                       token=ra["token"]))
    assert status == 409 and ra["run_id"] in body["error"]

    # down: one run only, gracefully; the other keeps running
    res = cli("down")
    assert res.returncode == 2 and "2 runs are recorded (" in res.stderr
    res = cli("down", "lc-a")
    assert res.returncode == 0 and res.stdout.startswith(f"run lc-a (id {ra['run_id']}) stopped: 4 nodes (local), "
                                                         "every node stopped gracefully")
    assert not wait_gone(processes_of(ra)) and not (cli.dir / "lc-a.json").exists()
    assert not (cli.dir / "lc-a.log").exists() and not Path(ra["workdir"]).exists()
    assert not any(answers(e["http"]) for e in ra["nodes"].values())
    assert all(alive(p) for p in processes_of(rb)) and answers(rb["nodes"]["node1"]["http"])
    assert [r["name"] for r in cli.inspect()] == ["bee"]
    res = cli("status", "--node", "node1")  # the only run left: no --run needed
    assert res.returncode == 0 and "192.168.202.11" in res.stdout
    res = cli("down")
    assert res.returncode == 0 and "run bee" in res.stdout
    assert not wait_gone(processes_of(rb)) and list(cli.dir.iterdir()) == []
    assert cli("inspect").stdout == "no emulation is up (`meshsim up SCENARIO` starts one)\n"


def test_status_refuses_a_node_of_another_run(cli: Cli, tmp_path: Path) -> None:
    a = scenario(tmp_path, "lc-a", A_NET, 3)
    assert cli("up", str(a)).returncode == 0
    real = cli.record("lc-a")
    # a run whose record names the same addresses (a run that went down and whose addresses another run took
    # meanwhile): its runner is alive (a stand-in), its run id is not the nodes'
    stand_in = subprocess.Popen(["sleep", "120"])
    try:
        from meshsim.run.records import ProcessRef

        ghost = {**real, "name": "ghost", "run_id": "0123456789ab", "token": "not-the-token", "log": None,
                 "workers": [], "workdir": None,
                 "runner": {"pid": stand_in.pid, "start": ProcessRef.of(stand_in.pid).start}}
        fd = os.open(cli.dir / "ghost.json", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(ghost, f)
        message = (f"node1 at 127.168.201.10:9179 belongs to run lc-a (id {real['run_id']}), not ghost "
                   "(id 0123456789ab)")
        for argv in (("status", "--run", "ghost", "--node", "node1"),
                     ("routes", "--live", "--run", "ghost", "--node", "node1"),
                     ("show", "node1", "protocols", "--run", "ghost"),
                     ("status", "--run", "ghost", "--node", "node1", "-o", "yaml")):
            res = cli(*argv)
            assert res.returncode == 2 and res.stdout == "", argv
            assert message in res.stderr, (argv, res.stderr)
        # `down ghost` must not stop lc-a's nodes, which answer with another run id
        res = cli("down", "ghost")
        assert res.returncode == 0, res.stderr
        assert stand_in.wait(timeout=10) is not None  # the stand-in "runner" got SIGTERM
        assert all(answers(e["http"]) for e in real["nodes"].values())
        assert cli("status", "--node", "node1").returncode == 0
    finally:
        if stand_in.poll() is None:
            stand_in.kill()
            stand_in.wait()
    assert cli("down", "lc-a").returncode == 0
    assert not wait_gone(processes_of(real))


def test_a_stale_record_is_reported_and_cleaned(cli: Cli, tmp_path: Path) -> None:
    a = scenario(tmp_path, "lc-a", A_NET, 3)
    assert cli("up", str(a)).returncode == 0
    rec = cli.record("lc-a")
    os.kill(rec["runner"]["pid"], signal.SIGKILL)  # the runner dies without cleaning up
    assert not wait_gone(processes_of(rec)), "workers outlived their runner (PR_SET_PDEATHSIG)"
    runs = cli.inspect()
    assert [(r["name"], r["state"]) for r in runs] == [("lc-a", "stale")]
    res = cli("inspect", "lc-a")
    assert "STALE: its runner is gone; it left nothing else: `meshsim down lc-a` cleans up" in res.stdout
    assert cli("inspect").stdout.splitlines()[1].split()[3] == "stale"
    res = cli("status", "--run", "lc-a", "--node", "node1")
    assert res.returncode == 2 and "run lc-a is not running (its runner, pid" in res.stderr
    res = cli("status", "--node", "node1")
    assert res.returncode == 2 and "no emulation is up" in res.stderr and "stale records: lc-a" in res.stderr
    # the addresses are free again: a new run of the same scenario comes up beside the stale record
    res = cli("up", str(a))
    assert res.returncode == 0 and "run lc-a-2 is up (id" in res.stdout, res.stderr
    res = cli("down", "lc-a")
    assert res.returncode == 0 and res.stdout.startswith(f"run lc-a (id {rec['run_id']}) was stale (its runner is "
                                                         "gone): record removed; cleaned up 1 temp dirs")
    assert not Path(rec["workdir"]).exists() and not (cli.dir / "lc-a.log").exists()
    second = cli.record("lc-a-2")
    assert answers(second["nodes"]["node1"]["http"])  # cleaning the stale run left the live one alone
    assert cli("down").returncode == 0
    assert not wait_gone(processes_of(second)) and list(cli.dir.iterdir()) == []


def test_ctrl_c_during_up_brings_the_run_down(cli: Cli, tmp_path: Path) -> None:
    # a timeline that keeps `up` waiting while every node runs
    a = scenario(tmp_path, "lc-a", A_NET, 3, events="  - {action: sleep, duration: 60s}\n")
    # as `meshsim up S &` from a script starts it: SIGINT inherited as ignored; Ctrl-C must still bring the run down
    proc = cli.popen("up", str(a), start_new_session=True,
                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    rec: dict[str, Any] = {}

    def up() -> bool:
        nonlocal rec
        try:
            rec = cli.record("lc-a")
        except (OSError, ValueError):
            rec = {}
        return bool(rec.get("workers")) and answers("127.168.201.12:9179")

    # Ctrl-C reaches the terminal's process group: `up`, not the runner
    out, err = ctrl_c_when(proc, up, within=90)
    assert rec["state"] == "starting"  # read while up was still in its timeline
    assert proc.returncode == 130, err
    assert "meshsim: interrupted; run lc-a is down, nothing is left running" in err and "Traceback" not in err
    assert not wait_gone(processes_of(rec))
    assert list(cli.dir.iterdir()) == []
    assert not answers("127.168.201.10:9179") and not Path(rec["workdir"]).exists()


def test_up_that_does_not_converge_stays_up_and_run_keep_running_is_stopped_by_down(cli: Cli, tmp_path: Path) -> None:
    a = scenario(tmp_path, "lc-a", A_NET, 3)
    res = cli("up", str(a), "--timeout", "0.2", "--name", "slow")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "NOT converged: " in res.stdout and "nodes differ from their expected table" in res.stdout
    assert "run slow did NOT converge within 0.2 s; it is left up for inspection" in res.stderr
    rec = cli.record("slow")
    assert all(alive(p) for p in processes_of(rec))
    deadline = time.monotonic() + 30  # it goes on converging; the record follows
    while time.monotonic() < deadline and not cli.record("slow")["health"].get("converged"):
        time.sleep(0.3)
    assert cli.record("slow")["health"]["converged"]
    assert cli("down", "slow").returncode == 0
    assert not wait_gone(processes_of(rec))

    # meshsim run --keep-running (in the foreground) registers the same way; down stops it
    proc = cli.popen("run", str(a), "--keep-running", "--name", "fg")
    try:
        def up() -> bool:
            return (cli.dir / "fg.json").exists() and cli.record("fg")["state"] == "up"

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not up():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        fg = cli.record("fg")
        assert fg["log"] is None and fg["runner"]["pid"] == proc.pid
        assert cli("status", "--node", "node3").returncode == 0
        res = cli("down")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert res.returncode == 0 and "every node stopped gracefully" in res.stdout
    assert proc.returncode == 130 and "interrupted" in out, err
    assert not wait_gone(processes_of(fg)) and list(cli.dir.iterdir()) == []


NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="netns needs root and iproute2")


@NEEDS_ROOT
def test_netns_run_up_down_and_stale(cli: Cli, tmp_path: Path) -> None:
    a = scenario(tmp_path, "lc-n", A_NET, 3)
    before = namespaces()
    res = cli("up", str(a), "--isolation", "netns")
    assert res.returncode == 0, res.stdout + res.stderr
    rec = cli.record("lc-n")
    made = namespaces() - before
    assert rec["mode"] == "netns" and set(rec["namespaces"]) == made and len(made) == 4  # fabric + 3 nodes
    assert rec["nodes"]["node1"]["bgp"] == "192.168.201.10:179"
    assert rec["nodes"]["node1"]["namespace"] in made
    res = cli("inspect", "lc-n")
    header = next(line for line in res.stdout.splitlines() if line.startswith("NODE"))
    assert header.split()[:4] == ["NODE", "HTTP", "BGP", "NAMESPACE"] and rec["nodes"]["node2"]["namespace"] in res.stdout
    res = cli("status", "--node", "node2")
    assert res.returncode == 0 and res.stdout.count("Established") == 2
    res = cli("routes", "--live", "--node", "node1")
    assert res.returncode == 0 and "192.168.201.11 dev tunl0 proto bird onlink" in res.stdout
    res = cli("down")
    assert res.returncode == 0 and "every node stopped gracefully" in res.stdout
    assert not wait_gone(processes_of(rec)) and not (namespaces() & made)

    # stale: the runner killed, its namespaces stay until `down` removes them
    assert cli("up", str(a), "--isolation", "netns").returncode == 0
    rec = cli.record("lc-n")
    made = set(rec["namespaces"])
    os.kill(rec["runner"]["pid"], signal.SIGKILL)
    assert not wait_gone(processes_of(rec))
    assert made <= namespaces()
    res = cli("inspect", "lc-n")
    assert "STALE: its runner is gone; it left 4 namespaces" in res.stdout
    res = cli("down", "lc-n")
    assert res.returncode == 0 and "cleaned up 4 namespaces" in res.stdout
    assert not (namespaces() & made) and list(cli.dir.iterdir()) == []

    # Ctrl-C while `up` waits (in its timeline): the namespaces go with the run
    b = scenario(tmp_path, "lc-m", A_NET, 3, events="  - {action: sleep, duration: 60s}\n")
    proc = cli.popen("up", str(b), "--isolation", "netns", start_new_session=True)
    rec = {}

    def up() -> bool:
        nonlocal rec
        if not answers("127.168.201.12:9179"):
            return False
        rec = cli.record("lc-m")
        assert rec["namespaces"] and set(rec["namespaces"]) <= namespaces()
        return True

    out, err = ctrl_c_when(proc, up, within=90)
    made = set(rec["namespaces"])
    assert proc.returncode == 130 and "run lc-m is down, nothing is left running" in err
    assert not wait_gone(processes_of(rec)) and not (namespaces() & made) and list(cli.dir.iterdir()) == []
