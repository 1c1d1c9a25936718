"""The few Docker Engine API calls the compose controller makes, over the unix socket mounted into it.

Owns `DockerSocket`: find a compose service's container in our own compose project (by the labels compose
puts on it), pause / unpause it (kill-node mode crash, start-node), read its state, and read its output
(the node's log, for the report). Plain HTTP/1.0 over the socket, one request per connection, no client
library: the controller image stays as small as the node image. Used only when the socket is mounted
(/var/run/docker.sock, or $MESHSIM_DOCKER_SOCKET); the project is $MESHSIM_COMPOSE_PROJECT, else read from
the labels of our own container (its id is our hostname).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from typing import Any
from urllib.parse import quote

from meshsim.errors import RunError

DOCKER_SOCKET = "/var/run/docker.sock"


class DockerSocket:
    """The Engine API calls kill-node needs (pause, unpause, inspect, logs), over the unix socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._ids: dict[str, str] = {}
        self.project: str | None = os.environ.get("MESHSIM_COMPOSE_PROJECT")

    @classmethod
    def find(cls) -> "DockerSocket | None":
        path = os.environ.get("MESHSIM_DOCKER_SOCKET", DOCKER_SOCKET)
        return cls(path) if path and os.path.exists(path) else None

    def _exchange(self, request: bytes, timeout: float) -> bytes:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.path)
            s.sendall(request)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        finally:
            s.close()
        return b"".join(chunks)

    def _call(self, method: str, path: str, timeout: float = 20.0) -> tuple[int, Any]:
        raw = self._exchange(f"{method} {path} HTTP/1.0\r\nHost: docker\r\nContent-Length: 0\r\n\r\n".encode(), timeout)
        head, _, body = raw.partition(b"\r\n\r\n")
        try:
            status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise RunError(f"the Docker socket {self.path} answered {head[:80]!r}, not HTTP") from None
        try:
            return status, json.loads(body) if body.strip() else None
        except ValueError:
            return status, body.decode(errors="replace")

    async def call(self, method: str, path: str) -> tuple[int, Any]:
        return await asyncio.to_thread(self._call, method, path)

    def container(self, service: str) -> str:
        """The id of the compose service's container in our own compose project (sync; cached)."""
        if service in self._ids:
            return self._ids[service]
        if self.project is None:  # our own container's project (the hostname is our container id)
            status, me = self._call("GET", f"/containers/{socket.gethostname()}/json")
            if status == 200 and isinstance(me, dict):
                self.project = (me.get("Config", {}).get("Labels") or {}).get("com.docker.compose.project")
        labels = [f"com.docker.compose.service={service}"]
        if self.project:
            labels.append(f"com.docker.compose.project={self.project}")
        flt = quote(json.dumps({"label": labels}, separators=(",", ":")))
        status, found = self._call("GET", f"/containers/json?all=1&filters={flt}")
        if status != 200 or not found:
            raise RunError(f"no container for service {service} (project {self.project}) through the Docker socket")
        self._ids[service] = found[0]["Id"]
        return self._ids[service]

    async def do(self, service: str, action: str) -> None:
        """POST /containers/ID/<action>: pause, unpause."""
        cid = await asyncio.to_thread(self.container, service)
        status, payload = await self.call("POST", f"/containers/{cid}/{action}")
        if status not in (204, 304):
            raise RunError(f"docker {action} answered {status}: {payload}", node=service)

    async def state(self, service: str) -> dict[str, Any]:
        cid = await asyncio.to_thread(self.container, service)
        status, payload = await self.call("GET", f"/containers/{cid}/json")
        return payload.get("State", {}) if status == 200 and isinstance(payload, dict) else {}

    def logs(self, service: str) -> bytes:
        """The container's output (stdout and stderr, demultiplexed)."""
        cid = self.container(service)
        raw = self._exchange(f"GET /containers/{cid}/logs?stdout=1&stderr=1 HTTP/1.0\r\nHost: docker\r\n\r\n".encode(),
                             20.0)
        return demultiplex(raw.partition(b"\r\n\r\n")[2])


def demultiplex(body: bytes) -> bytes:
    """A container's multiplexed output stream (no TTY): frames of an 8-byte header (stream, 3 zero bytes,
    big-endian length) and the payload; the payloads in order."""
    out, i = [], 0
    while i + 8 <= len(body):
        size = struct.unpack(">I", body[i + 4:i + 8])[0]
        out.append(body[i + 8:i + 8 + size])
        i += 8 + size
    return b"".join(out)
