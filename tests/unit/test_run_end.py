"""How a run ends (issue 12, items 1, 9 and 10), on a fabric without processes (tests/unit/fakefabric.py): `--out`
is checked before anything starts; report.json is written before the nodes are stopped and survives a second
Ctrl-C; a second Ctrl-C during close() kills at once instead of abandoning the cleanup; a full disk loses only what
does not fit and is reported; a start that fails is reported as not converged; what --keep-running saw after
converging is in the summary and report.md."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from meshsim.errors import RunError
from meshsim.model.cluster import Cluster
from meshsim.run import runner
from meshsim.run.runner import prepare_out, run_scenario, summary
from tests.conftest import fill, node_doc, pool_doc, scenario_doc, tmpfs
from tests.unit.fakefabric import FakeFabric


@pytest.fixture(autouse=True)
def _logs_to_this_tests_stderr() -> None:
    """meshsim.logs binds the stderr of the moment; an earlier test's (captured, since closed) must not be it."""
    from meshsim.logs import configure

    configure("warning")


@pytest.fixture
def scenario(write_yaml) -> Path:
    return write_yaml(pool_doc(), node_doc("node1", "192.168.0.1/24"), node_doc("node2", "192.168.0.2/24"),
                      node_doc("node3", "192.168.0.3/24"), scenario_doc())


def _fabric(**kw):
    made: list[FakeFabric] = []

    def factory(cluster: Cluster) -> FakeFabric:
        made.append(FakeFabric(cluster, **kw))
        return made[-1]

    return factory, made


async def _until(cond, what: str) -> None:
    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


# -- --out (item 1) ----------------------------------------------------------------------------------------------


def test_an_out_that_is_a_file_fails_before_anything_starts(scenario, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    factory, made = _fabric()
    with pytest.raises(RunError, match=r"--out .*afile: exists and is not a directory"):
        asyncio.run(run_scenario([scenario], out=afile, progress=False, fabric_factory=factory))
    assert not made, "no fabric was even made"
    with pytest.raises(RunError, match="cannot write there"):
        prepare_out(afile / "run")


def test_an_out_on_a_read_only_mount_or_a_full_disk_fails_before_anything_starts(scenario, tmp_path):
    factory, made = _fabric()
    with tmpfs(tmp_path / "ro", ro=True) as ro:
        with pytest.raises(RunError, match=r"--out .*ro/run: cannot write there \(Read-only file system\); "
                                           "nothing was started"):
            asyncio.run(run_scenario([scenario], out=ro / "run", progress=False, fabric_factory=factory))
    with tmpfs(tmp_path / "full") as full:
        fill(full)
        with pytest.raises(RunError, match=r"No space left on device"):
            asyncio.run(run_scenario([scenario], out=full / "run", progress=False, fabric_factory=factory))
    assert not made


def test_a_full_disk_while_writing_loses_only_what_does_not_fit_and_says_so(scenario, tmp_path):
    with tmpfs(tmp_path / "small", size="64k") as small:
        factory, made = _fabric(out=small / "run", log_bytes=200_000)  # the logs do not fit; report.json does
        result = asyncio.run(run_scenario([scenario], out=small / "run", progress=False, fabric_factory=factory))
        report = json.loads((small / "run" / "report.json").read_text())
        assert report["converged"] is True and set(report["nodes"]) == {"node1", "node2", "node3"}
        assert (small / "run" / "routes" / "node1.ip").read_text() == made[0].tables["node1"]
    assert result.error and "could not write the report" in result.error and "No space left on device" in result.error
    calls = made[0].calls
    assert "closed" in calls and calls[-1] == "remove_files", calls


def test_report_json_is_written_before_close_and_the_rest_after(scenario, tmp_path):
    out = tmp_path / "run"
    factory, made = _fabric(out=out)
    result = asyncio.run(run_scenario([scenario], out=out, progress=False, fabric_factory=factory))
    assert result.converged and result.error is None
    calls = made[0].calls
    assert "close (report.json written: True)" in calls
    assert calls.index("closed") < calls.index("collect_logs") < calls.index("remove_files"), calls
    for f in ("report.json", "report.md", "routes/node2.ip", "status/node3.txt", "logs/node1.log"):
        assert (out / f).exists(), f


# -- Ctrl-C, twice (item 10) -----------------------------------------------------------------------------------


def test_two_quick_ctrl_cs_keep_report_json(scenario, tmp_path):
    """The second Ctrl-C lands while the last state is being measured: report.json is still written, with what
    the nodes had pushed, and every process is stopped."""
    out = tmp_path / "run"
    factory, made = _fabric(out=out, converge=False, hang_gets=True, close_delay=0.2)

    async def go() -> runner.RunResult:
        task = asyncio.create_task(run_scenario([scenario], out=out, timeout=3600, progress=False,
                                                fabric_factory=factory))
        await _until(lambda: made and len(made[0].running()) == 3, "the nodes run")
        task.cancel()  # Ctrl-C
        await _until(lambda: any(c.startswith("get ") for c in made[0].calls), "the last state is asked for")
        task.cancel()  # Ctrl-C again, while the nodes are being asked
        return await task

    result = asyncio.run(go())
    report = json.loads((out / "report.json").read_text())
    assert result.interrupted and report["interrupted"] is True
    assert report["cold_start"]["converged"] is False and report["nodes"]["node1"]["answered"] is True
    calls = made[0].calls
    assert "close (report.json written: True)" in calls and "closed" in calls and calls[-1] == "remove_files"
    assert (out / "report.md").exists()


def test_ctrl_c_during_close_kills_at_once_and_the_cleanup_still_finishes(scenario, tmp_path):
    out = tmp_path / "run"
    factory, made = _fabric(out=out, close_delay=3600)  # a close() that would take an hour

    async def go() -> runner.RunResult:
        task = asyncio.create_task(run_scenario([scenario], out=out, timeout=3600, keep_running=True,
                                                progress=False, fabric_factory=factory))
        await _until(lambda: made and "close (report.json written: True)" not in made[0].calls
                     and len(made[0].running()) == 3, "the nodes run")
        await asyncio.sleep(0.05)
        task.cancel()
        await _until(lambda: any(c.startswith("close") for c in made[0].calls), "close() started")
        task.cancel()
        return await asyncio.wait_for(task, 30)

    result = asyncio.run(go())
    calls = made[0].calls
    assert calls.index("kill_all_now") < calls.index("closed") < calls.index("remove_files"), calls
    assert result.interrupted and json.loads((out / "report.json").read_text())["interrupted"] is True
    assert (out / "routes" / "node1.ip").exists() and (out / "report.md").exists()


# -- a start that fails (item 2) ------------------------------------------------------------------------------


class _TakenFabric(FakeFabric):
    async def start_node(self, name: str, *, restart: bool = False, hold_bgp: bool = False) -> None:
        if name == "node2":
            raise RunError("start: [Errno 98] Address already in use (binding 127.168.0.2:179 or HTTP 9179)",
                           node=name)
        await super().start_node(name, restart=restart, hold_bgp=hold_bgp)


def test_a_start_that_fails_is_reported_as_not_converged(scenario, tmp_path):
    made: list[FakeFabric] = []

    def factory(cluster: Cluster) -> FakeFabric:
        made.append(_TakenFabric(cluster))
        return made[-1]

    result = asyncio.run(run_scenario([scenario], out=tmp_path / "run", progress=False, fabric_factory=factory))
    assert "Address already in use" in (result.error or "")
    assert result.converged is False and result.cold["converged"] is False
    assert result.cold["nodes_not_running"] == ["node2", "node3"]
    text = summary(result)
    assert "NOT converged: 2 of 3 nodes never ran (node2, node3)" in text and "Address already in use" in text
    assert "Nodes that never ran: node2, node3" in (tmp_path / "run" / "report.md").read_text()


# -- --keep-running is watched (item 9) ---------------------------------------------------------------------------


def test_keep_running_reports_what_changed_after_converging(scenario, tmp_path, capsys):
    out = tmp_path / "run"
    factory, made = _fabric(out=out)
    said: list[str] = []

    async def go() -> runner.RunResult:
        task = asyncio.create_task(run_scenario([scenario], out=out, timeout=3600, keep_running=True,
                                                progress=False, fabric_factory=factory))

        def kept() -> bool:
            said.append(capsys.readouterr().err)
            return "keep running until Ctrl-C" in "".join(said)

        await _until(kept, "the run is kept up")
        f = made[0]
        assert f.sink is not None
        stopped = f.summary("node3")  # POST /stop on node3: BGP stopped, its sessions down
        stopped["bgp_running"] = False
        stopped["sessions"] = {p: ["start", None, 0, 0] for p in stopped["sessions"]}
        f.sink.record("node3", stopped)
        flapped = f.summary("node1")  # node1's sessions went down and came back twice
        flapped["counters"]["totals"]["flaps"] = 2
        f.sink.record("node1", flapped)
        await asyncio.sleep(0.05)
        task.cancel()
        return await task

    result = asyncio.run(go())
    after = result.extra["after_converged"]
    assert after["converged"] is False and after["flaps"] == 2 and after["sessions_up"] < after["sessions_expected"]
    assert "node node3: BGP stopped" in after["changes"] and "sessions flapped on node1 (2x)" in after["changes"]
    assert result.converged is False
    text = summary(result)
    assert "NOT converged any more" in text and "node node3: BGP stopped" in text and "2 session flaps" in text
    md = (out / "report.md").read_text()
    assert "## After converging (kept running)" in md and "- node node3: BGP stopped" in md
    assert json.loads((out / "report.json").read_text())["after_converged"]["flaps"] == 2


def test_keep_running_that_saw_nothing_change_says_still_converged(scenario, tmp_path, capsys):
    factory, made = _fabric()
    said: list[str] = []

    async def go() -> runner.RunResult:
        task = asyncio.create_task(run_scenario([scenario], timeout=3600, keep_running=True, progress=False,
                                                fabric_factory=factory))

        def kept() -> bool:
            said.append(capsys.readouterr().err)
            return "keep running until Ctrl-C" in "".join(said)

        await _until(kept, "the run is kept up")
        task.cancel()
        return await task

    result = asyncio.run(go())
    assert result.extra["after_converged"]["converged"] is True and result.converged is True
    assert "still converged: 6/6 sessions Established, 0 session flaps, 3/3 nodes running" in summary(result)


def test_a_keeper_that_knows_only_the_flap_total_gets_the_same_watch(scenario, tmp_path):
    """`meshsim up`'s keeper (meshsim/run/keeper.py) passes note_after_converged the flap total it saw when it
    began; a node stopped and sessions that flapped afterwards make the run not converged, as with --keep-running."""
    from meshsim.report.metrics import totals

    factory, made = _fabric()
    began = asyncio.Event()

    async def keeper(h, result) -> None:
        seen = totals(h.observer.snapshots)["flaps"]
        began.set()
        try:
            await asyncio.Event().wait()
        finally:
            runner.note_after_converged(h, result, seen)

    async def go() -> runner.RunResult:
        task = asyncio.create_task(run_scenario([scenario], timeout=3600, progress=False, fabric_factory=factory,
                                                keeper=keeper))
        await asyncio.wait_for(began.wait(), 30)
        f = made[0]
        stopped = f.summary("node3")
        stopped["bgp_running"] = False
        stopped["sessions"] = {p: ["start", None, 0, 0] for p in stopped["sessions"]}
        f.sink.record("node3", stopped)
        flapped = f.summary("node1")
        flapped["counters"]["totals"]["flaps"] = 3
        f.sink.record("node1", flapped)
        await asyncio.sleep(0.05)
        task.cancel()
        return await task

    result = asyncio.run(go())
    after = result.extra["after_converged"]
    assert after["converged"] is False and after["flaps"] == 3 and result.converged is False
    assert "node node3: BGP stopped" in after["changes"] and "sessions flapped 3x" in after["changes"]
    assert "seconds" not in after
    assert "kept running after converging: at the end NOT converged any more" in summary(result)
