"""The live progress line of a run: one line rewritten on a terminal, a line every 2 s otherwise."""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from meshsim.report.metrics import Convergence

Show = Callable[[Convergence, float], None]


def _printer(stream: TextIO, width: int) -> Callable[[str], None]:
    tty = stream.isatty()
    last = [0.0]

    def put(line: str) -> None:
        if tty:
            stream.write("\r" + line[:width].ljust(width))
            stream.flush()
        elif time.monotonic() - last[0] >= 2.0:
            last[0] = time.monotonic()
            stream.write(line + "\n")
            stream.flush()

    return put


def cold_progress(stream: TextIO = sys.stderr) -> tuple[Show, Callable[[], None]]:
    put = _printer(stream, 78)

    def show(conv: Convergence, elapsed: float) -> None:
        put(f"[{elapsed:6.1f}s] sessions {conv.sessions_up}/{conv.sessions_expected} Established, "
            f"tables {conv.nodes_converged}/{conv.nodes} converged")

    def done() -> None:
        if stream.isatty():
            stream.write("\n")
            stream.flush()

    return show, done


def event_progress(i: int, total: int, what: str, stream: TextIO = sys.stderr) -> Show:
    put = _printer(stream, 110)

    def show(conv: Convergence, elapsed: float) -> None:
        width = 20
        filled = int(width * (i + (conv.nodes_converged / max(1, conv.nodes))) / max(1, total))
        bar = "#" * filled + "." * (width - filled)
        put(f"[{bar}] event {i + 1}/{total} {what}: {elapsed:5.1f}s, {conv.nodes_converged}/{conv.nodes} nodes converged")

    return show
