"""Where a node's sockets live: the process's own network namespace, or the node's (`--isolation netns`).

Owns `NetContext`: it creates a node's TCP sockets in the right network namespace (a socket belongs to
the namespace it was created in, whatever the process does afterwards, so a worker process in the host
namespace can hold BGP sockets inside many node namespaces while its HTTP endpoints stay on 127.x), and
sets TCP-MD5 keys (RFC 2385, Linux TCP_MD5SIG) for peers with a BGP password.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

CLONE_NEWNET = 0x40000000
TCP_MD5SIG = 14
TCP_MD5SIG_MAXKEYLEN = 80
_lock = threading.Lock()
_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the block with this thread in network namespace `name` (/run/netns/NAME), then come back."""
    if not name:
        yield
        return
    with _lock:
        own = os.open("/proc/self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
            os.close(own)


def md5sig(address: IPv4Address, password: str) -> bytes:
    """`struct tcp_md5sig` (linux/tcp.h) for a peer address and key."""
    key = password.encode()
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError(f"a TCP-MD5 key is at most {TCP_MD5SIG_MAXKEYLEN} bytes")
    # sockaddr_storage (128), flags u8, prefixlen u8, keylen u16, ifindex int, key[80]
    sockaddr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + address.packed
    sockaddr = sockaddr.ljust(128, b"\0")
    return sockaddr + struct.pack("=BBHi", 0, 0, len(key), 0) + key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\0")


@dataclass(frozen=True)
class NetContext:
    """The network a node's sockets are made in."""

    netns: str | None = None

    def tcp_socket(self) -> socket.socket:
        with in_netns(self.netns):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        return s

    @staticmethod
    def set_password(sock: socket.socket, peer: IPv4Address, password: str | None) -> None:
        """Sign (and require signatures on) the segments to and from `peer` (RFC 2385)."""
        if password:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(peer, password))
