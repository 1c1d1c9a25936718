"""Real TCP for one node's BGP router: its listening socket, its outgoing connections, its faults.

Owns `BgpTransport`, the thin asyncio adapter under `meshsim.bgp.router.Router`: it accepts connections
on the node's own address and BGP port, opens the connections the router asks for (bound to the node's
address, so the peer sees where it comes from), writes what the router sends, closes what it closes,
and reports every TCP event back through `feed(event)`. It decides nothing about BGP.

Faults, per node whatever process hosts it:
- `freeze()`: a host crash. Nothing is read, written or accepted any more and no callback reaches the
  router, but the TCP connections stay open: peers notice by their hold timers. New connection attempts
  queue in the kernel's listen backlog, unanswered, as on a dead host.
- `reset()`: SIGKILL. Every connection is reset (RST, no NOTIFICATION) and the listening socket closed.
"""

from __future__ import annotations

import array
import asyncio
import errno
import fcntl
import os
import socket
import struct
import termios
from collections.abc import Callable
from ipaddress import IPv4Address

from meshsim.agent.netctx import NetContext
from meshsim.bgp import fsm
from meshsim.bgp.router import Incoming

Feed = Callable[[object], None]
LISTEN_BACKLOG = 1024


class _Conn(asyncio.Protocol):
    """One BGP TCP connection; forwards bytes and its end to the owner."""

    __slots__ = ("owner", "conn_id", "transport", "incoming", "peer")

    def __init__(self, owner: "BgpTransport", conn_id: int, incoming: bool, peer: IPv4Address | None = None) -> None:
        self.owner = owner
        self.conn_id = conn_id
        self.transport: asyncio.Transport | None = None
        self.incoming = incoming
        self.peer = peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  (uvloop's transports are not asyncio classes)
        self.owner._made(self)

    def data_received(self, data: bytes) -> None:
        self.owner._feed(fsm.TcpData(self.conn_id, data))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost(self, exc)


def _abandoned(sock: socket.socket) -> bool:
    """An accepted connection whose peer already closed it (EOF or reset waiting, no data before it)."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def _strerror(exc: BaseException | None) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc) if exc else ""


class BgpTransport:
    """The sockets of one node's BGP. `feed` receives TcpConnected/TcpFailed/TcpData/TcpClosed/Incoming."""

    def __init__(self, *, address: IPv4Address, port: int, net: NetContext, feed: Feed, new_conn_id: Callable[[], int],
                 passwords: dict[IPv4Address, str] | None = None) -> None:
        self.address = address
        self.port = port
        self.net = net
        self.feed = feed
        self.new_conn_id = new_conn_id
        self.passwords = dict(passwords or {})
        self.conns: dict[int, _Conn] = {}
        self._out: dict[int, list[bytes]] = {}  # what to write, per connection, at the end of this loop turn
        self._flush_scheduled = False
        self.connecting: dict[int, tuple[asyncio.Task, socket.socket]] = {}
        self.listener: socket.socket | None = None
        self.frozen = False
        self._loop = asyncio.get_running_loop()

    # -- listening -------------------------------------------------------------------------------
    def listen(self) -> None:
        """Bind the node's BGP port on its own address (raises OSError, e.g. address in use)."""
        s = self.net.tcp_socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for peer, password in self.passwords.items():
                self.net.set_password(s, peer, password)
            s.bind((str(self.address), self.port))
            s.listen(LISTEN_BACKLOG)
        except OSError:
            s.close()
            raise
        self.listener = s
        self._loop.add_reader(s.fileno(), self._accept)

    def _accept(self) -> None:
        assert self.listener is not None
        for _ in range(64):
            try:
                sock, (host, _port) = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            if _abandoned(sock):
                # The peer closed this dial before we got to it (it kept its other connection to us):
                # BIRD's accept would see it open and take it for a restarting peer; only its speed keeps
                # that window too small to matter, ours would not. A closed dial is nobody's restart.
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(self, self.new_conn_id(), incoming=True, peer=IPv4Address(host))
            self._loop.create_task(self._wrap(conn, sock))

    async def _wrap(self, conn: _Conn, sock: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(lambda: conn, sock)
        except (OSError, asyncio.CancelledError):
            self._release(conn, sock)

    # -- connecting --------------------------------------------------------------------------------
    def open(self, conn_id: int, address: IPv4Address, port: int) -> None:
        try:
            sock = self.net.tcp_socket()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.net.set_password(sock, address, self.passwords.get(address))
            sock.bind((str(self.address), 0))
        except OSError as exc:
            self._loop.call_soon(self._feed, fsm.TcpFailed(conn_id, _strerror(exc)))
            return
        task = self._loop.create_task(self._connect(conn_id, sock, address, port))
        self.connecting[conn_id] = (task, sock)

    async def _connect(self, conn_id: int, sock: socket.socket, address: IPv4Address, port: int) -> None:
        """Connect, then hand the socket to a transport. Once the transport exists it owns the socket: a
        cancellation that lands just after (the router gave up on the attempt) closes the transport, never
        the socket under it."""
        conn = _Conn(self, conn_id, incoming=False, peer=address)
        try:
            await self._loop.sock_connect(sock, (str(address), port))
            await self._loop.create_connection(lambda: conn, sock=sock)
        except asyncio.CancelledError:
            self._release(conn, sock)
            raise
        except OSError as exc:
            self._release(conn, sock)
            self.connecting.pop(conn_id, None)
            self._feed(fsm.TcpFailed(conn_id, _strerror(exc)))
            return
        self.connecting.pop(conn_id, None)

    @staticmethod
    def _release(conn: _Conn, sock: socket.socket) -> None:
        if conn.transport is not None:
            conn.transport.close()
        else:
            sock.close()

    def _cancel_connect(self, conn_id: int) -> None:
        pending = self.connecting.pop(conn_id, None)
        if pending is None:
            return
        task, sock = pending
        if not task.cancel():
            return
        # a task cancelled before its first step never runs its cleanup: close the socket then
        task.add_done_callback(lambda t: sock.close() if t.cancelled() and sock.fileno() != -1 else None)

    # -- callbacks from connections --------------------------------------------------------------------
    def _made(self, conn: _Conn) -> None:
        self.conns[conn.conn_id] = conn
        if self.frozen:
            assert conn.transport is not None
            conn.transport.pause_reading()
            return
        if conn.incoming:
            assert conn.peer is not None
            self._feed(Incoming(conn.conn_id, conn.peer))
        else:
            self._feed(fsm.TcpConnected(conn.conn_id))

    def _lost(self, conn: _Conn, exc: Exception | None) -> None:
        if self.conns.get(conn.conn_id) is conn:
            del self.conns[conn.conn_id]
            self._feed(fsm.TcpClosed(conn.conn_id, _strerror(exc)))

    def _feed(self, event: object) -> None:
        if not self.frozen:
            self.feed(event)

    # -- what the router asks for ------------------------------------------------------------------------
    def send(self, conn_id: int, data: bytes) -> None:
        """Queue bytes for a connection; everything queued in one loop turn goes out in one write (a BGP
        speaker writes what its buckets hold, not one message per syscall)."""
        if self.frozen or conn_id not in self.conns:
            return
        pending = self._out.get(conn_id)
        if pending is None:
            self._out[conn_id] = [data]
        else:
            pending.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, {}
        if self.frozen:
            return
        for conn_id, chunks in out.items():
            conn = self.conns.get(conn_id)
            if conn is not None and conn.transport is not None:
                conn.transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def close(self, conn_id: int) -> None:
        self._cancel_connect(conn_id)
        chunks = self._out.pop(conn_id, None)
        conn = self.conns.get(conn_id)
        if chunks and conn is not None and conn.transport is not None and not self.frozen:
            conn.transport.write(b"".join(chunks))  # a NOTIFICATION goes out before the close
        conn = self.conns.pop(conn_id, None)  # forgotten first: the router already knows it is closed
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    def rx_ready(self, conn_id: int) -> bool:
        """Bytes wait unread in the connection's socket (FIONREAD): BIRD's sk_rx_ready(), asked before a
        hold timer ends a session the event loop merely had no time to read."""
        conn = self.conns.get(conn_id)
        sock = conn.transport.get_extra_info("socket") if conn is not None and conn.transport is not None else None
        if sock is None:
            return False
        buf = array.array("i", [0])
        try:
            fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
        except OSError:
            return False
        return buf[0] > 0

    # -- faults and shutdown --------------------------------------------------------------------------------
    def freeze(self) -> None:
        """Host crash: stop everything without closing anything (what was not written yet is lost)."""
        self.frozen = True
        self._out.clear()
        if self.listener is not None:
            self._loop.remove_reader(self.listener.fileno())
        for conn in self.conns.values():
            if conn.transport is not None:
                conn.transport.pause_reading()
        for conn_id in list(self.connecting):
            self._cancel_connect(conn_id)

    def reset(self) -> None:
        """SIGKILL: RST on every connection, the listening socket gone."""
        self.frozen = True
        self._out.clear()
        for conn in list(self.conns.values()):
            t = conn.transport
            if t is None:
                continue
            sock = t.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            t.abort()
        self.conns.clear()
        self.close_all()

    def close_all(self) -> None:
        """Close whatever is left (connections not closed by the router, the listener)."""
        if not self.frozen:
            self._write_out()
        for conn_id in list(self.connecting):
            self._cancel_connect(conn_id)
        for conn in list(self.conns.values()):
            if conn.transport is not None:
                conn.transport.close()
        self.conns.clear()
        if self.listener is not None:
            try:
                self._loop.remove_reader(self.listener.fileno())
            except (ValueError, OSError):
                pass
            self.listener.close()
            self.listener = None


def address_in_use(exc: OSError) -> bool:
    return exc.errno == errno.EADDRINUSE
