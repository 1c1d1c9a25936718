"""meshsim's pytest plugin (entry point `pytest11: meshsim`, with `pip install 'meshsim[pytest]'`).

Owns the `meshsim_cluster` fixture: a factory that starts emulations inside a test and tears every one of them
down at the end of it, whatever happened,

    async def test_failover(meshsim_cluster):
        emu = await meshsim_cluster("cluster.yaml", workers=2)   # the options of meshsim.emulate()
        await emu.kill_node("node2", mode="sigkill")

and, when a test that used it fails, a report section per emulation with every running node's table (actual and
expected), `calicoctl node status` and the tail of its log (the failure output shows it).

Options: `--meshsim-out DIR` writes every emulation's report under DIR/<test>/<n>; `--meshsim-keep` keeps the
clusters of the first failing test up as runs of the run lifecycle (meshsim/run/records.py: `meshsim inspect`,
`status --run`, `show --run`, `down`), with this pytest process as their runner (meshsim/run/keeper.py,
`Registration`): the session waits there until `meshsim down RUN` (SIGTERM to the runner) or Ctrl-C, then brings
them down and stops, as `-x` would (`down` waits for its runner to exit, so the session cannot go on).

Inert unless pytest-asyncio is importable: pytest loads this module in every project of an environment where
meshsim is installed, so it imports nothing of meshsim at load time and registers no fixture without
pytest-asyncio; it never fails another project's test session.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from meshsim.api import Emulation

pytest_asyncio: Any
try:
    import pytest_asyncio
except Exception:  # missing, or broken: stay inert
    pytest_asyncio = None

EMULATIONS = pytest.StashKey[list["Emulation"]]()
FAILED = pytest.StashKey[bool]()
SECTION_LINES = 40  # log lines per node in a failure report


def _get(host: str, port: int, path: str, timeout: float = 5.0) -> Any:
    """A blocking GET to a node's API (the event loop is idle between a test's phases). http.client, not
    urllib: no proxy from the environment is ever used for a 127.x address."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        body = reply.read().decode(errors="replace")
    finally:
        conn.close()
    if reply.status != 200:
        raise OSError(f"GET {path} answered {reply.status}: {body[:200]}")
    return json.loads(body) if reply.getheader("Content-Type", "").startswith("application/json") else body


def describe(emu: "Emulation") -> str:
    """Every running node of `emu`: actual and expected table, `calicoctl node status`, log tail."""
    try:
        running = emu.running
    except Exception as exc:  # not running any more
        return f"(emulation not running: {exc})"
    out = []
    for node in running:
        out.append(f"=== {node}")
        try:
            host, port = emu.http_address(node)
            actual = str(_get(host, port, "/routes?format=ip")).splitlines()
            expected = emu.expected_routes(node)
            if actual == expected:
                out.append("routes: equal to the expected table")
            else:
                out.append("routes: DIFFER from the expected table")
                out += [f"  missing: {line}" for line in expected if line not in actual]
                out += [f"  extra:   {line}" for line in actual if line not in expected]
            out += ["actual table (ip route):"] + [f"  {line}" for line in actual]
            status = _get(host, port, "/status")
            out.append(str(status.get("text", status) if isinstance(status, dict) else status).rstrip())
        except Exception as exc:
            out.append(f"(node did not answer: {exc})")
        try:
            out.append("log tail:\n" + emu.log_tail(node, SECTION_LINES).replace(" | ", "\n"))
        except Exception as exc:
            out.append(f"(no log: {exc})")
    return "\n".join(out)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("meshsim", "meshsim emulated Calico clusters")
    group.addoption("--meshsim-out", default=None, metavar="DIR",
                    help="write every meshsim_cluster emulation's report (report.json, tables, logs) under "
                         "DIR/<test name>/<n>")
    group.addoption("--meshsim-keep", action="store_true", default=False,
                    help="keep the clusters of the first failing test up as runs for `meshsim inspect`, `status "
                         "--run`, `show --run`; the session waits until `meshsim down RUN` or Ctrl-C, then stops")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not report.failed:
        return
    item.stash[FAILED] = True
    made: list[Emulation] = item.stash.get(EMULATIONS, [])
    for i, emu in enumerate(made):
        try:
            text = describe(emu)
        except Exception as exc:  # a report hook must never fail the session
            text = f"(could not describe the emulation: {exc})"
        report.sections.append((f"meshsim emulation {i}: node tables, status and logs", text))


def _out_dir(request: pytest.FixtureRequest, index: int) -> Path | None:
    root = request.config.getoption("--meshsim-out", default=None)
    if not root:
        return None
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.name)[:120]
    return Path(root) / name / str(index)


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def meshsim_cluster(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Awaitable["Emulation"]]]:
        """A factory: `emu = await meshsim_cluster("cluster.yaml", workers=2)` starts an emulation
        (meshsim.emulate's options) and returns it once its cold start has converged. Every emulation it made is
        torn down at the end of the test; a failing test's report gets their node tables and logs."""
        from meshsim.api import emulate

        made: list[Emulation] = []
        request.node.stash[EMULATIONS] = made

        async def factory(*scenario_files: str | Path, **options: Any) -> "Emulation":
            if "out" not in options:
                options["out"] = _out_dir(request, len(made))
            emu = emulate(*scenario_files, **options)
            made.append(emu)
            await emu.start()
            return emu

        kept: list[Any] = []
        try:
            yield factory
        finally:
            errors: list[BaseException] = []
            live = [emu for emu in made if emu.is_running]
            if live and request.node.stash.get(FAILED, False) and request.config.getoption("--meshsim-keep"):
                try:
                    kept = await keep_up(request, live)
                except Exception as exc:  # the clusters still come down below
                    errors.append(exc)
            for emu in reversed(made):
                try:
                    await emu.close()
                except Exception as exc:
                    errors.append(exc)
            for registration in kept:
                registration.close()  # the record goes once its processes are gone
            if errors:
                raise errors[0]


async def keep_up(request: pytest.FixtureRequest, live: list["Emulation"]) -> list[Any]:
    """--meshsim-keep: register each running emulation of a failed test as a run (the run lifecycle's record, this
    process its runner), keep the records' health true, and wait for `meshsim down` (SIGTERM) or Ctrl-C. Returns
    the registrations, to close once the emulations are down; asks the session to stop."""
    import asyncio
    import contextlib
    import signal

    from meshsim.run.keeper import Registration

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    capture = request.config.pluginmanager.getplugin("capturemanager")
    registrations: list[Any] = []
    keepers: list[asyncio.Task[None]] = []
    handled: list[signal.Signals] = []
    try:
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            for emu in live:
                registration = Registration(emu.files, emu.scenario)
                registration.claim()
                registrations.append(registration)
                harness = emu._harness

                def running_fabric(_cluster: Any, fabric: Any = harness.fabric) -> Any:
                    return fabric  # the record takes the run id, token, addresses and workers from it

                registration.factory(running_fabric)(harness.cluster)
                keepers.append(asyncio.create_task(registration.keeper(harness, emu._result)))
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
                handled.append(sig)
            names = ", ".join(r.record.name for r in registrations)
            print(f"\nmeshsim: {request.node.nodeid} failed; --meshsim-keep keeps its cluster(s) up as run(s) {names} "
                  f"(meshsim inspect {registrations[0].record.name}). `meshsim down RUN` or Ctrl-C brings them down "
                  "and ends this session.", flush=True)
            await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        for task in keepers:
            task.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        request.session.shouldfail = "meshsim: the clusters kept up by --meshsim-keep were brought down"
    return registrations
