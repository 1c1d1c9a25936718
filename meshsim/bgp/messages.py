"""BGP messages as values: what meshsim's session layer sends and receives.

Owns: one frozen dataclass per BGP message (RFC 4271 §4) plus the OPEN capabilities meshsim
uses, the session parameters two OPENs agree on (`negotiate`), and the OPEN acceptance rules
(`check_open`, RFC 4271 §6.2). Pure data and pure functions: no bytes on the wire (codec.py
owns those), no exabgp, no asyncio, no clock.

Only IPv4 unicast routes are modelled; prefixes are `IPv4Network`, path attributes are
meshsim's `PathAttrs` (communities: "a:b" is RFC 1997, "a:b:c" is RFC 8092).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from meshsim.bgp.types import Origin, PathAttrs  # re-exported (the brief's meshsim.bgptypes moved here)

__all__ = [
    "ADD_PATH_BOTH",
    "ADD_PATH_RECEIVE",
    "ADD_PATH_SEND",
    "AS_TRANS",
    "BGP_VERSION",
    "Capabilities",
    "EndOfRib",
    "GracefulRestart",
    "Keepalive",
    "Message",
    "Negotiated",
    "Notification",
    "Open",
    "Origin",
    "PathAttrs",
    "RouteRefresh",
    "Update",
    "check_open",
    "negotiate",
]

BGP_VERSION = 4  # RFC 4271 §4.2
AS_TRANS = 23456  # RFC 6793 §9
MAX_2BYTE_AS = 0xFFFF
AFI_IPV4, SAFI_UNICAST = 1, 1
IPV4_UNICAST = (AFI_IPV4, SAFI_UNICAST)

# RFC 7911 §4: the Send/Receive field of the ADD-PATH capability.
ADD_PATH_RECEIVE = 1
ADD_PATH_SEND = 2
ADD_PATH_BOTH = ADD_PATH_RECEIVE | ADD_PATH_SEND

GR_MAX_RESTART_TIME = 0x0FFF  # RFC 4724 §3: 12 bits


# ----------------------------------------------------------------------------- capabilities


@dataclass(frozen=True, slots=True)
class GracefulRestart:
    """RFC 4724 §3 Graceful Restart capability.

    `restart_state` is the R bit, `restart_time` the 12-bit Restart Time in seconds, and each
    `families` entry is (AFI, SAFI, F bit: forwarding state preserved).
    """

    restart_state: bool
    restart_time: int
    families: tuple[tuple[int, int, bool], ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.restart_time <= GR_MAX_RESTART_TIME:
            raise ValueError(f"restart_time {self.restart_time} does not fit 12 bits (RFC 4724 §3)")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The OPEN capabilities meshsim speaks (RFC 5492); others are ignored on receipt.

    `multiprotocol`: (AFI, SAFI) pairs, RFC 4760 §8. `route_refresh`: RFC 2918.
    `asn4`: our 4-octet AS, RFC 6793 §3, None when the capability is absent.
    `add_path`: (AFI, SAFI, mode) with mode 1 receive, 2 send, 3 both, RFC 7911 §4.
    """

    multiprotocol: tuple[tuple[int, int], ...] = (IPV4_UNICAST,)
    route_refresh: bool = True
    asn4: int | None = None
    graceful_restart: GracefulRestart | None = None
    add_path: tuple[tuple[int, int, int], ...] = ()

    def add_path_mode(self, afi: int = AFI_IPV4, safi: int = SAFI_UNICAST) -> int:
        """The ADD-PATH Send/Receive value advertised for a family, 0 when none."""
        for entry_afi, entry_safi, mode in self.add_path:
            if (entry_afi, entry_safi) == (afi, safi):
                return mode
        return 0


# ----------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Open:
    """OPEN, RFC 4271 §4.2. `asn` is the 2-octet My AS field (AS_TRANS for a 4-octet AS).

    Encoding writes AS_TRANS in My AS whenever `asn` > 65535 (RFC 6793 §4.1), so a caller may
    put its real AS in both `asn` and `capabilities.asn4`.
    """

    asn: int
    hold_time: int
    router_id: IPv4Address
    capabilities: Capabilities
    version: int = BGP_VERSION

    @property
    def my_as(self) -> int:
        """The sender's AS: the 4-octet AS capability if present, else My AS (RFC 6793 §4.1)."""
        return self.capabilities.asn4 if self.capabilities.asn4 is not None else self.asn


@dataclass(frozen=True, slots=True)
class Update:
    """UPDATE for IPv4 unicast in the classic fields (RFC 4271 §4.3).

    `attrs` belongs to `nlri` and is None when `nlri` is empty. With ADD-PATH (RFC 7911 §3)
    in use for the direction, `nlri_path_ids` / `withdrawn_path_ids` run parallel to `nlri` /
    `withdrawn`; they are empty otherwise.
    """

    withdrawn: tuple[IPv4Network, ...] = ()
    attrs: PathAttrs | None = None
    nlri: tuple[IPv4Network, ...] = ()
    nlri_path_ids: tuple[int, ...] = ()
    withdrawn_path_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.nlri_path_ids and len(self.nlri_path_ids) != len(self.nlri):
            raise ValueError("nlri_path_ids must be empty or parallel to nlri")
        if self.withdrawn_path_ids and len(self.withdrawn_path_ids) != len(self.withdrawn):
            raise ValueError("withdrawn_path_ids must be empty or parallel to withdrawn")


@dataclass(frozen=True, slots=True)
class EndOfRib:
    """End-of-RIB marker, RFC 4724 §2: the empty UPDATE for IPv4 unicast."""

    afi: int = AFI_IPV4
    safi: int = SAFI_UNICAST


@dataclass(frozen=True, slots=True)
class Keepalive:
    """KEEPALIVE, RFC 4271 §4.4: header only."""


@dataclass(frozen=True, slots=True)
class Notification:
    """NOTIFICATION, RFC 4271 §4.5: error code, subcode and raw data."""

    code: int
    subcode: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class RouteRefresh:
    """ROUTE-REFRESH, RFC 2918 §3; `subtype` is RFC 7313 §3's Message Subtype (0 = request)."""

    afi: int = AFI_IPV4
    safi: int = SAFI_UNICAST
    subtype: int = 0


Message = Open | Update | EndOfRib | Keepalive | Notification | RouteRefresh


# ----------------------------------------------------------------------------- negotiation


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What one session agreed in its OPEN exchange; the codec keys its behaviour on it."""

    local_as: int
    peer_as: int
    hold_time: int
    asn4: bool
    add_path_send: bool
    add_path_receive: bool
    route_refresh: bool
    peer_graceful_restart: GracefulRestart | None = None

    @property
    def ibgp(self) -> bool:
        """Internal session: same AS on both ends (RFC 4271 §5.1.5 LOCAL_PREF rule)."""
        return self.local_as == self.peer_as


def negotiate(local: Open, remote: Open) -> Negotiated:
    """Combine the OPEN we sent and the OPEN we received into the session's parameters."""
    ours, theirs = local.capabilities, remote.capabilities
    our_mode, their_mode = ours.add_path_mode(), theirs.add_path_mode()
    return Negotiated(
        local_as=local.my_as,
        peer_as=remote.my_as,
        hold_time=min(local.hold_time, remote.hold_time),  # RFC 4271 §4.2
        asn4=ours.asn4 is not None and theirs.asn4 is not None,  # RFC 6793 §3
        # RFC 7911 §4: send path ids only if we offered send and the peer offered receive.
        add_path_send=bool(our_mode & ADD_PATH_SEND and their_mode & ADD_PATH_RECEIVE),
        add_path_receive=bool(our_mode & ADD_PATH_RECEIVE and their_mode & ADD_PATH_SEND),
        route_refresh=ours.route_refresh and theirs.route_refresh,  # RFC 2918 §2
        peer_graceful_restart=theirs.graceful_restart,
    )


# ----------------------------------------------------------------------------- OPEN checks


def check_open(
    expected_peer_as: int,
    remote: Open,
    local_router_id: IPv4Address,
    local_as: int | None = None,
) -> Notification | None:
    """The NOTIFICATION an unacceptable OPEN must be answered with, or None (RFC 4271 §6.2).

    `local_as` tells internal from external peers for the BGP Identifier rule; None means
    "same as expected_peer_as" (meshsim's iBGP mesh).
    """
    if remote.version != BGP_VERSION:
        # RFC 4271 §6.2: data is the 2-octet version we support.
        return Notification(2, 1, BGP_VERSION.to_bytes(2, "big"))
    if remote.my_as != expected_peer_as:  # RFC 4271 §6.2, compared on my_as per RFC 6793 §4.1
        return Notification(2, 2)
    if _bad_identifier(remote, local_router_id, expected_peer_as if local_as is None else local_as):
        return Notification(2, 3)
    if remote.hold_time in (1, 2):  # RFC 4271 §6.2: MUST reject one or two seconds
        return Notification(2, 6)
    return None


def _bad_identifier(remote: Open, local_router_id: IPv4Address, local_as: int) -> bool:
    """RFC 6286 §2.2: zero is invalid; equal to ours is invalid from an internal peer."""
    if int(remote.router_id) == 0:
        return True
    return remote.my_as == local_as and remote.router_id == local_router_id
