"""meshsim's BIRD control-socket client (meshsim.run.client.birdc, what `meshsim show` uses for an
`implementation: bird` node) prints what the real birdc prints, on a real BIRD 2 daemon (a config with only a
device protocol: no routes, no sessions, nothing leaves the host)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from meshsim.run.client import birdc

BIRD = shutil.which("bird") or "/usr/sbin/bird"
BIRDC = shutil.which("birdc") or "/usr/sbin/birdc"
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not Path(BIRD).exists() or not Path(BIRDC).exists(), reason="BIRD 2 not installed")]


@pytest.fixture
def daemon(tmp_path: Path):
    cfg = tmp_path / "bird.cfg"
    cfg.write_text("router id 192.0.2.1;\nprotocol device { scan time 10; }\n")
    sock = tmp_path / "bird.ctl"
    proc = subprocess.Popen([BIRD, "-f", "-c", str(cfg), "-s", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield sock
    finally:
        proc.terminate()
        proc.wait(10)


def test_socket_client_prints_what_birdc_prints(daemon: Path) -> None:
    for command in ("show protocols", "show status", "show route"):
        banner, reply = birdc(str(daemon), command)
        real = subprocess.run([BIRDC, "-s", str(daemon), *command.split()], capture_output=True, text=True).stdout
        strip = (lambda t: "\n".join(line for line in t.splitlines() if not line.startswith("Current server time")))
        assert strip(banner + "\n" + reply) == strip(real)
    assert banner.startswith("BIRD 2.") and banner.endswith(" ready.")


def test_a_missing_socket_is_a_clear_error(tmp_path: Path) -> None:
    from meshsim.errors import RunError

    with pytest.raises(RunError, match="cannot reach BIRD's control socket"):
        birdc(str(tmp_path / "nope.ctl"), "show status")
