"""BIRD's BGP session timers as Calico configures them, and BIRD's timer jitter.

Owns `SessionTimers` (every timer one session runs, with the values Calico's `bird.cfg.template`
renders into `template bgp bgp_template` and BIRD's own defaults for the rest) and `jittered()`,
BIRD's `bgp_start_timer()` randomisation. Pure: the random source is passed in.

Calico v3.28 `bird.cfg.template`, `template bgp bgp_template`:
    graceful restart; connect delay time 2; connect retry time 5; error wait time 5,30;
BIRD defaults for what Calico leaves unset (BIRD user guide, "BGP" protocol options; proto/bgp/config.Y):
    hold time 240, keepalive time = hold / 3, startup hold time 240, error forget time 300,
    graceful restart time 120; the global `graceful restart wait` (with `bird -R`) 240.
Also how long BIRD takes to reload its configuration (`bird_reload_time`), which confd makes it do whenever the
node's blocks change.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

BIRD_HOLD_TIME = 240.0
BIRD_STARTUP_HOLD_TIME = 240.0
BIRD_ERROR_FORGET_TIME = 300.0
BIRD_GRACEFUL_RESTART_TIME = 120
BIRD_GRACEFUL_RESTART_WAIT = 240.0
CALICO_CONNECT_DELAY = 2.0
CALICO_CONNECT_RETRY = 5.0
CALICO_ERROR_WAIT = (5.0, 30.0)
BIRD_RELOAD_BASE = 0.0094
BIRD_RELOAD_PER_PROTOCOL = 0.000885


def bird_reload_time(protocols: int) -> float:
    """Seconds BIRD takes to reload its configuration with `protocols` BGP protocols in it. confd re-renders
    bird.cfg when the node's own blocks change (bird_aggr.cfg's static routes) and BIRD reconfigures: it parses
    the whole file and compares every protocol before the new routes exist, blocked for the while. Fitted (least
    squares) on BIRD 2.0.12 here, two runs of benchmarks/bird_reload.py (medians of 7 each): 2 peers 6-8 ms,
    49 peers 54-55 ms, 99 peers 103-104 ms, 199 peers 178-186 ms; the fit is within 8 ms of each. A mesh node
    pays it per peer, a client of two reflectors almost nothing: one reason a new block reaches a large mesh
    later than a reflected cluster."""
    return BIRD_RELOAD_BASE + BIRD_RELOAD_PER_PROTOCOL * max(0, protocols)


BIRD_SHUTDOWN_STEP = 0.00034


def bird_shutdown_offsets(protocols: int) -> list[float]:
    """When, after a graceful stop begins, BIRD sends the Cease of its k-th BGP protocol (k = 0..protocols-1): it
    shuts its protocols down one after the other. Captured on BIRD 2.0.12 here (`disable "Mesh_*"` on a node of a
    50-node mesh, packet capture on the bridge): 49 NOTIFICATIONs from 4.0 to 20.3 ms, one every 0.34 ms; a
    client of two reflectors sends both within the same 0.1 ms. A mesh node's stop reaches its last peer later."""
    return [k * BIRD_SHUTDOWN_STEP for k in range(max(0, protocols))]


@dataclass(frozen=True)
class SessionTimers:
    """Every timer of one BGP session, in seconds."""

    hold_time: float = BIRD_HOLD_TIME
    """What we offer in OPEN; the session uses the smaller of both offers (RFC 4271 §4.2)."""
    keepalive_time: float | None = None
    """None: a third of the negotiated hold time (BIRD's default, RFC 4271 §10)."""
    connect_delay: float = CALICO_CONNECT_DELAY
    """From protocol start (or a failed attempt) to the next outgoing connection (BIRD `connect delay time`)."""
    connect_retry: float = CALICO_CONNECT_RETRY
    """How long an outgoing connection may stay unanswered before it is retried (`connect retry time`)."""
    error_wait_min: float = CALICO_ERROR_WAIT[0]
    error_wait_max: float = CALICO_ERROR_WAIT[1]
    """After an error the protocol waits this long before it starts again, doubling up to the max
    (`error wait time MIN,MAX`)."""
    error_forget: float = BIRD_ERROR_FORGET_TIME
    """An error this long after the previous one starts the wait from MIN again (`error forget time`)."""
    startup_hold: float = BIRD_STARTUP_HOLD_TIME
    """The hold timer while waiting for the peer's OPEN (`startup hold time`)."""
    graceful_restart: bool = True
    """Calico renders `graceful restart;` (RFC 4724): advertise the capability and keep a restarting
    peer's routes as stale."""
    restart_time: int = BIRD_GRACEFUL_RESTART_TIME
    """What we advertise as our Restart Time (`graceful restart time`; Calico: nodeMeshMaxRestartTime /
    BGPPeer maxRestartTime). The *peer's* advertised time bounds how long we keep its stale routes."""

    def __post_init__(self) -> None:
        if not 0 <= self.restart_time <= 4095:
            raise ValueError(f"graceful restart time must be 0..4095 s (12 bits, RFC 4724 §3), got {self.restart_time}")
        if self.hold_time and self.hold_time < 3:
            raise ValueError(f"hold time must be 0 or at least 3 s (RFC 4271 §4.2), got {self.hold_time}")

    def with_hold(self, hold: float, keepalive: float | None = None) -> "SessionTimers":
        return replace(self, hold_time=hold, keepalive_time=keepalive)


def jittered(value: float, rng: random.Random) -> float:
    """BIRD `bgp_start_timer()`: "The randomization procedure is specified in RFC 4271 section 10":
    the timer runs for `value` minus a random part of up to a quarter of it."""
    if value <= 0:
        return 0.0
    return value - rng.random() * value / 4.0
