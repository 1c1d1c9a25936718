"""BGP wire codec for meshsim: bytes <-> messages.Message, built on ExaBGP's message classes.

Owns:
  * `frame`: splitting a receive buffer into whole BGP messages, with the RFC 4271 §6.1
    header checks (pure struct, no exabgp).
  * `decode` / `encode` / `encode_updates`: one BGP message's bytes <-> one
    `messages.Message`, and BIRD-style packing of many routes into few UPDATEs.
  * `CodecError`: the NOTIFICATION (code, subcode, data) a session must send when what it
    received is malformed (RFC 4271 §6). Nothing else escapes `frame` or `decode`.
  * ExaBGP's process-wide state: this is the only meshsim module that imports exabgp.

Longer than ~400 lines on purpose: the purity rule lets only this module import exabgp, so every
message type's decode, encode and checks live here together.

Pure computation: no sockets, no asyncio, no clock. Results are memoised (decoded UPDATEs,
decoded and encoded attribute blocks) because they are pure functions of their inputs and a
route reflector hands identical bytes to hundreds of clients living in one process.

Which parts are ExaBGP's: OPEN and its capabilities, the path attributes of UPDATEs
(decode and encode, including RFC 6793 AS4_PATH handling), UPDATE field splitting,
MP_REACH/MP_UNREACH, End-of-RIB, NOTIFICATION and ROUTE-REFRESH.
Hand-written with struct, because ExaBGP's objects cost more than the work: framing,
KEEPALIVE, the IPv4 prefix lists (NLRI / withdrawn, with RFC 7911 path ids) and the
RFC 4271 §6.3 attribute-list checks ExaBGP does not make or answers with RFC 7606
treat-as-withdraw (meshsim's model has no treat-as-withdraw: every error resets the session).

ExaBGP environment: `_init_exabgp()` runs once at import. It fills ExaBGP's global settings
table with the defaults of `exabgp.environment.setup.CONFIGURATION`, programmatically, and
marks the table as already set up so ExaBGP never runs its own loader: EXABGP_ENVFILE, the
etc/exabgp/exabgp.env file and every `exabgp.*` / `exabgp_*` variable are never read.
ExaBGP's logger is disabled (`log.disable()`: every level becomes a no-op), so nothing is
printed and no `logging` handler is created. While ExaBGP's modules import, every
`exabgp*` / `EXABGP*` variable is hidden from os.environ (and restored), because
`exabgp.environment.base` and `exabgp.version` read EXABGP_ROOT, EXABGP_ENVFILE and
exabgp_version at import time.

Written against ExaBGP 5.0.15, whose internal API it uses; importing this module with any
other ExaBGP release raises ImportError.
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any, NamedTuple, TypeAlias

from meshsim.bgp.messages import (
    Capabilities,
    EndOfRib,
    GracefulRestart,
    Keepalive,
    Message,
    Negotiated,
    Notification,
    Open,
    Origin,
    PathAttrs,
    RouteRefresh,
    Update,
)

EXABGP_VERSION = "5.0.15"


# ============================================================================ ExaBGP set-up


def _check_exabgp_version() -> None:
    """Refuse any ExaBGP but the one this codec was written against (internal API in use)."""
    try:
        # `release` is the package's own; `version` can be overridden by $exabgp_version.
        from exabgp.version import release
    except ImportError as exc:  # pragma: no cover - depends on the venv
        raise ImportError(f"meshsim's BGP codec needs exabgp=={EXABGP_VERSION}: {exc}") from exc
    if release != EXABGP_VERSION:
        raise ImportError(
            f"meshsim's BGP codec was written against exabgp=={EXABGP_VERSION} internals, "
            f"found exabgp {release}; pin exabgp=={EXABGP_VERSION} or port codec.py"
        )


def _init_exabgp() -> None:
    """Give ExaBGP default settings and a silent logger without consulting the environment.

    ExaBGP's own loader, `Env.setup`, runs when `exabgp.environment.setup` is first
    imported and reads EXABGP_ENVFILE plus `exabgp.*` / `exabgp_*` variables. Setting
    `Env._setup` first turns that call into a no-op; the table is then filled here.
    """
    from exabgp.environment.environment import Env
    from exabgp.environment.hashtable import HashTable

    Env._setup = True
    from exabgp.environment import setup as exabgp_setup

    Env.definition = exabgp_setup.CONFIGURATION
    for section, options in exabgp_setup.CONFIGURATION.items():
        table = HashTable()
        for name, spec in options.items():
            table[name] = _default_setting(spec)
        Env._env[section] = table

    from exabgp.logger import log

    log.disable()


def _default_setting(spec: dict[str, Any]) -> object:
    """One ExaBGP default, converted as its loader would; the raw string if that fails
    (e.g. daemon.user 'nobody' missing from /etc/passwd: irrelevant to the codec)."""
    try:
        return spec["read"](spec["value"])
    except (TypeError, ValueError):
        return spec["value"]


@contextlib.contextmanager
def _exabgp_variables_hidden() -> Iterator[None]:
    """Hide every EXABGP_* / exabgp_* / exabgp.* variable while ExaBGP's modules import:
    some read os.environ at import time (EXABGP_ROOT, EXABGP_ENVFILE, exabgp_version)."""
    hidden = {name: os.environ.pop(name) for name in list(os.environ) if name.lower().startswith("exabgp")}
    try:
        yield
    finally:
        os.environ.update(hidden)


with _exabgp_variables_hidden():
    _check_exabgp_version()
    _init_exabgp()
    # ExaBGP's classes, imported only once its environment exists.
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.keepalive import KeepAlive as ExaKeepAlive
    from exabgp.bgp.message.notification import Notification as ExaNotification
    from exabgp.bgp.message.notification import Notify
    from exabgp.bgp.message.open import Open as ExaOpen
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.open.capability import ASN4, AddPath, Capability, Graceful, MultiProtocol
    from exabgp.bgp.message.open.capability import Capabilities as ExaCapabilities
    from exabgp.bgp.message.open.capability import Negotiated as ExaNegotiated
    from exabgp.bgp.message.open.capability import RouteRefresh as RouteRefreshCapability
    from exabgp.bgp.message.open.holdtime import HoldTime
    from exabgp.bgp.message.open.routerid import RouterID
    from exabgp.bgp.message.open.version import Version
    from exabgp.bgp.message.refresh import RouteRefresh as ExaRouteRefresh
    from exabgp.bgp.message.update import Update as ExaUpdate
    from exabgp.bgp.message.update.attribute import (
        MED,
        Attribute,
        Attributes,
        ClusterList,
        LocalPreference,
        NextHop,
        OriginatorID,
    )
    from exabgp.bgp.message.update.attribute import Origin as ExaOrigin
    from exabgp.bgp.message.update.attribute.aspath import SEQUENCE, ASPath
    from exabgp.bgp.message.update.attribute.clusterlist import ClusterID
    from exabgp.bgp.message.update.attribute.community.initial.communities import Communities
    from exabgp.bgp.message.update.attribute.community.initial.community import Community
    from exabgp.bgp.message.update.attribute.community.large.communities import LargeCommunities
    from exabgp.bgp.message.update.attribute.community.large.community import LargeCommunity
    from exabgp.bgp.message.update.eor import EOR
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.protocol.family import AFI, SAFI


# ============================================================================ constants

HEADER_LEN = 19  # RFC 4271 §4.1
MAX_MESSAGE_LEN = 4096  # RFC 4271 §4.1 (no RFC 8654 extended messages)
MARKER = b"\xff" * 16

OPEN, UPDATE, NOTIFICATION, KEEPALIVE, ROUTE_REFRESH = 1, 2, 3, 4, 5

# RFC 4271 §6.1 (min, max) length per type; ROUTE-REFRESH is exactly 23 (RFC 2918 §3).
_LENGTH_BOUNDS = {
    OPEN: (29, MAX_MESSAGE_LEN),
    UPDATE: (23, MAX_MESSAGE_LEN),
    NOTIFICATION: (21, MAX_MESSAGE_LEN),
    KEEPALIVE: (19, 19),
    ROUTE_REFRESH: (23, 23),
}

_HEADER = struct.Struct("!HB")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")

KEEPALIVE_BYTES: bytes = ExaKeepAlive().message()
_KEEPALIVE = Keepalive()
_EOR_IPV4 = EndOfRib()
_EOR_IPV4_BYTES: bytes = EOR(AFI.ipv4, SAFI.unicast).message()
_EMPTY_UPDATE_BODY = b"\x00\x00\x00\x00"  # RFC 4724 §2

# Attribute flags and type codes, RFC 4271 §4.3 / §5.
_OPTIONAL, _TRANSITIVE, _PARTIAL, _EXTENDED = 0x80, 0x40, 0x20, 0x10
ORIGIN, AS_PATH, NEXT_HOP, MED_CODE, LOCAL_PREF = 1, 2, 3, 4, 5
COMMUNITIES, ORIGINATOR_ID, CLUSTER_LIST = 8, 9, 10
MP_REACH, MP_UNREACH, AS4_PATH, AS4_AGGREGATOR, LARGE_COMMUNITY = 14, 15, 17, 18, 32

# What a peer may send before the OPEN exchange is complete (RFC 4271 §8.2.2, OpenSent).
_PRE_OPEN_TYPES = (OPEN, NOTIFICATION, KEEPALIVE)

_ExaKey = tuple[bool, bool, bool, int, int]  # asn4, add-path send, add-path receive, local AS, peer AS


# ============================================================================ errors


class CodecError(Exception):
    """Received bytes are malformed: send NOTIFICATION(code, subcode, data) and close.

    `data` is the NOTIFICATION data RFC 4271 §6 prescribes for this error (often empty);
    the human explanation is `str(err)`.
    """

    def __init__(self, code: int, subcode: int, data: bytes = b"", message: str = "") -> None:
        super().__init__(message or f"BGP error {code}/{subcode}")
        self.code = code
        self.subcode = subcode
        self.data = bytes(data)

    def notification(self) -> Notification:
        """The NOTIFICATION message to send for this error."""
        return Notification(self.code, self.subcode, self.data)


def _from_notify(exc: ExaNotification, data: bytes = b"") -> CodecError:
    """ExaBGP's Notify carries prose in its data; keep its code/subcode, put the prose in
    the message and use the RFC data the caller computed."""
    return CodecError(exc.code, exc.subcode, data, f"exabgp: {exc}")


# ============================================================================ framing


def frame(buf: bytes | bytearray | memoryview) -> tuple[list[bytes], int]:
    """Split a receive buffer into whole messages (header included) and bytes consumed.

    A trailing partial message is left for the next call. Raises CodecError on the first
    bad header (RFC 4271 §6.1).
    """
    data = buf if isinstance(buf, bytes) else bytes(buf)
    messages: list[bytes] = []
    pos, end = 0, len(data)
    unpack_from, bounds_of = _HEADER.unpack_from, _LENGTH_BOUNDS.get
    while end - pos >= HEADER_LEN:
        length, msg_type = unpack_from(data, pos + 16)
        bounds = bounds_of(msg_type)
        if bounds is None or not bounds[0] <= length <= bounds[1] or not data.startswith(MARKER, pos):
            _check_header(data, pos)  # raises the precise error
        if end - pos < length:
            break
        messages.append(data[pos : pos + length])
        pos += length
    return messages, pos


def _check_header(data: bytes, pos: int) -> None:
    """Raise the precise RFC 4271 §6.1 error for the header at `pos`, if it has one."""
    if not data.startswith(MARKER, pos):
        raise CodecError(1, 1, b"", "marker is not all ones: connection not synchronized")
    length: int
    msg_type: int
    length, msg_type = _HEADER.unpack_from(data, pos + 16)
    if length < HEADER_LEN or length > MAX_MESSAGE_LEN:
        raise CodecError(1, 2, _U16.pack(length), f"bad message length {length}")
    bounds = _LENGTH_BOUNDS.get(msg_type)
    if bounds is None:
        raise CodecError(1, 3, bytes([msg_type]), f"bad message type {msg_type}")
    if not bounds[0] <= length <= bounds[1]:
        raise CodecError(1, 2, _U16.pack(length), f"length {length} is wrong for type {msg_type}")


def _message_type(data: bytes) -> int:
    """The type of one whole message, after the RFC 4271 §6.1 checks (fast path first)."""
    if len(data) < HEADER_LEN:
        raise CodecError(1, 2, b"", f"{len(data)} bytes cannot hold a BGP header")
    length, msg_type = _HEADER.unpack_from(data, 16)
    bounds = _LENGTH_BOUNDS.get(msg_type)
    if bounds is None or not bounds[0] <= length <= bounds[1] or not data.startswith(MARKER):
        _check_header(data, 0)  # raises the precise error
    if length != len(data):
        raise CodecError(1, 2, data[16:18], "message length does not match its header")
    result: int = msg_type
    return result


# ============================================================================ ExaBGP session state


def session_key(negotiated: Negotiated) -> tuple[bool, bool, bool, int, int]:
    """Sessions with equal keys get identical bytes from `encode`/`encode_updates` and
    identical results from `decode`: encode once per key, send the bytes to all of them."""
    return _exa_key(negotiated)


def _exa_key(negotiated: Negotiated) -> _ExaKey:
    return (
        negotiated.asn4,
        negotiated.add_path_send,
        negotiated.add_path_receive,
        negotiated.local_as,
        negotiated.peer_as,
    )


@functools.lru_cache(maxsize=256)
def _exa_negotiated(key: _ExaKey) -> ExaNegotiated:
    """An ExaBGP Negotiated for one session shape, built the way ExaBGP builds its own:
    a config-less Neighbor, then the two OPENs the shape implies fed to sent()/received()."""
    asn4, send, receive, local_as, peer_as = key
    neighbor = Neighbor()  # plain dict of defaults; no configuration file involved
    neighbor["local-as"], neighbor["peer-as"] = ASN(local_as), ASN(peer_as)
    neighbor["capability"]["asn4"] = asn4
    negotiated = ExaNegotiated(neighbor)
    # RFC 7911 §4: our "send" pairs with their "receive" and vice versa.
    negotiated.sent(_exa_session_open(local_as, asn4, send * 2 + receive))
    negotiated.received(_exa_session_open(peer_as, asn4, receive * 2 + send))
    return negotiated


def _exa_session_open(asn: int, asn4: bool, add_path_mode: int) -> ExaOpen:
    ipv4_unicast = (AFI.ipv4, SAFI.unicast)
    capabilities = ExaCapabilities()
    capabilities[Capability.CODE.MULTIPROTOCOL] = MultiProtocol([ipv4_unicast])
    if asn4:
        capabilities[Capability.CODE.FOUR_BYTES_ASN] = ASN4(asn)
    if add_path_mode:
        capabilities[Capability.CODE.ADD_PATH] = AddPath([ipv4_unicast], add_path_mode)
    return ExaOpen(Version(4), ASN(asn), HoldTime(180), RouterID("0.0.0.1"), capabilities)


# ============================================================================ decode


def decode(raw: bytes | bytearray | memoryview, negotiated: Negotiated | None) -> Message:
    """Decode one whole message (as returned by `frame`). Raises only CodecError.

    Pass `negotiated=None` until the OPEN exchange completes; meanwhile only OPEN,
    NOTIFICATION and KEEPALIVE are acceptable, anything else is 5/1 (RFC 6608 §4).
    UPDATEs are memoised on (bytes, session_key(negotiated)).
    """
    data = raw if isinstance(raw, bytes) else bytes(raw)
    if data == KEEPALIVE_BYTES:
        return _KEEPALIVE
    try:
        msg_type = _message_type(data)
        if msg_type == UPDATE and negotiated is not None:
            return _decode_update(data, _exa_key(negotiated))
        if msg_type not in _PRE_OPEN_TYPES and negotiated is None:
            raise CodecError(5, 1, bytes([msg_type]), "UPDATE/ROUTE-REFRESH before the OPEN exchange")
        return _DECODERS[msg_type](data[HEADER_LEN:])
    except CodecError:
        raise
    except ExaNotification as exc:  # Notify and its parent
        raise _from_notify(exc) from exc
    except Exception as exc:  # RFC 4271 §6: every malformed message is a NOTIFICATION
        code, subcode = _FALLBACK_ERROR.get(data[18] if len(data) > 18 else 0, (1, 0))
        raise CodecError(code, subcode, b"", f"undecodable message: {exc!r}") from exc


_FALLBACK_ERROR = {OPEN: (2, 0), UPDATE: (3, 1), ROUTE_REFRESH: (7, 1)}


# ---------------------------------------------------------------------------- OPEN


@functools.lru_cache(maxsize=4096)
def _decode_open(body: bytes) -> Open:
    """Memoised: every peer in a process that hears from one speaker decodes the same OPEN bytes."""
    if body[0] != 4:
        # RFC 4271 §6.2: data is the version we support, 2 octets.
        raise CodecError(2, 1, _U16.pack(4), f"unsupported BGP version {body[0]}")
    _check_optional_parameters_length(body)
    try:
        exa = ExaOpen.unpack_message(body)
    except Notify as exc:
        raise _from_notify(exc) from exc
    return Open(
        asn=int(exa.asn),
        hold_time=int(exa.hold_time),
        router_id=IPv4Address(exa.router_id.ton()),
        capabilities=_capabilities_from_exa(exa.capabilities),
        version=int(exa.version),
    )


def _check_optional_parameters_length(body: bytes) -> None:
    """RFC 4271 §4.2 / RFC 9072 §2: the Optional Parameters Length must match the message
    (ExaBGP slices without checking). A mismatch is a malformed OPEN: 2/0 (§6.2)."""
    declared = body[9]
    consumed = 10 + declared
    if declared == 255 and len(body) >= 13 and body[10] == 255:  # RFC 9072 extended length
        consumed = 13 + _U16.unpack_from(body, 11)[0]
    if consumed != len(body):
        raise CodecError(2, 0, b"", "optional parameters length does not match the OPEN length")


def _capabilities_from_exa(exa: ExaCapabilities) -> Capabilities:
    code = Capability.CODE
    asn4 = exa.get(code.FOUR_BYTES_ASN)
    return Capabilities(
        multiprotocol=tuple((int(afi), int(safi)) for afi, safi in exa.get(code.MULTIPROTOCOL, ())),
        route_refresh=code.ROUTE_REFRESH in exa,  # RFC 2918 code 2 only (not Cisco's 128)
        asn4=None if asn4 is None else int(asn4),
        graceful_restart=_graceful_from_exa(exa.get(code.GRACEFUL_RESTART)),
        add_path=tuple((int(afi), int(safi), int(mode)) for (afi, safi), mode in exa.get(code.ADD_PATH, {}).items()),
    )


def _graceful_from_exa(graceful: Graceful | None) -> GracefulRestart | None:
    if graceful is None:
        return None
    return GracefulRestart(
        restart_state=bool(graceful.restart_flag & Graceful.RESTART_STATE),  # RFC 4724 §3 R bit
        restart_time=int(graceful.restart_time),
        families=tuple(
            (int(afi), int(safi), bool(flags & Graceful.FORWARDING_STATE)) for (afi, safi), flags in graceful.items()
        ),
    )


# ---------------------------------------------------------------------------- small types


def _decode_notification(body: bytes) -> Notification:
    exa = ExaNotification(body[0], body[1], body[2:], parse_data=False)  # raw data, RFC 4271 §4.5
    return Notification(exa.code, exa.subcode, bytes(exa.data))


def _decode_keepalive(body: bytes) -> Keepalive:
    return _KEEPALIVE  # frame/_check_header already required length 19 (RFC 4271 §4.4)


def _decode_route_refresh(body: bytes) -> RouteRefresh:
    afi, subtype, safi = body[0] << 8 | body[1], body[2], body[3]
    if subtype > 2:
        # RFC 7313 §5: an unknown Message Subtype MUST be ignored, not answered with a
        # NOTIFICATION (ExaBGP raises 7/2): hand it up and let the session ignore it.
        return RouteRefresh(afi, safi, subtype)
    exa = ExaRouteRefresh.unpack_message(body)
    return RouteRefresh(int(exa.afi), int(exa.safi), int(exa.reserved))


_DECODERS: dict[int, Callable[[bytes], Message]] = {
    OPEN: _decode_open,
    NOTIFICATION: _decode_notification,
    KEEPALIVE: _decode_keepalive,
    ROUTE_REFRESH: _decode_route_refresh,
}


# ---------------------------------------------------------------------------- UPDATE


@dataclass(frozen=True, slots=True)
class _Block:
    """What one path-attribute block says, independent of the NLRI beside it."""

    attrs: PathAttrs | None  # None when ORIGIN or every next hop is missing
    missing: int | None  # ORIGIN or AS_PATH if absent (RFC 4271 §6.3, RFC 4760 §3)
    next_hop_attribute: bool  # NEXT_HOP present: mandatory with classic NLRI (RFC 4271 §6.3)
    mp_nlri: tuple[IPv4Network, ...] = ()
    mp_nlri_ids: tuple[int, ...] = ()
    mp_withdrawn: tuple[IPv4Network, ...] = ()
    mp_withdrawn_ids: tuple[int, ...] = ()
    mp_eor: tuple[int, int] | None = None


_Prefixes = tuple[tuple[IPv4Network, ...], tuple[int, ...]]  # networks and parallel path ids
_MpRoutes = tuple[
    tuple[IPv4Network, ...], tuple[int, ...], tuple[IPv4Network, ...], tuple[int, ...], tuple[int, int] | None
]
_NO_ATTRIBUTES = _Block(attrs=None, missing=ORIGIN, next_hop_attribute=False)


@functools.lru_cache(maxsize=4096)
def _decode_update(raw: bytes, key: _ExaKey) -> EndOfRib | Update:
    """UPDATE decoding, memoised: a pure function of the bytes and the session shape."""
    body = raw[HEADER_LEN:]
    if body == _EMPTY_UPDATE_BODY:
        return _EOR_IPV4  # RFC 4724 §2
    if len(body) == EOR.NLRI.MP_LENGTH and body.startswith(EOR.NLRI.PREFIX):
        eor = EOR.unpack_message(body, Direction.IN, None)  # RFC 4724 §2, MP_UNREACH form
        return EndOfRib(int(eor.nlris[0].afi), int(eor.nlris[0].safi))
    withdrawn_field, attribute_block, nlri_field = _split_update(body)
    add_path = key[2]
    withdrawn, withdrawn_ids = _parse_prefixes(withdrawn_field, add_path)
    nlri, nlri_ids = _parse_prefixes(nlri_field, add_path)
    block = _decode_block(attribute_block, key) if attribute_block else _NO_ATTRIBUTES
    return _assemble_update(block, withdrawn, withdrawn_ids, nlri, nlri_ids, add_path)


def _split_update(body: bytes) -> tuple[bytes, bytes, bytes]:
    """RFC 4271 §4.3 fields via ExaBGP; inconsistent lengths are 3/1 (§6.3)."""
    try:
        fields: tuple[bytes, bytes, bytes] = ExaUpdate.split(body)
        return fields
    except Notify as exc:
        data = _U16.pack(HEADER_LEN + len(body)) if (exc.code, exc.subcode) == (1, 2) else b""
        raise _from_notify(exc, data) from exc


def _assemble_update(
    block: _Block,
    withdrawn: tuple[IPv4Network, ...],
    withdrawn_ids: tuple[int, ...],
    nlri: tuple[IPv4Network, ...],
    nlri_ids: tuple[int, ...],
    add_path: bool,
) -> EndOfRib | Update:
    missing = _missing_well_known(block, nlri)
    if missing is not None:
        raise CodecError(3, 3, bytes([missing]), f"missing well-known attribute {missing}")  # RFC 4271 §6.3
    if not (withdrawn or nlri or block.mp_withdrawn or block.mp_nlri) and block.mp_eor:
        return EndOfRib(*block.mp_eor)  # RFC 4724 §2: empty MP_UNREACH_NLRI
    all_nlri = nlri + block.mp_nlri
    return Update(
        withdrawn=withdrawn + block.mp_withdrawn,
        attrs=block.attrs if all_nlri else None,
        nlri=all_nlri,
        nlri_path_ids=nlri_ids + block.mp_nlri_ids if add_path else (),
        withdrawn_path_ids=withdrawn_ids + block.mp_withdrawn_ids if add_path else (),
    )


def _missing_well_known(block: _Block, nlri: tuple[IPv4Network, ...]) -> int | None:
    """Type code of the first mandatory attribute absent for the routes present: ORIGIN,
    AS_PATH, NEXT_HOP with classic NLRI (RFC 4271 §6.3); ORIGIN, AS_PATH with MP_REACH_NLRI
    (RFC 4760 §3)."""
    if nlri:
        return block.missing if block.missing is not None or block.next_hop_attribute else NEXT_HOP
    return block.missing if block.mp_nlri else None


def _parse_prefixes(field: bytes, add_path: bool) -> _Prefixes:
    """IPv4 prefixes of a Withdrawn Routes or NLRI field (RFC 4271 §4.3), each preceded by
    a 4-octet Path Identifier under ADD-PATH (RFC 7911 §3). Syntax errors are 3/10 (§6.3)."""
    networks: list[IPv4Network] = []
    path_ids: list[int] = []
    pos, end = 0, len(field)
    while pos < end:
        if add_path:
            if end - pos < 5:
                raise CodecError(3, 10, b"", "truncated path identifier")
            path_ids.append(_U32.unpack_from(field, pos)[0])
            pos += 4
        length = field[pos]
        size = (length + 7) >> 3
        if length > 32 or pos + 1 + size > end:
            raise CodecError(3, 10, b"", f"invalid IPv4 prefix (length {length})")
        networks.append(_network(field[pos : pos + 1 + size]))
        pos += 1 + size
    return tuple(networks), tuple(path_ids)


@functools.lru_cache(maxsize=65536)
def _network(encoded: bytes) -> IPv4Network:
    """One prefix from its wire form (length octet + significant octets). Trailing bits are
    irrelevant (RFC 4271 §4.3) and are cleared."""
    length = encoded[0]
    address = int.from_bytes(encoded[1:].ljust(4, b"\x00"), "big")
    mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
    return IPv4Network((address & mask, length))


# ---------------------------------------------------------------------------- path attributes


class _RawAttribute(NamedTuple):  # a NamedTuple: built per attribute, cheaper than a dataclass
    flags: int
    value: bytes
    whole: bytes  # flags, type, length and value: the NOTIFICATION data of RFC 4271 §6.3


# Expected Optional/Transitive bits and a length rule per attribute we check, RFC 4271 §5 /
# RFC 1997 / RFC 4456 §8 / RFC 4760 / RFC 6793 / RFC 8092.
_WELL_KNOWN, _OPT_NON_TRANSITIVE, _OPT_TRANSITIVE = _TRANSITIVE, _OPTIONAL, _OPTIONAL | _TRANSITIVE
_ATTRIBUTE_RULES: dict[int, tuple[int, Callable[[int], bool] | None]] = {
    ORIGIN: (_WELL_KNOWN, lambda n: n == 1),
    AS_PATH: (_WELL_KNOWN, None),
    NEXT_HOP: (_WELL_KNOWN, lambda n: n == 4),
    MED_CODE: (_OPT_NON_TRANSITIVE, lambda n: n == 4),
    LOCAL_PREF: (_WELL_KNOWN, lambda n: n == 4),
    COMMUNITIES: (_OPT_TRANSITIVE, lambda n: n > 0 and n % 4 == 0),
    ORIGINATOR_ID: (_OPT_NON_TRANSITIVE, lambda n: n == 4),
    CLUSTER_LIST: (_OPT_NON_TRANSITIVE, lambda n: n > 0 and n % 4 == 0),
    MP_REACH: (_OPT_NON_TRANSITIVE, None),
    MP_UNREACH: (_OPT_NON_TRANSITIVE, None),
    AS4_PATH: (_OPT_TRANSITIVE, None),
    LARGE_COMMUNITY: (_OPT_TRANSITIVE, lambda n: n > 0 and n % 12 == 0),
}


@functools.lru_cache(maxsize=4096)
def _decode_block(block: bytes, key: _ExaKey) -> _Block:
    """One path-attribute block -> _Block, memoised (many UPDATEs share one block)."""
    raw = _check_attributes(block, asn4=key[0])
    if key[0] and (AS4_PATH in raw or AS4_AGGREGATOR in raw):
        block = _without(block, (AS4_PATH, AS4_AGGREGATOR))  # RFC 6793 §4.1: NEW<->NEW ignores them
    exa = _exa_attributes_unpack(block, key)
    mp = _mp_routes(exa)
    next_hop = _next_hop(exa)
    missing = next((code for code in (ORIGIN, AS_PATH) if code not in raw), None)
    attrs = None if next_hop is None or ORIGIN not in raw else _path_attrs(exa, raw, next_hop)
    if mp is None:
        return _Block(attrs, missing, NEXT_HOP in raw)
    return _Block(attrs, missing, NEXT_HOP in raw, *mp)


def _without(block: bytes, codes: tuple[int, ...]) -> bytes:
    return b"".join(attribute.whole for code, attribute in _walk_attributes(block) if code not in codes)


def _check_attributes(block: bytes, asn4: bool) -> dict[int, _RawAttribute]:
    """RFC 4271 §6.3 checks on the attribute list; returns the first occurrence of each code.

    Duplicates after the first are ignored, as ExaBGP and RFC 7606 §3 (g) do. ATOMIC_AGGREGATE,
    AGGREGATOR and other attributes meshsim does not carry are not checked beyond framing.
    """
    seen: dict[int, _RawAttribute] = {}
    for code, attribute in _walk_attributes(block):
        if code in seen:
            continue
        seen[code] = attribute
        _check_attribute(code, attribute, asn4)
    return seen


def _walk_attributes(block: bytes) -> Iterator[tuple[int, _RawAttribute]]:
    pos, end = 0, len(block)
    while pos < end:
        if end - pos < 3:
            raise CodecError(3, 1, b"", "truncated attribute header")  # RFC 4271 §6.3
        flags, code = block[pos], block[pos + 1]
        if flags & _EXTENDED:
            if end - pos < 4:
                raise CodecError(3, 1, b"", "truncated attribute header")
            start, length = pos + 4, _U16.unpack_from(block, pos + 2)[0]
        else:
            start, length = pos + 3, block[pos + 2]
        stop = start + length
        if stop > end:
            raise CodecError(3, 1, b"", f"attribute {code} overruns the attribute list")  # RFC 4271 §6.3
        yield code, _RawAttribute(flags, block[start:stop], block[pos:stop])
        pos = stop


def _check_attribute(code: int, attribute: _RawAttribute, asn4: bool) -> None:
    rule = _ATTRIBUTE_RULES.get(code)
    if rule is None:
        if not attribute.flags & _OPTIONAL and code not in Attribute.attributes_known:
            # RFC 4271 §6.3: unrecognized well-known attribute, data = the attribute.
            raise CodecError(3, 2, attribute.whole, f"unrecognized well-known attribute {code}")
        return
    expected, length_ok = rule
    category = attribute.flags & (_OPTIONAL | _TRANSITIVE)
    partial_forbidden = expected != _OPT_TRANSITIVE and attribute.flags & _PARTIAL  # RFC 4271 §4.3
    if category != expected or partial_forbidden:
        raise CodecError(3, 4, attribute.whole, f"attribute flags 0x{attribute.flags:02x} wrong for {code}")
    if length_ok is not None and not length_ok(len(attribute.value)):
        raise CodecError(3, 5, attribute.whole, f"attribute {code} has length {len(attribute.value)}")
    if code == ORIGIN and attribute.value[0] > Origin.INCOMPLETE:
        raise CodecError(3, 6, attribute.whole, f"ORIGIN {attribute.value[0]}")  # RFC 4271 §6.3
    if code in (AS_PATH, AS4_PATH) and not _as_path_ok(attribute.value, 4 if asn4 or code == AS4_PATH else 2):
        raise CodecError(3, 11, b"", "malformed AS_PATH")  # RFC 4271 §6.3, RFC 7606 §7.2


def _as_path_ok(value: bytes, width: int) -> bool:
    """Segments of a known type (RFC 4271 §4.3, RFC 5065 §3), non-empty, exactly filling
    the attribute (RFC 7606 §7.2)."""
    pos, end = 0, len(value)
    while pos < end:
        if end - pos < 2 or value[pos] not in (1, 2, 3, 4) or value[pos + 1] == 0:
            return False
        pos += 2 + value[pos + 1] * width
    return pos == end


def _exa_attributes_unpack(block: bytes, key: _ExaKey) -> Attributes:
    try:
        exa = Attributes.unpack(block, Direction.IN, _exa_negotiated(key))
    except Notify as exc:
        raise _from_notify(exc) from exc
    treat_as_withdraw = exa.get(Attribute.CODE.INTERNAL_TREAT_AS_WITHDRAW)
    if treat_as_withdraw is not None:
        # ExaBGP chose RFC 7606 treat-as-withdraw for something _check_attributes let by.
        raise CodecError(3, 1, b"", f"exabgp: {treat_as_withdraw}")
    return exa


def _next_hop(exa: Attributes) -> IPv4Address | None:
    """NEXT_HOP, else an IPv4 next hop from MP_REACH_NLRI (RFC 4760 §3). An UPDATE with
    routes in both places gets NEXT_HOP for all of them (one PathAttrs per Update)."""
    next_hop = exa.get(Attribute.CODE.NEXT_HOP)
    if next_hop is not None:
        return IPv4Address(next_hop.ton())
    reach = exa.get(Attribute.CODE.MP_REACH_NLRI)
    if reach is not None and reach.nlris and reach.nlris[0].nexthop.afi == AFI.ipv4:
        return IPv4Address(reach.nlris[0].nexthop.ton())
    return None


def _path_attrs(exa: Attributes, raw: Mapping[int, _RawAttribute], next_hop: IPv4Address) -> PathAttrs:
    code = Attribute.CODE
    med = exa.get(code.MED)
    local_pref = exa.get(code.LOCAL_PREF)
    originator = exa.get(code.ORIGINATOR_ID)
    clusters = exa.get(code.CLUSTER_LIST)
    return PathAttrs(
        next_hop=next_hop,
        local_pref=100 if local_pref is None else local_pref.localpref,  # RFC 4271 §5.1.5 default
        as_path=_as_path(exa.get(code.AS_PATH)),
        origin=Origin(raw[ORIGIN].value[0]),
        med=None if med is None else med.med,
        originator_id=None if originator is None else IPv4Address(originator.ton()),
        cluster_list=() if clusters is None else tuple(IPv4Address(c.ton()) for c in clusters.clusters),
        communities=_communities(raw),
    )


def _as_path(as_path: ASPath | None) -> tuple[int, ...]:
    """All segments flattened in wire order (ExaBGP has already merged any AS4_PATH,
    RFC 6793 §4.2.3). AS_SET / confederation structure is lost: PathAttrs cannot hold it."""
    if as_path is None:  # ExaBGP drops an empty AS_PATH
        return ()
    return tuple(int(asn) for segment in as_path.aspath for asn in segment)


def _communities(raw: Mapping[int, _RawAttribute]) -> tuple[str, ...]:
    """RFC 1997 then RFC 8092 communities in wire order (ExaBGP's classes sort them)."""
    result: list[str] = []
    standard = raw.get(COMMUNITIES)
    if standard is not None:
        result.extend(f"{high}:{low}" for high, low in struct.iter_unpack("!HH", standard.value))
    large = raw.get(LARGE_COMMUNITY)
    if large is not None:
        result.extend(f"{a}:{b}:{c}" for a, b, c in struct.iter_unpack("!III", large.value))
    return tuple(result)


def _mp_routes(exa: Attributes) -> _MpRoutes | None:
    """IPv4-unicast routes carried in MP_REACH/MP_UNREACH (RFC 4760), as the trailing
    _Block fields; None when neither attribute is present. ExaBGP has already refused
    (3/9) any family that was not negotiated, i.e. anything but IPv4 unicast."""
    reach = exa.get(Attribute.CODE.MP_REACH_NLRI)
    unreach = exa.get(Attribute.CODE.MP_UNREACH_NLRI)
    if reach is None and unreach is None:
        return None
    nlri, nlri_ids = _exa_prefixes(reach.nlris if reach is not None else ())
    withdrawn, withdrawn_ids = _exa_prefixes(unreach.nlris if unreach is not None else ())
    eor = (int(unreach.afi), int(unreach.safi)) if unreach is not None and not unreach.nlris else None
    return nlri, nlri_ids, withdrawn, withdrawn_ids, eor


def _exa_prefixes(nlris: Iterable[Any]) -> _Prefixes:
    networks, path_ids = [], []
    for nlri in nlris:
        mask = nlri.cidr.mask
        networks.append(_network(bytes([mask]) + nlri.cidr.ton()[: (mask + 7) >> 3]))
        packed_id = nlri.path_info.path_info
        path_ids.append(_U32.unpack(packed_id)[0] if len(packed_id) == 4 else 0)
    return tuple(networks), tuple(path_ids)


# ============================================================================ encode


def encode(msg: Message, negotiated: Negotiated | None) -> bytes:
    """One message's bytes. UPDATE needs `negotiated`; the rest do not.

    Raises ValueError for a message that cannot be encoded (a value out of range, an
    UPDATE over 4096 bytes): that is the caller's bug, not the peer's.
    """
    try:
        if isinstance(msg, Keepalive):
            return KEEPALIVE_BYTES
        if isinstance(msg, Update):
            if negotiated is None:
                raise ValueError("encoding an UPDATE needs the session's Negotiated")
            return _encode_update(msg, negotiated)
        encoder = _ENCODERS.get(type(msg))
        if encoder is None:
            raise ValueError(f"not a BGP message: {msg!r}")
        return encoder(msg)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"cannot encode {msg!r}: {exc}") from exc


@functools.lru_cache(maxsize=4096)
def _encode_open(msg: Open) -> bytes:
    exa = ExaOpen(
        Version(msg.version),
        ASN(msg.asn),  # Open.message() writes AS_TRANS when > 65535 (RFC 6793 §4.1)
        HoldTime(msg.hold_time),
        RouterID(str(msg.router_id)),
        _capabilities_to_exa(msg.capabilities),
    )
    encoded: bytes = exa.message()
    return encoded


def _capabilities_to_exa(capabilities: Capabilities) -> ExaCapabilities:
    """Wire order: MP (RFC 4760), route refresh (RFC 2918), graceful restart (RFC 4724),
    4-octet AS (RFC 6793), ADD-PATH (RFC 7911); one Optional Parameter each, as ExaBGP does."""
    code = Capability.CODE
    exa = ExaCapabilities()
    if capabilities.multiprotocol:
        exa[code.MULTIPROTOCOL] = MultiProtocol((AFI.create(a), SAFI.create(s)) for a, s in capabilities.multiprotocol)
    if capabilities.route_refresh:
        exa[code.ROUTE_REFRESH] = RouteRefreshCapability()
    if capabilities.graceful_restart is not None:
        exa[code.GRACEFUL_RESTART] = _graceful_to_exa(capabilities.graceful_restart)
    if capabilities.asn4 is not None:
        exa[code.FOUR_BYTES_ASN] = ASN4(capabilities.asn4)
    if capabilities.add_path:
        add_path = AddPath()
        for afi, safi, mode in capabilities.add_path:
            add_path.add_path(AFI.create(afi), SAFI.create(safi), mode)
        exa[code.ADD_PATH] = add_path
    return exa


def _graceful_to_exa(graceful: GracefulRestart) -> Graceful:
    return Graceful().set(
        Graceful.RESTART_STATE if graceful.restart_state else 0,
        graceful.restart_time,
        [
            (AFI.create(afi), SAFI.create(safi), Graceful.FORWARDING_STATE if forwarding else 0)
            for afi, safi, forwarding in graceful.families
        ],
    )


def _encode_notification(msg: Notification) -> bytes:
    if len(msg.data) > MAX_MESSAGE_LEN - 21:
        raise ValueError("NOTIFICATION data does not fit a 4096-byte message")
    encoded: bytes = Notify(msg.code, msg.subcode, bytes(msg.data)).message()
    return encoded


def _encode_route_refresh(msg: RouteRefresh) -> bytes:
    encoded: bytes = ExaRouteRefresh(msg.afi, msg.safi, msg.subtype).message()
    return encoded


def _encode_end_of_rib(msg: EndOfRib) -> bytes:
    if (msg.afi, msg.safi) == (1, 1):
        return _EOR_IPV4_BYTES  # RFC 4724 §2: the empty UPDATE
    encoded: bytes = EOR(AFI.create(msg.afi), SAFI.create(msg.safi)).message()
    return encoded


_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    Open: _encode_open,
    Notification: _encode_notification,
    RouteRefresh: _encode_route_refresh,
    EndOfRib: _encode_end_of_rib,
}


# ---------------------------------------------------------------------------- UPDATE


def _encode_update(msg: Update, negotiated: Negotiated) -> bytes:
    """One UPDATE exactly as given (RFC 4271 §4.3). Attributes are written only with NLRI."""
    add_path = negotiated.add_path_send
    withdrawn = _prefix_field(msg.withdrawn, msg.withdrawn_path_ids, add_path)
    nlri = _prefix_field(msg.nlri, msg.nlri_path_ids, add_path)
    block = b""
    if msg.nlri:
        if msg.attrs is None:
            raise ValueError("an UPDATE with NLRI needs attrs")
        block = attribute_block(msg.attrs, negotiated)
    encoded = _update_message(withdrawn, block, nlri)
    if len(encoded) > MAX_MESSAGE_LEN:
        raise ValueError(f"UPDATE of {len(encoded)} bytes exceeds {MAX_MESSAGE_LEN}; use encode_updates")
    return encoded


def _prefix_field(networks: Sequence[IPv4Network], path_ids: Sequence[int], add_path: bool) -> bytes:
    if not add_path:
        return b"".join(map(_prefix_bytes, networks))
    ids = path_ids or (0,) * len(networks)
    return b"".join(_U32.pack(path_id) + _prefix_bytes(net) for net, path_id in zip(networks, ids, strict=True))


def _prefix_bytes(network: IPv4Network) -> bytes:
    """Length octet + the significant octets of the prefix (RFC 4271 §4.3)."""
    length = network.prefixlen
    return bytes([length]) + network.network_address.packed[: (length + 7) >> 3]


def _update_message(withdrawn: bytes, block: bytes, nlri: bytes) -> bytes:
    body_len = 4 + len(withdrawn) + len(block) + len(nlri)
    return b"".join(
        (
            MARKER,
            _HEADER.pack(HEADER_LEN + body_len, UPDATE),
            _U16.pack(len(withdrawn)),
            withdrawn,
            _U16.pack(len(block)),
            block,
            nlri,
        )
    )


def attribute_block(attrs: PathAttrs, negotiated: Negotiated) -> bytes:
    """The path-attribute bytes BIRD would write for `attrs` on this session (memoised)."""
    return _attribute_block(attrs, _exa_key(negotiated))


@functools.lru_cache(maxsize=4096)
def _attribute_block(attrs: PathAttrs, key: _ExaKey) -> bytes:
    """ExaBGP packs in type-code order: ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF (iBGP only,
    RFC 4271 §5.1.5), COMMUNITIES, ORIGINATOR_ID, CLUSTER_LIST, LARGE_COMMUNITY. Without asn4
    an AS > 65535 becomes AS_TRANS in AS_PATH plus an AS4_PATH (RFC 6793 §4.2.2), moved here
    to its type-code place (RFC 4271 §5: ascending order SHOULD be used)."""
    exa = _exa_attributes(attrs)
    packed: bytes = exa.pack(_exa_negotiated(key))
    if not key[0] and any(asn > 0xFFFF for asn in attrs.as_path):
        packed = b"".join(a.whole for _, a in sorted(_walk_attributes(packed), key=lambda item: item[0]))
    return packed


def _exa_attributes(attrs: PathAttrs) -> Attributes:
    exa = Attributes()
    exa.add(ExaOrigin(int(attrs.origin)))
    exa.add(ASPath([SEQUENCE(ASN(asn) for asn in attrs.as_path)] if attrs.as_path else []))
    exa.add(NextHop(str(attrs.next_hop), attrs.next_hop.packed))
    if attrs.med is not None:
        exa.add(MED(attrs.med))
    exa.add(LocalPreference(attrs.local_pref))  # Attributes.pack drops it on eBGP
    standard, large = _split_communities(attrs.communities)
    if standard:
        exa.add(Communities([Community(value) for value in standard]))
    if large:
        exa.add(LargeCommunities([LargeCommunity(value) for value in large]))
    if attrs.originator_id is not None:
        exa.add(OriginatorID(str(attrs.originator_id), attrs.originator_id.packed))
    if attrs.cluster_list:
        exa.add(ClusterList([ClusterID(str(cluster)) for cluster in attrs.cluster_list]))
    return exa


def _split_communities(communities: Sequence[str]) -> tuple[list[bytes], list[bytes]]:
    """ "a:b" -> RFC 1997 COMMUNITIES, "a:b:c" -> RFC 8092 LARGE_COMMUNITY, order kept."""
    standard: list[bytes] = []
    large: list[bytes] = []
    for text in communities:
        parts = [int(part) for part in text.split(":")]
        if len(parts) == 2:
            standard.append(struct.pack("!HH", *parts))
        elif len(parts) == 3:
            large.append(struct.pack("!III", *parts))
        else:
            raise ValueError(f"community {text!r} is neither a:b nor a:b:c")
    return standard, large


# ---------------------------------------------------------------------------- packing


Route: TypeAlias = IPv4Network | tuple[IPv4Network, int]
"""One NLRI or withdrawn route for `encode_updates`: a prefix, or (prefix, path id) with its own Path Identifier."""


def encode_updates(
    announce: Mapping[PathAttrs, Sequence[Route]],
    withdraw: Sequence[Route],
    negotiated: Negotiated,
    path_id: int | Mapping[IPv4Network, int] = 0,
) -> list[bytes]:
    """Pack routes into as few UPDATEs (each <= 4096 bytes) as BIRD would.

    Withdrawals first, in UPDATEs of their own, then one run of UPDATEs per attribute set in
    `announce` order; routes keep their order. With ADD-PATH send negotiated every route
    carries a Path Identifier (RFC 7911 §3): a route given as (prefix, path id) carries its own,
    a bare prefix `path_id`, as a fixed id for all or a mapping prefix -> id (KeyError for a
    prefix it lacks). Without ADD-PATH the ids are ignored. BIRD sends its route-source id (one
    per originating protocol and per received path of a peer, meshsim.bgp.sources); one prefix
    announced as two paths is two (prefix, id) routes, in one call.
    """
    add_path = negotiated.add_path_send
    encoded: list[bytes] = []
    if withdraw:
        prefixes = _prefix_items(withdraw, path_id, add_path)
        encoded.extend(_update_message(chunk, b"", b"") for chunk in _pack(prefixes, _UPDATE_ROOM))
    for attrs, networks in announce.items():
        if not networks:
            continue
        block = attribute_block(attrs, negotiated)
        room = _UPDATE_ROOM - len(block)
        if room < 9:  # one /32 with a path id
            raise ValueError("path attributes leave no room for a prefix")
        prefixes = _prefix_items(networks, path_id, add_path)
        encoded.extend(_update_message(b"", block, chunk) for chunk in _pack(prefixes, room))
    return encoded


_UPDATE_ROOM = MAX_MESSAGE_LEN - HEADER_LEN - 4  # body minus the two length fields


def _prefix_items(routes: Sequence[Route], path_id: int | Mapping[IPv4Network, int], add_path: bool) -> list[bytes]:
    items: list[bytes] = []
    for route in routes:
        if isinstance(route, tuple):
            net, own_id = route
            items.append(_U32.pack(own_id) + _prefix_bytes(net) if add_path else _prefix_bytes(net))
        elif not add_path:
            items.append(_prefix_bytes(route))
        else:
            items.append(_U32.pack(path_id if isinstance(path_id, int) else path_id[route]) + _prefix_bytes(route))
    return items


def _pack(items: Sequence[bytes], room: int) -> Iterator[bytes]:
    """Greedy in-order fill: every chunk but the last is within 8 bytes of `room`, so the
    count is the minimum possible for prefixes kept in order."""
    start, used = 0, 0
    for index, item in enumerate(items):
        if used + len(item) > room:
            yield b"".join(items[start:index])
            start, used = index, 0
        used += len(item)
    if start < len(items):
        yield b"".join(items[start:])


def cache_clear() -> None:
    """Forget every memoised decode/encode result (tests, memory pressure)."""
    for cached in (_decode_update, _decode_block, _attribute_block, _network, _decode_open, _encode_open):
        cached.cache_clear()
