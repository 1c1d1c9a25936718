"""What the public API hands back: event records, external-peer endpoints, and its errors.

Owns `EventRecord` (one measured event: the very dict `report.json` holds under `events`, with typed accessors),
`PeerEndpoint` (where a test's own BGP speaker meets a node for an external BGPPeer the scenario declares, and a
helper that opens that TCP connection in the right network namespace), and the API's errors: `EmulationError`
(an action could not be performed) and `NotConverged` (the cold start, an event or `wait_converged` did not reach
the expected tables in time; it names the nodes that differ and how).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

from meshsim.errors import MeshsimError, clipped


class EventRecord(dict[str, Any]):
    """One measured event, exactly as a timeline event of `meshsim run` records it (`report.json` `events[i]`).

    It is a dict (JSON-ready, every field of the timeline's record under the same key); the properties below
    type the fields tests use most. Times are seconds. Keys present on every waited-for event: index, action,
    event, label, at_s, converged, timed_out, timeout_s, convergence_s, per_node_s {min,p50,p95,max}, per_node,
    updates_sent, updates_received, withdrawals_sent, withdrawals_received, flaps, update_messages_sent,
    update_messages_received, routes_changed, sessions_established, sessions_lost, sessions_up,
    sessions_expected, cpu_seconds, peak_rss_bytes, blackouts, not_converged, nodes_differing; `stale` after a
    SIGKILL with graceful restart; `detail` for add/remove-workloads and apply; `error` when it failed;
    `waited: False` when not waited for.
    """

    @property
    def event(self) -> str:
        """What happened, as the report says it: "kill-node node2 (sigkill)"."""
        return str(self["event"])

    @property
    def action(self) -> str:
        return str(self["action"])

    @property
    def converged(self) -> bool:
        """Every running node's table equals its new expected table (False also when not waited for)."""
        return bool(self.get("converged", False))

    @property
    def convergence_s(self) -> float | None:
        """From the event to the last running node's table equal to its expected table; None if it did not."""
        return self.get("convergence_s")

    @property
    def per_node(self) -> dict[str, float]:
        """Per running node: seconds from the event to its table reaching the expected one."""
        return dict(self.get("per_node", {}))

    @property
    def update_messages_received(self) -> int:
        return int(self.get("update_messages_received", 0))

    @property
    def update_messages_sent(self) -> int:
        return int(self.get("update_messages_sent", 0))

    @property
    def routes_changed(self) -> int:
        return int(self.get("routes_changed", 0))

    @property
    def sessions_established(self) -> int:
        return int(self.get("sessions_established", 0))

    @property
    def sessions_lost(self) -> int:
        return int(self.get("sessions_lost", 0))

    @property
    def blackouts(self) -> list[dict[str, Any]]:
        """Routes a node should have kept through the event but lost for a while: {node, route, seconds}."""
        return list(self.get("blackouts", []))

    @property
    def stale(self) -> dict[str, Any] | None:
        """A SIGKILL's second phase (graceful restart, RFC 4724): restart_time_s, and once measured (by
        `Emulation.wait_converged`) kept_s, per_node_kept_s, flush_convergence_s."""
        return self.get("stale")

    @property
    def not_converged(self) -> dict[str, dict[str, list[str]]]:
        """Nodes that differ from their expected table: {node: {"missing": [lines], "extra": [lines]}}."""
        return dict(self.get("not_converged", {}))


@dataclass(frozen=True)
class PeerEndpoint:
    """Where a test's own BGP speaker meets `node` for an external BGPPeer (peerIP, asNumber) of the scenario.

    Bind `local_address` and connect to `node_address`:`node_port` (the node accepts a session from that address
    only), or listen on `local_address`:`local_port` (the node dials it too, as BIRD does). Speak as AS
    `peer_as` with router ID `peer_router_id` (the declared peerIP); the node is AS `node_as`, router ID
    `node_router_id`, and sends next hops in its declared address. On loopback (the default isolation) both
    addresses are 127.x, mapped from the declared ones the way meshsim maps node addresses; with
    `isolation="netns"` they are the declared addresses and the speaker must run in namespace `netns` (for a
    daemon: `command("gobgpd", ...)`; for Python sockets: `open_connection()`).
    """

    node: str
    node_address: str
    node_port: int
    node_as: int
    node_router_id: str
    local_address: str
    local_port: int
    peer_as: int
    peer_router_id: str
    netns: str | None = None
    hold_time: int = 90
    password: str | None = field(default=None, repr=False)

    def command(self, *argv: str) -> list[str]:
        """`argv` run where the speaker must run: `ip netns exec NS argv...` in netns mode, else `argv` itself."""
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)

    def socket(self) -> socket.socket:
        """A non-blocking TCP socket made in the speaker's namespace, bound to `local_address` (port chosen by the
        kernel), with the BGPPeer's TCP-MD5 password (RFC 2385) set if it declares one."""
        from ipaddress import IPv4Address

        from meshsim.agent.netctx import NetContext

        net = NetContext(self.netns)
        sock = net.tcp_socket()
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            NetContext.set_password(sock, IPv4Address(self.node_address), self.password)
            sock.bind((self.local_address, 0))
        except OSError:
            sock.close()
            raise
        return sock

    async def open_connection(self, timeout: float = 10.0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to the node's BGP from `local_address` (in `netns`); the streams to speak BGP on."""
        loop = asyncio.get_running_loop()
        sock = self.socket()
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (self.node_address, self.node_port)), timeout)
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)


class EmulationError(MeshsimError):
    """An emulation could not do what was asked (the event failed, the node is not running, ...). `record`: the
    event's record when there is one (it is also in `Emulation.report()`)."""

    def __init__(self, message: str, record: EventRecord | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.record = record

    def __str__(self) -> str:
        return self.message


class NotConverged(EmulationError):
    """The cold start, an event or `wait_converged` did not converge within its timeout. `not_converged`: how each
    differing node's table differs, {node: {"missing": [...], "extra": [...]}} (`ip route` lines)."""

    def __init__(self, what: str, timeout: float, figures: dict[str, Any], record: EventRecord | None = None,
                 logs: dict[str, str] | None = None, hint: str | None = None) -> None:
        self.what = what
        self.timeout = timeout
        self.not_converged: dict[str, dict[str, list[str]]] = dict(figures.get("not_converged") or {})
        self.nodes_differing = int(figures.get("nodes_differing") or len(self.not_converged))
        self.sessions_up = figures.get("sessions_up", figures.get("sessions_established"))
        self.sessions_expected = figures.get("sessions_expected")
        self.logs = dict(logs or {})
        self.hint = hint
        super().__init__(self._text(), record)

    def _text(self) -> str:
        text = f"{self.what} did not converge within {self.timeout:g} s"
        if self.nodes_differing:
            text += f": {self.nodes_differing} node(s) differ from their expected tables"
            shown = []
            for node, diff in list(self.not_converged.items())[:5]:
                missing, extra = diff.get("missing", []), diff.get("extra", [])
                shown.append(f"{node} missing {len(missing)} {missing[:2]} extra {len(extra)} {extra[:2]}")
            if shown:
                text += " (" + "; ".join(shown) + (" ..." if len(self.not_converged) > 5 else "") + ")"
        if self.sessions_expected is not None and self.sessions_up != self.sessions_expected:
            text += f"; {self.sessions_up}/{self.sessions_expected} expected BGP sessions Established"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        for node, tail in list(self.logs.items())[:3]:
            text += f"\n  {node} log: {clipped(tail, 300)}"
        return text


__all__ = ["EventRecord", "PeerEndpoint", "EmulationError", "NotConverged"]
