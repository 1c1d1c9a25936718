"""ExaBGP API relay: the `process` child ExaBGP runs for meshsim's ExaBGP adapter.

Usage (from ExaBGP's config, one line, no commas):
    run /path/to/python -S -E /path/to/exabgp_relay.py /path/to/socket;

Connects to the unix socket the adapter (`meshsim.engines.exabgp`) listens on, then copies
stdin (ExaBGP's JSON events and done/error acks) to the socket and the socket (API
commands) to stdout (ExaBGP's command pipe). It always drains stdin, even when the
socket is slow (ExaBGP blocks writing to a child that stops reading), and exits on
EOF or error on either side, or on SIGTERM/SIGPIPE (default actions).

Stdlib only and tiny on purpose: it must not import meshsim or exabgp, so that its
RSS stays small (run with `python -S -E`: ~8.6 MiB). Exit codes: 0 EOF, 1 I/O error, 2 usage,
3 could not connect.
"""

import os
import select
import sys
import time

import _socket  # not `socket`: that pulls in enum and costs ~1 MiB of RSS

CHUNK = 65536
CONNECT_DEADLINE = 10.0


def _connect(path):
    deadline = time.monotonic() + CONNECT_DEADLINE
    while True:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)


def _relay(sock):
    sfd = sock.fileno()
    os.set_blocking(0, False)
    os.set_blocking(1, False)
    sock.setblocking(False)
    to_sock = bytearray()  # from ExaBGP, waiting for the socket
    to_out = bytearray()  # from the adapter, waiting for ExaBGP's pipe
    poller = select.poll()
    rd = select.POLLIN | select.POLLPRI
    while True:
        poller.register(0, rd)
        poller.register(sfd, rd | (select.POLLOUT if to_sock else 0))
        if to_out:
            poller.register(1, select.POLLOUT)
        else:
            try:
                poller.unregister(1)
            except KeyError:
                pass
        for fd, ev in poller.poll():
            if fd == 0:
                data = os.read(0, CHUNK) if ev & (rd | select.POLLHUP) else b""
                if not data:
                    return 0  # ExaBGP went away (stdin EOF)
                to_sock += data
            elif fd == sfd:
                if ev & rd or ev & select.POLLHUP:
                    try:
                        data = sock.recv(CHUNK)
                    except BlockingIOError:
                        data = None
                    if data == b"":
                        return 0  # the adapter closed the socket
                    if data:
                        to_out += data
                if to_sock and ev & select.POLLOUT:
                    try:
                        n = sock.send(to_sock)
                    except BlockingIOError:
                        n = 0
                    del to_sock[:n]
                if ev & (select.POLLERR | select.POLLNVAL):
                    return 1
            elif fd == 1:
                if ev & (select.POLLERR | select.POLLNVAL):
                    return 1
                try:
                    n = os.write(1, to_out)
                except BlockingIOError:
                    n = 0
                del to_out[:n]


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: exabgp_relay.py SOCKET\n")
        return 2
    sock = _connect(argv[1])
    if sock is None:
        sys.stderr.write("exabgp_relay: could not connect to %s\n" % argv[1])
        return 3
    try:
        return _relay(sock)
    except OSError as exc:
        sys.stderr.write("exabgp_relay: %s\n" % exc)
        return 1
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
