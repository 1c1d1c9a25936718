"""Tests for messages.py and codec.py: round trips, packing, BIRD 2 golden bytes, malformed input.

Golden files (golden/bird_to_*.hex) were recorded from BIRD 2.0.12 by capture_bird.py: every
message BIRD sent to four peers driven by this codec (see that script's docstring).
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import subprocess
import sys
import textwrap
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshsim.bgp import codec
from meshsim.bgp import messages as m
from meshsim.bgp.codec import CodecError, decode, encode, encode_updates, frame
from meshsim.bgp.messages import (
    Capabilities,
    EndOfRib,
    GracefulRestart,
    Keepalive,
    Negotiated,
    Notification,
    Open,
    Origin,
    PathAttrs,
    RouteRefresh,
    Update,
)

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent / "golden" / "bgp"
A = IPv4Address
N = IPv4Network

IBGP = Negotiated(64512, 64512, 90, asn4=True, add_path_send=False, add_path_receive=False, route_refresh=True)
IBGP_ADD_PATH = Negotiated(64512, 64512, 90, True, add_path_send=True, add_path_receive=True, route_refresh=True)
EBGP = Negotiated(64512, 65001, 90, asn4=True, add_path_send=False, add_path_receive=False, route_refresh=True)
OLD_SPEAKER = Negotiated(64512, 64512, 90, asn4=False, add_path_send=False, add_path_receive=False, route_refresh=True)

NODE = PathAttrs(next_hop=A("192.168.0.81"))
REFLECTED = PathAttrs(
    next_hop=A("192.168.0.82"),
    originator_id=A("10.0.0.2"),
    cluster_list=(A("10.0.0.1"), A("10.0.0.9")),
    communities=("64512:200",),
)


def header(length: int, msg_type: int) -> bytes:
    return b"\xff" * 16 + struct.pack("!HB", length, msg_type)


def message(msg_type: int, body: bytes) -> bytes:
    return header(19 + len(body), msg_type) + body


def update_body(attributes: bytes, nlri: bytes = b"\x1a\x0a\xf4\x03\x00", withdrawn: bytes = b"") -> bytes:
    return struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attributes)) + attributes + nlri


def attribute(flags: int, code: int, value: bytes) -> bytes:
    return bytes([flags, code, len(value)]) + value


ORIGIN_IGP = attribute(0x40, 1, b"\x00")
EMPTY_AS_PATH = attribute(0x40, 2, b"")
NEXT_HOP = attribute(0x40, 3, bytes([192, 168, 0, 81]))
MANDATORY = ORIGIN_IGP + EMPTY_AS_PATH + NEXT_HOP


def roundtrip(msg: m.Message, negotiated: Negotiated | None = IBGP) -> m.Message:
    return decode(encode(msg, negotiated), negotiated)


def decode_update(raw: bytes, negotiated: Negotiated = IBGP) -> Update:
    msg = decode(raw, negotiated)
    assert isinstance(msg, Update), msg
    return msg


def decode_attrs(raw: bytes, negotiated: Negotiated = IBGP) -> PathAttrs:
    attrs = decode_update(raw, negotiated).attrs
    assert attrs is not None
    return attrs


def decode_open(raw: bytes) -> Open:
    msg = decode(raw, None)
    assert isinstance(msg, Open), msg
    return msg


def raises_codec_error(raw: bytes, negotiated: Negotiated | None = IBGP) -> CodecError:
    with pytest.raises(CodecError) as info:
        decode(raw, negotiated)
    return info.value


# ============================================================================ messages.py


class TestNegotiate:
    def test_hold_time_is_the_minimum_and_asn4_needs_both(self) -> None:
        local = Open(64512, 90, A("10.0.0.1"), Capabilities(asn4=64512))
        remote = Open(64512, 30, A("10.0.0.2"), Capabilities())
        agreed = m.negotiate(local, remote)
        assert agreed.hold_time == 30
        assert agreed.asn4 is False
        assert agreed.ibgp

    @pytest.mark.parametrize(
        ("ours", "theirs", "send", "receive"),
        [(3, 3, True, True), (2, 1, True, False), (1, 2, False, True), (2, 2, False, False), (3, 0, False, False)],
    )
    def test_add_path_directions(self, ours: int, theirs: int, send: bool, receive: bool) -> None:
        def caps(mode: int) -> Capabilities:
            return Capabilities(add_path=((1, 1, mode),) if mode else ())

        agreed = m.negotiate(Open(64512, 90, A("10.0.0.1"), caps(ours)), Open(64512, 90, A("10.0.0.2"), caps(theirs)))
        assert (agreed.add_path_send, agreed.add_path_receive) == (send, receive)

    def test_four_octet_peer_and_graceful_restart(self) -> None:
        gr = GracefulRestart(True, 120, ((1, 1, True),))
        remote = Open(23456, 90, A("10.0.0.2"), Capabilities(asn4=4200000001, graceful_restart=gr, route_refresh=False))
        agreed = m.negotiate(Open(64512, 90, A("10.0.0.1"), Capabilities(asn4=64512)), remote)
        assert agreed.peer_as == 4200000001
        assert agreed.asn4 and not agreed.route_refresh and not agreed.ibgp
        assert agreed.peer_graceful_restart == gr


class TestCheckOpen:
    ours = A("10.0.0.1")

    def open(self, **changes: Any) -> Open:
        return dataclasses.replace(Open(64512, 90, A("10.0.0.2"), Capabilities()), **changes)

    def test_acceptable(self) -> None:
        assert m.check_open(64512, self.open(), self.ours) is None
        assert m.check_open(64512, self.open(hold_time=0), self.ours) is None  # 0 disables keepalives
        assert m.check_open(64512, self.open(hold_time=3), self.ours) is None

    def test_unsupported_version(self) -> None:
        assert m.check_open(64512, self.open(version=3), self.ours) == Notification(2, 1, b"\x00\x04")

    def test_bad_peer_as_uses_my_as(self) -> None:
        four = self.open(asn=23456, capabilities=Capabilities(asn4=4200000001))
        assert m.check_open(4200000001, four, self.ours) is None
        assert m.check_open(23456, four, self.ours) == Notification(2, 2)
        assert m.check_open(65001, self.open(), self.ours) == Notification(2, 2)

    def test_bad_identifier(self) -> None:
        assert m.check_open(64512, self.open(router_id=A("0.0.0.0")), self.ours) == Notification(2, 3)
        assert m.check_open(64512, self.open(router_id=self.ours), self.ours) == Notification(2, 3)
        # RFC 6286 §2.2: the same identifier is fine from an external peer
        ebgp = self.open(asn=65001, router_id=self.ours)
        assert m.check_open(65001, ebgp, self.ours, local_as=64512) is None

    @pytest.mark.parametrize("hold", [1, 2])
    def test_unacceptable_hold_time(self, hold: int) -> None:
        assert m.check_open(64512, self.open(hold_time=hold), self.ours) == Notification(2, 6)


def test_update_path_ids_must_be_parallel() -> None:
    with pytest.raises(ValueError):
        Update(nlri=(N("10.0.0.0/8"),), attrs=NODE, nlri_path_ids=(1, 2))
    with pytest.raises(ValueError):
        GracefulRestart(False, 4096)


# ============================================================================ round trips


CAPABILITY_SETS = [
    Capabilities(multiprotocol=(), route_refresh=False),
    Capabilities(),
    Capabilities(asn4=64512),
    Capabilities(asn4=4200000000),
    Capabilities(graceful_restart=GracefulRestart(True, 4095, ((1, 1, True), (2, 1, False)))),
    Capabilities(graceful_restart=GracefulRestart(False, 0)),
    Capabilities(add_path=((1, 1, 1),)),
    Capabilities(add_path=((1, 1, 2),)),
    Capabilities(add_path=((1, 1, 3), (2, 1, 1))),
    Capabilities(
        multiprotocol=((1, 1), (2, 1)),
        asn4=4200000000,
        graceful_restart=GracefulRestart(True, 120, ((1, 1, True),)),
        add_path=((1, 1, 3),),
    ),
]


@pytest.mark.parametrize("capabilities", CAPABILITY_SETS)
def test_open_roundtrip(capabilities: Capabilities) -> None:
    asn = 23456 if (capabilities.asn4 or 0) > 0xFFFF else 64512
    sent = Open(asn, 90, A("10.0.0.1"), capabilities)
    assert roundtrip(sent, None) == sent


def test_open_writes_as_trans_for_a_four_octet_as() -> None:
    raw = encode(Open(4200000000, 90, A("10.0.0.1"), Capabilities(asn4=4200000000)), None)
    assert raw[20:22] == struct.pack("!H", 23456)  # RFC 6793 §4.1
    received = decode_open(raw)
    assert received.asn == 23456 and received.my_as == 4200000000


@pytest.mark.parametrize(
    "msg",
    [
        Keepalive(),
        Notification(6, 2),
        Notification(3, 5, b"\x40\x03\x05abcde"),
        RouteRefresh(),
        RouteRefresh(1, 1, 1),
        RouteRefresh(1, 1, 2),
        EndOfRib(),
        EndOfRib(2, 1),
        EndOfRib(1, 2),
    ],
)
def test_small_messages_roundtrip(msg: m.Message) -> None:
    assert roundtrip(msg) == msg


def test_keepalive_and_notification_decode_before_open() -> None:
    assert decode(codec.KEEPALIVE_BYTES, None) == Keepalive()
    assert roundtrip(Notification(2, 2), None) == Notification(2, 2)


def test_route_refresh_unknown_subtype_is_passed_up_not_refused() -> None:
    assert decode(message(5, b"\x00\x01\x07\x01"), IBGP) == RouteRefresh(1, 1, 7)  # RFC 7313 §5: ignore


def test_mp_unreach_end_of_rib_short_form() -> None:
    # MP_UNREACH_NLRI without the extended-length flag, IPv4 unicast (RFC 4724 §2)
    raw = message(2, update_body(attribute(0x80, 15, b"\x00\x01\x01"), nlri=b""))
    assert decode(raw, IBGP) == EndOfRib(1, 1)


ATTRIBUTE_SETS = [
    NODE,
    PathAttrs(next_hop=A("10.0.0.1"), local_pref=200, med=0, origin=Origin.EGP),
    PathAttrs(next_hop=A("10.0.0.1"), origin=Origin.INCOMPLETE, med=4294967295, local_pref=0),
    PathAttrs(next_hop=A("10.0.0.1"), as_path=(65001, 65002, 65001)),
    PathAttrs(next_hop=A("10.0.0.1"), as_path=(4200000001, 65010, 4200000002)),
    PathAttrs(next_hop=A("10.0.0.1"), as_path=tuple(range(64512, 64512 + 300))),  # 2 segments (RFC 4271 §4.3)
    PathAttrs(next_hop=A("10.0.0.1"), communities=("64512:100", "65535:65281", "0:0", "64512:7:8", "1:2:3")),
    REFLECTED,
]


@pytest.mark.parametrize("attrs", ATTRIBUTE_SETS)
@pytest.mark.parametrize("negotiated", [IBGP, IBGP_ADD_PATH, OLD_SPEAKER], ids=["ibgp", "add-path", "old-speaker"])
def test_update_roundtrip(attrs: PathAttrs, negotiated: Negotiated) -> None:
    update = Update(
        withdrawn=(N("10.244.7.0/26"), N("0.0.0.0/0")),
        attrs=attrs,
        nlri=(N("10.244.3.0/26"), N("10.0.0.0/8"), N("192.168.0.81/32"), N("0.0.0.0/0")),
    )
    if negotiated.add_path_send:
        ids = {"nlri_path_ids": (1, 2, 2**32 - 1, 0), "withdrawn_path_ids": (5, 6)}
        update = Update(update.withdrawn, attrs, update.nlri, **ids)
    assert roundtrip(update, negotiated) == update


def test_ebgp_omits_local_pref_and_decodes_the_default() -> None:
    attrs = PathAttrs(next_hop=A("10.0.0.1"), local_pref=300, as_path=(64512,))
    raw = encode(Update(attrs=attrs, nlri=(N("10.0.0.0/24"),)), EBGP)
    assert b"\x40\x05\x04" not in raw  # RFC 4271 §5.1.5
    assert decode_attrs(raw, EBGP).local_pref == 100


def test_four_octet_path_to_an_old_speaker_uses_as4_path() -> None:
    attrs = PathAttrs(next_hop=A("10.0.0.1"), as_path=(64512, 4200000001))
    raw = encode(Update(attrs=attrs, nlri=(N("10.0.0.0/24"),)), OLD_SPEAKER)
    block = raw[23 : 23 + struct.unpack("!H", raw[21:23])[0]]
    codes = [code for code, _ in codec._walk_attributes(block)]
    assert codes == sorted(codes) and 17 in codes  # AS4_PATH, in type-code order
    assert b"\x02\x02\xfc\x00\x5b\xa0" in block  # AS_PATH 64512 AS_TRANS (RFC 6793 §4.2.2)
    assert decode_attrs(raw, OLD_SPEAKER).as_path == (64512, 4200000001)


def test_as4_path_between_new_speakers_is_ignored() -> None:
    as_path = attribute(0x40, 2, b"\x02\x01" + struct.pack("!I", 65001))
    bogus_as4 = attribute(0xC0, 17, b"\x02\x01" + struct.pack("!I", 4200000009))
    raw = message(2, update_body(ORIGIN_IGP + as_path + NEXT_HOP + bogus_as4))
    assert decode_attrs(raw).as_path == (65001,)  # RFC 6793 §4.1


def test_communities_decode_in_wire_order_standard_then_large() -> None:
    attrs = PathAttrs(next_hop=A("10.0.0.1"), communities=("1:2:3", "64512:9", "65535:65281", "4:5:6"))
    got = decode_attrs(encode(Update(attrs=attrs, nlri=(N("10.0.0.0/24"),)), IBGP))
    assert got.communities == ("64512:9", "65535:65281", "1:2:3", "4:5:6")


def test_nlri_trailing_bits_are_ignored() -> None:
    raw = message(2, update_body(MANDATORY, nlri=b"\x1a\x0a\xf4\x03\xff"))  # 10.244.3.255/26
    assert decode_update(raw).nlri == (N("10.244.3.192/26"),)


def test_withdraw_only_update_has_no_attrs() -> None:
    update = Update(withdrawn=(N("10.244.3.0/26"),))
    assert roundtrip(update) == update
    assert encode(Update(withdrawn=update.withdrawn, attrs=NODE), IBGP) == encode(update, IBGP)


def test_encode_refuses_caller_errors() -> None:
    with pytest.raises(ValueError):
        encode(Update(nlri=(N("10.0.0.0/8"),)), IBGP)  # NLRI without attrs
    with pytest.raises(ValueError):
        encode(Update(attrs=NODE, nlri=(N("10.0.0.0/8"),)), None)
    with pytest.raises(ValueError):
        encode(Update(attrs=PathAttrs(next_hop=A("10.0.0.1"), med=2**32), nlri=(N("10.0.0.0/8"),)), IBGP)
    with pytest.raises(ValueError):
        encode(Update(attrs=PathAttrs(next_hop=A("10.0.0.1"), communities=("1",)), nlri=(N("10.0.0.0/8"),)), IBGP)
    with pytest.raises(ValueError):
        encode(Update(attrs=NODE, nlri=tuple(N(f"10.{i >> 8}.{i & 255}.0/24") for i in range(2000))), IBGP)
    with pytest.raises(ValueError):
        encode(Open(64512, 70000, A("10.0.0.1"), Capabilities()), None)


# ============================================================================ packing


def prefixes(count: int, length: int = 26) -> list[IPv4Network]:
    step = 1 << (32 - length)
    return [N((int(A("10.0.0.0")) + i * step, length)) for i in range(count)]


def decoded(raws: list[bytes], negotiated: Negotiated) -> list[Update]:
    assert all(len(raw) <= 4096 for raw in raws)
    return [decode_update(raw, negotiated) for raw in raws]


def minimum_messages(item_bytes: int, count: int, room: int) -> int:
    return math.ceil(item_bytes * count / (room - room % item_bytes))


class TestEncodeUpdates:
    def test_300_prefixes_fit_one_update(self) -> None:
        raws = encode_updates({NODE: prefixes(300)}, [], IBGP)
        assert len(raws) == 1
        assert decoded(raws, IBGP)[0].nlri == tuple(prefixes(300))

    @pytest.mark.parametrize("negotiated", [IBGP, IBGP_ADD_PATH], ids=["plain", "add-path"])
    def test_many_prefixes_use_the_minimum_number_of_updates(self, negotiated: Negotiated) -> None:
        nets = prefixes(3000)
        raws = encode_updates({REFLECTED: nets}, [], negotiated, path_id=7)
        block = codec.attribute_block(REFLECTED, negotiated)
        item = 5 + (4 if negotiated.add_path_send else 0)
        assert len(raws) == minimum_messages(item, len(nets), 4096 - 23 - len(block))
        updates = decoded(raws, negotiated)
        assert sum((u.nlri for u in updates), ()) == tuple(nets)
        assert all(u.attrs == REFLECTED for u in updates)
        if negotiated.add_path_send:
            assert {i for u in updates for i in u.nlri_path_ids} == {7}

    def test_withdrawals_come_first_in_their_own_minimal_updates(self) -> None:
        gone = prefixes(2000, 24)
        raws = encode_updates({NODE: prefixes(10)}, gone, IBGP)
        updates = decoded(raws, IBGP)
        withdrawing = [u for u in updates if u.withdrawn]
        assert len(withdrawing) == minimum_messages(4, len(gone), 4096 - 23)
        assert all(not u.nlri for u in withdrawing) and updates[: len(withdrawing)] == withdrawing
        assert sum((u.withdrawn for u in withdrawing), ()) == tuple(gone)
        assert updates[-1].nlri == tuple(prefixes(10))

    def test_one_run_per_attribute_set_in_order(self) -> None:
        other = PathAttrs(next_hop=A("192.168.0.99"), med=5)
        announce = {NODE: prefixes(3), other: prefixes(2, 24), REFLECTED: []}
        updates = decoded(encode_updates(announce, [], IBGP), IBGP)
        assert [(u.attrs, u.nlri) for u in updates] == [(NODE, tuple(prefixes(3))), (other, tuple(prefixes(2, 24)))]

    def test_path_id_mapping(self) -> None:
        nets = prefixes(3)
        ids = {net: index + 100 for index, net in enumerate(nets)}
        (raw,) = encode_updates({NODE: nets}, [], IBGP_ADD_PATH, path_id=ids)
        assert decode_update(raw, IBGP_ADD_PATH).nlri_path_ids == (100, 101, 102)
        (plain,) = encode_updates({NODE: nets}, [], IBGP, path_id=ids)  # ignored without ADD-PATH
        assert decode_update(plain).nlri_path_ids == ()

    def test_one_prefix_as_two_paths_with_their_own_ids(self) -> None:
        # RFC 7911 §3: a reflector with ADD-PATH sends one prefix once per path (bird-behaviour.md §7.2)
        net, other = prefixes(2)
        second = PathAttrs(next_hop=A("192.168.0.3"), originator_id=A("192.168.0.3"), cluster_list=(A("244.0.0.1"),))
        raws = encode_updates({REFLECTED: [(net, 9), (other, 9)], second: [(net, 11)]}, [(other, 7), (net, 5)],
                              IBGP_ADD_PATH)
        updates = decoded(raws, IBGP_ADD_PATH)
        assert [(u.withdrawn, u.withdrawn_path_ids) for u in updates if u.withdrawn] == [((other, net), (7, 5))]
        assert [(u.attrs, u.nlri, u.nlri_path_ids) for u in updates if u.nlri] == [
            (REFLECTED, (net, other), (9, 9)), (second, (net,), (11,))]
        # without ADD-PATH the ids are not written
        (plain,) = encode_updates({NODE: [(net, 3)]}, [], IBGP)
        assert decode_update(plain).nlri == (net,) and decode_update(plain).nlri_path_ids == ()

    def test_nothing_to_send(self) -> None:
        assert encode_updates({}, [], IBGP) == []


# ============================================================================ BIRD 2 golden bytes


def golden(name: str) -> list[bytes]:
    lines = (GOLDEN / f"bird_to_{name}.hex").read_text().splitlines()
    return [bytes.fromhex(line) for line in lines if line and not line.startswith("#")]


# The OPEN each of our peers sent BIRD when the golden files were recorded (capture_bird.py).
OUR_OPENS = {
    "a": Open(
        64512,
        90,
        A("10.0.0.2"),
        Capabilities(asn4=64512, graceful_restart=GracefulRestart(False, 120, ((1, 1, True),)), add_path=((1, 1, 3),)),
    ),
    "b": Open(64512, 90, A("10.0.0.3"), Capabilities(asn4=64512)),
    "c": Open(23456, 90, A("10.0.0.4"), Capabilities(asn4=4200000001)),
    "d": Open(65001, 90, A("10.0.0.5"), Capabilities(asn4=None)),
}


class BirdSession(NamedTuple):
    open: Open  # BIRD's OPEN
    messages: list[m.Message]  # every message decoded, the OPEN first
    raws: list[bytes]
    ours: Negotiated  # the session as our peer saw it
    bird_view: Negotiated  # the session as BIRD saw it

    def updates(self) -> list[Update]:
        return [msg for msg in self.messages if isinstance(msg, Update)]

    def update_for(self, prefix: IPv4Network) -> Update:
        return next(update for update in self.updates() if prefix in update.nlri)


def bird_session(name: str) -> BirdSession:
    """Decode one golden file as the peer did."""
    raws = golden(name)
    bird_open = decode_open(raws[0])
    ours = m.negotiate(OUR_OPENS[name], bird_open)
    decoded = [bird_open, *(decode(raw, ours) for raw in raws[1:])]
    return BirdSession(bird_open, decoded, raws, ours, m.negotiate(bird_open, OUR_OPENS[name]))


class TestBirdGolden:
    def test_open_with_add_paths_and_graceful_restart(self) -> None:
        session = bird_session("a")
        assert session.open == Open(
            64512,
            90,
            A("10.0.0.1"),
            Capabilities(
                multiprotocol=((1, 1),),
                route_refresh=True,
                asn4=64512,
                graceful_restart=GracefulRestart(False, 120, ((1, 1, False),)),
                add_path=((1, 1, 3),),
            ),
        )
        assert session.ours.add_path_send and session.ours.add_path_receive

    def test_open_without_add_paths_and_as_trans(self) -> None:
        assert bird_session("b").open.capabilities.add_path == ()
        open_c = bird_session("c").open
        assert (open_c.asn, open_c.my_as) == (23456, 4200000000)
        assert open_c.capabilities.graceful_restart == GracefulRestart(False, 120, ())  # "aware" only

    def test_updates_carry_bird_path_ids(self) -> None:
        session = bird_session("a")
        updates = session.updates()
        assert all(len(u.nlri_path_ids) == len(u.nlri) > 0 for u in updates if u.nlri)
        marked = session.update_for(N("10.244.1.0/26"))
        assert marked.nlri == (N("10.244.1.0/26"),)
        assert marked.attrs == PathAttrs(
            next_hop=A("10.0.0.1"), med=42, communities=("64512:100", "65535:65281", "64512:7:8")
        )
        (withdrawal,) = [u for u in updates if u.withdrawn]  # peer c withdrew its route
        assert withdrawal.withdrawn == (N("10.250.0.0/24"),) and len(withdrawal.withdrawn_path_ids) == 1
        assert withdrawal.withdrawn_path_ids == session.update_for(N("10.250.0.0/24")).nlri_path_ids

    def test_bird_reflected_our_route_with_originator_and_cluster_list(self) -> None:
        reflected = bird_session("b").update_for(N("10.244.9.0/26"))
        # what peer a sent through this codec, plus RFC 4456 §8 attributes added by BIRD
        assert reflected.attrs == PathAttrs(
            next_hop=A("192.168.0.82"),
            communities=("64512:200",),
            originator_id=A("10.0.0.2"),
            cluster_list=(A("10.0.0.1"),),
        )

    def test_old_speaker_gets_as_trans_and_as4_path(self) -> None:
        session = bird_session("d")
        assert not session.ours.asn4
        external = session.update_for(N("10.250.0.0/24")).attrs
        assert external is not None and external.as_path == (64512, 4200000001, 65010)  # RFC 6793 §4.2.3

    def test_every_session_ends_its_table_with_end_of_rib(self) -> None:
        for name in "abcd":
            assert EndOfRib() in bird_session(name).messages

    @pytest.mark.parametrize("name", list("abcd"))
    def test_reencoding_bird_updates_is_byte_identical(self, name: str) -> None:
        session = bird_session(name)
        for msg, raw in zip(session.messages, session.raws, strict=True):
            if isinstance(msg, Open):
                assert decode(encode(msg, None), None) == msg  # capability layout differs (see README)
            else:
                assert encode(msg, session.bird_view) == raw

    @pytest.mark.parametrize("name", list("abcd"))
    def test_frame_splits_the_concatenated_stream(self, name: str) -> None:
        raws = golden(name)
        stream = b"".join(raws)
        assert frame(stream) == (raws, len(stream))
        assert frame(stream[:-1]) == (raws[:-1], len(stream) - len(raws[-1]))


# ============================================================================ framing and malformed input


class TestFrame:
    def test_partial_header_and_body(self) -> None:
        assert frame(b"") == ([], 0)
        assert frame(codec.KEEPALIVE_BYTES[:18]) == ([], 0)
        two = codec.KEEPALIVE_BYTES * 2
        assert frame(bytearray(two + b"\xff" * 5)) == ([codec.KEEPALIVE_BYTES] * 2, 38)
        assert frame(memoryview(two)) == ([codec.KEEPALIVE_BYTES] * 2, 38)

    def test_incomplete_message_is_left_for_later(self) -> None:
        raw = encode(Notification(6, 2, b"x" * 100), None)
        assert frame(raw[:50]) == ([], 0)


HEADER_ERRORS = [
    (b"\xfe" + b"\xff" * 15 + struct.pack("!HB", 19, 4), (1, 1, b"")),
    (header(18, 4), (1, 2, b"\x00\x12")),
    (header(4097, 2) + b"\x00" * 4078, (1, 2, b"\x10\x01")),
    (header(19, 0), (1, 3, b"\x00")),
    (header(19, 6), (1, 3, b"\x06")),
    (header(19, 255), (1, 3, b"\xff")),
    (header(20, 4) + b"\x00", (1, 2, b"\x00\x14")),  # KEEPALIVE must be 19
    (header(28, 1) + b"\x00" * 9, (1, 2, b"\x00\x1c")),  # OPEN >= 29
    (header(22, 2) + b"\x00" * 3, (1, 2, b"\x00\x16")),  # UPDATE >= 23
    (header(20, 3) + b"\x06", (1, 2, b"\x00\x14")),  # NOTIFICATION >= 21
    (header(24, 5) + b"\x00" * 5, (1, 2, b"\x00\x18")),  # ROUTE-REFRESH == 23
]


@pytest.mark.parametrize(("raw", "expected"), HEADER_ERRORS)
def test_header_errors(raw: bytes, expected: tuple[int, int, bytes]) -> None:
    for call in (lambda: frame(codec.KEEPALIVE_BYTES + raw), lambda: decode(raw, IBGP)):
        with pytest.raises(CodecError) as info:
            call()
        assert (info.value.code, info.value.subcode, info.value.data) == expected


def test_decode_length_must_match_the_bytes() -> None:
    assert raises_codec_error(codec.KEEPALIVE_BYTES + b"\x00").subcode == 2
    assert raises_codec_error(b"\xff" * 10).code == 1


def test_update_and_refresh_before_open_are_fsm_errors() -> None:
    for raw in (encode(EndOfRib(), None), encode(RouteRefresh(), None)):
        error = raises_codec_error(raw, None)
        assert (error.code, error.subcode, error.data) == (5, 1, raw[18:19])  # RFC 6608 §4


class TestOpenErrors:
    good = encode(Open(64512, 90, A("10.0.0.1"), Capabilities(asn4=64512)), None)

    def test_unsupported_version(self) -> None:
        raw = self.good[:19] + b"\x03" + self.good[20:]
        error = raises_codec_error(raw, None)
        assert (error.code, error.subcode, error.data) == (2, 1, b"\x00\x04")

    def test_optional_parameters_length_mismatch(self) -> None:
        raw = bytearray(self.good)
        raw[28] += 1
        error = raises_codec_error(bytes(raw), None)
        assert (error.code, error.subcode) == (2, 0)

    def test_unknown_optional_parameter(self) -> None:
        body = b"\x04\xfc\x00\x00\x5a\x0a\x00\x00\x01" + b"\x03" + b"\x07\x01\x00"
        error = raises_codec_error(message(1, body), None)
        assert (error.code, error.subcode) == (2, 4)

    @pytest.mark.parametrize(
        "capability",
        [b"\x41\x02\x00\x01", b"\x01\x02\x00\x01", b"\x40\x01\x00", b"\x45\x03\x00\x01\x01", b"\x41"],
        ids=["asn4-short", "mp-short", "gr-short", "addpath-trailing", "truncated"],
    )
    def test_malformed_capabilities(self, capability: bytes) -> None:
        params = b"\x02" + bytes([len(capability)]) + capability
        body = b"\x04\xfc\x00\x00\x5a\x0a\x00\x00\x01" + bytes([len(params)]) + params
        error = raises_codec_error(message(1, body), None)
        assert (error.code, error.subcode) == (2, 0)


def update_error(block: bytes, nlri: bytes = b"\x1a\x0a\xf4\x03\x00", negotiated: Negotiated = IBGP) -> CodecError:
    return raises_codec_error(message(2, update_body(block, nlri)), negotiated)


class TestUpdateErrors:
    def test_withdrawn_length_too_large(self) -> None:
        error = raises_codec_error(message(2, b"\x00\x10\x00\x00"))
        assert (error.code, error.subcode) == (3, 1)  # RFC 4271 §6.3

    def test_attribute_length_too_large(self) -> None:
        error = raises_codec_error(message(2, b"\x00\x00\x00\x40" + MANDATORY))
        assert (error.code, error.subcode) == (3, 1)

    def test_attribute_overruns_the_list(self) -> None:
        error = update_error(MANDATORY + b"\x40\x05\x09\x00")
        assert (error.code, error.subcode) == (3, 1)

    def test_truncated_attribute_header(self) -> None:
        error = update_error(MANDATORY + b"\x40")
        assert (error.code, error.subcode) == (3, 1)
        error = update_error(MANDATORY + b"\x50\x05\x00")  # extended length needs 4 header octets
        assert (error.code, error.subcode) == (3, 1)

    def test_unrecognized_well_known(self) -> None:
        bad = attribute(0x40, 99, b"\x01")
        error = update_error(MANDATORY + bad)
        assert (error.code, error.subcode, error.data) == (3, 2, bad)

    def test_unknown_optional_attributes_are_ignored(self) -> None:
        optional = attribute(0xC0, 99, b"\x01") + attribute(0x80, 98, b"\x02")
        assert decode_attrs(message(2, update_body(MANDATORY + optional))) == NODE

    @pytest.mark.parametrize(
        ("missing", "block"),
        [(1, EMPTY_AS_PATH + NEXT_HOP), (2, ORIGIN_IGP + NEXT_HOP), (3, ORIGIN_IGP + EMPTY_AS_PATH), (1, b"")],
    )
    def test_missing_well_known(self, missing: int, block: bytes) -> None:
        error = update_error(block)
        assert (error.code, error.subcode, error.data) == (3, 3, bytes([missing]))

    def test_missing_attributes_are_fine_without_nlri(self) -> None:
        raw = message(2, update_body(NEXT_HOP, nlri=b"", withdrawn=b"\x18\x0a\x00\x00"))
        assert decode(raw, IBGP) == Update(withdrawn=(N("10.0.0.0/24"),))

    @pytest.mark.parametrize(
        "bad",
        [
            attribute(0xC0, 1, b"\x00"),  # ORIGIN marked optional
            attribute(0x60, 3, bytes(4)),  # NEXT_HOP with the partial bit
            attribute(0xC0, 4, bytes(4)),  # MED marked transitive
            attribute(0x40, 9, bytes(4)),  # ORIGINATOR_ID marked well-known
            attribute(0x80, 8, bytes(4)),  # COMMUNITIES marked non-transitive
        ],
    )
    def test_attribute_flags_error(self, bad: bytes) -> None:
        code = bad[1]
        block = b"".join(a for a in (ORIGIN_IGP, EMPTY_AS_PATH, NEXT_HOP) if a[1] != code) + bad
        error = update_error(block)
        assert (error.code, error.subcode, error.data) == (3, 4, bad)  # RFC 4271 §6.3

    @pytest.mark.parametrize(
        "bad",
        [
            attribute(0x40, 1, b"\x00\x00"),
            attribute(0x40, 3, bytes(5)),
            attribute(0x40, 3, b""),
            attribute(0x80, 4, bytes(3)),
            attribute(0x40, 5, bytes(8)),
            attribute(0xC0, 8, bytes(5)),
            attribute(0xC0, 8, b""),
            attribute(0x80, 9, bytes(16)),
            attribute(0x80, 10, bytes(6)),
            attribute(0xC0, 32, bytes(13)),
        ],
    )
    def test_attribute_length_error(self, bad: bytes) -> None:
        code = bad[1]
        block = b"".join(a for a in (ORIGIN_IGP, EMPTY_AS_PATH, NEXT_HOP) if a[1] != code) + bad
        error = update_error(block)
        assert (error.code, error.subcode, error.data) == (3, 5, bad)

    def test_invalid_origin(self) -> None:
        bad = attribute(0x40, 1, b"\x03")
        error = update_error(bad + EMPTY_AS_PATH + NEXT_HOP)
        assert (error.code, error.subcode, error.data) == (3, 6, bad)

    @pytest.mark.parametrize(
        "path",
        [
            b"\x05\x01\x00\x00\xfc\x00",
            b"\x02\x02\x00\x00\xfc\x00",
            b"\x02",
            b"\x02\x00",
            b"\x02\x01\x00\x00\xfc\x00\x01",
        ],
        ids=["bad-type", "overrun", "half-header", "empty-segment", "trailing"],
    )
    def test_malformed_as_path(self, path: bytes) -> None:
        error = update_error(ORIGIN_IGP + attribute(0x40, 2, path) + NEXT_HOP)
        assert (error.code, error.subcode) == (3, 11)

    @pytest.mark.parametrize(
        "nlri",
        [b"\x21\x0a\x00\x00\x00\x00", b"\x18\x0a\x00", b"\x08"],
        ids=["length-33", "truncated", "no-octets"],
    )
    def test_invalid_network_field(self, nlri: bytes) -> None:
        error = update_error(MANDATORY, nlri=nlri)
        assert (error.code, error.subcode) == (3, 10)
        withdrawn = raises_codec_error(message(2, update_body(b"", nlri=b"", withdrawn=nlri)))
        assert (withdrawn.code, withdrawn.subcode) == (3, 10)

    def test_truncated_path_identifier(self) -> None:
        error = update_error(MANDATORY, nlri=b"\x00\x00\x00\x01", negotiated=IBGP_ADD_PATH)
        assert (error.code, error.subcode) == (3, 10)

    def test_add_path_shapes_the_parse(self) -> None:
        raw = message(2, update_body(MANDATORY, nlri=b"\x00\x00\x00\x01\x1a\x0a\xf4\x03\x00"))
        assert decode_update(raw, IBGP_ADD_PATH).nlri_path_ids == (1,)
        # Without ADD-PATH the same bytes are other prefixes: the session shape is part of the key.
        assert decode_update(raw).nlri[:3] == (N("0.0.0.0/0"),) * 3

    def test_duplicate_attribute_first_one_wins(self) -> None:
        raw = message(2, update_body(MANDATORY + attribute(0x40, 3, bytes([1, 2, 3, 4]))))
        assert decode_attrs(raw).next_hop == A("192.168.0.81")  # RFC 7606 §3 (g), as ExaBGP

    def test_mp_reach_for_an_unnegotiated_family(self) -> None:
        mp = attribute(0x80, 14, b"\x00\x02\x01\x10" + bytes(16) + b"\x00\x40\x20\x01\x0d\xb8\x00\x00\x00\x00")
        error = update_error(MANDATORY + mp, nlri=b"")
        assert (error.code, error.subcode) == (3, 9)  # RFC 4760 §7


def test_mp_reach_ipv4_unicast_is_merged() -> None:
    mp = attribute(0x80, 14, b"\x00\x01\x01\x04" + bytes([192, 168, 0, 90]) + b"\x00" + b"\x18\x0a\x01\x02")
    unreach = attribute(0x80, 15, b"\x00\x01\x01" + b"\x18\x0a\x09\x09")
    raw = message(2, update_body(ORIGIN_IGP + EMPTY_AS_PATH + mp + unreach, nlri=b""))
    assert decode(raw, IBGP) == Update(
        withdrawn=(N("10.9.9.0/24"),), attrs=PathAttrs(next_hop=A("192.168.0.90")), nlri=(N("10.1.2.0/24"),)
    )


# ============================================================================ caches


def test_decode_is_memoised_per_session_shape() -> None:
    raw = encode(Update(attrs=REFLECTED, nlri=(N("10.44.0.0/26"),)), IBGP)
    first = decode(raw, IBGP)
    assert decode(bytes(bytearray(raw)), IBGP) is first  # equal bytes, another object: still a hit
    other_peer = Negotiated(64512, 64512, 30, True, False, False, False)  # same wire shape
    assert decode(raw, other_peer) is first
    assert codec.session_key(other_peer) == codec.session_key(IBGP)
    assert codec.session_key(IBGP_ADD_PATH) != codec.session_key(IBGP)


def test_attribute_block_is_shared_between_updates() -> None:
    codec.cache_clear()
    for index in range(5):
        decode(encode(Update(attrs=REFLECTED, nlri=(N(f"10.45.{index}.0/24"),)), IBGP), IBGP)
    assert codec._decode_block.cache_info().misses == 1


# ============================================================================ ExaBGP cross-checks


def test_prefix_parser_agrees_with_exabgp() -> None:
    from exabgp.bgp.message import Message as ExaMessage
    from exabgp.bgp.message.direction import Direction

    nets = [*prefixes(50, 26), N("0.0.0.0/0"), N("10.0.0.0/8"), N("10.1.1.128/25"), N("10.255.255.255/32")]
    for negotiated in (IBGP, IBGP_ADD_PATH):
        (raw,) = encode_updates({NODE: nets}, [], negotiated, path_id=3)
        exa = ExaMessage.unpack(2, raw[19:], Direction.IN, codec._exa_negotiated(codec.session_key(negotiated)))
        assert [nlri.cidr.prefix() for nlri in exa.nlris] == [str(net) for net in nets]
        assert decode_update(raw, negotiated).nlri == tuple(nets)


# ============================================================================ environment isolation


def test_exabgp_environment_is_not_read_from_the_user(tmp_path: Path) -> None:
    envfile = tmp_path / "exabgp.env"
    envfile.write_text("[exabgp.cache]\nattributes = false\n[exabgp.log]\nlevel = DEBUG\nall = true\n")
    script = textwrap.dedent(
        f"""
        import os
        from ipaddress import IPv4Address, IPv4Network
        from meshsim.bgp import codec, messages as m
        import exabgp.environment.base as base, exabgp.version
        from exabgp.environment import getenv

        env = getenv()
        assert env.cache.attributes is True and env.log.all is False and env.tcp.port == 179
        assert exabgp.version.version == "5.0.15", exabgp.version.version
        assert base.ENVFILE != {str(envfile)!r}
        assert os.environ["exabgp_version"] == "9.9.9"  # restored after the import
        session = m.Negotiated(1, 1, 90, True, False, False, True)
        update = m.Update(attrs=m.PathAttrs(next_hop=IPv4Address("1.2.3.4")), nlri=(IPv4Network("10.0.0.0/24"),))
        raw = codec.encode(update, session)
        assert codec.decode(raw, session) == update
        try:
            codec.decode(raw[:-1], None)
        except codec.CodecError:
            pass
        """
    )
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[1]), EXABGP_ENVFILE=str(envfile), exabgp_version="9.9.9")
    env.update({"exabgp_log_all": "true", "exabgp.log.level": "DEBUG", "exabgp_cache_attributes": "false"})
    env["exabgp.tcp.port"] = "1790"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""  # ExaBGP's logger is silent


def test_other_exabgp_releases_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import exabgp.version

    monkeypatch.setattr(exabgp.version, "release", "5.0.16")
    with pytest.raises(ImportError, match=r"5\.0\.15"):
        codec._check_exabgp_version()


# ============================================================================ property tests


MESSAGE_TYPES = st.sampled_from([1, 2, 3, 4, 5])
SESSIONS = st.sampled_from([None, IBGP, IBGP_ADD_PATH, OLD_SPEAKER])
WIRE_SESSIONS = st.sampled_from([IBGP, IBGP_ADD_PATH, OLD_SPEAKER])
# CODEC_FUZZ_EXAMPLES=20000 for a long run; "never hangs" is the deadline (2 s per example).
FUZZ = settings(
    max_examples=int(os.environ.get("CODEC_FUZZ_EXAMPLES", "600")),
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ
@given(msg_type=MESSAGE_TYPES, body=st.binary(max_size=300), negotiated=SESSIONS)
def test_random_body_after_a_valid_header(msg_type: int, body: bytes, negotiated: Negotiated | None) -> None:
    raw = message(msg_type, body)
    try:
        result = decode(raw, negotiated)
    except CodecError as error:
        assert 1 <= error.code <= 7 and isinstance(error.data, bytes)
        return
    assert isinstance(result, (Open, Update, EndOfRib, Keepalive, Notification, RouteRefresh))


GOLDEN_MESSAGES = [raw for name in "abcd" for raw in golden(name)]


@FUZZ
@given(
    index=st.integers(0, len(GOLDEN_MESSAGES) - 1),
    edits=st.lists(st.tuples(st.integers(19, 200), st.integers(0, 255)), min_size=1, max_size=4),
    negotiated=SESSIONS,
)
def test_mutated_bird_messages(index: int, edits: list[tuple[int, int]], negotiated: Negotiated | None) -> None:
    raw = bytearray(GOLDEN_MESSAGES[index])
    for position, value in edits:
        if position < len(raw):
            raw[position] = value
    try:
        result = decode(bytes(raw), negotiated)
    except CodecError:
        return
    assert isinstance(result, (Open, Update, EndOfRib, Keepalive, Notification, RouteRefresh))


@FUZZ
@given(buf=st.binary(max_size=200))
def test_frame_random_bytes(buf: bytes) -> None:
    try:
        messages, used = frame(b"\xff" * 16 + buf)
    except CodecError:
        return
    assert sum(map(len, messages)) == used


def _any_prefix(address: int, length: int) -> IPv4Network:
    return N((address >> (32 - length) << (32 - length) if length else 0, length))


PREFIXES = st.builds(_any_prefix, st.integers(0, 2**32 - 1), st.integers(0, 32))


@settings(max_examples=200, deadline=2000)
@given(nets=st.lists(PREFIXES, max_size=400), add_path=st.booleans())
def test_packing_roundtrip_property(nets: list[IPv4Network], add_path: bool) -> None:
    negotiated = IBGP_ADD_PATH if add_path else IBGP
    raws = encode_updates({NODE: nets}, nets[:50], negotiated)
    updates = decoded(raws, negotiated)
    assert sum((u.withdrawn for u in updates), ()) == tuple(nets[:50])
    assert sum((u.nlri for u in updates), ()) == tuple(nets)


ATTRIBUTE_CODES = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 22, 25, 26, 29, 32, 40, 99])
FLAGS = st.sampled_from([0x40, 0x80, 0xC0, 0xE0, 0x50, 0x90, 0xD0, 0x00, 0x60]) | st.integers(0, 255)


@st.composite
def attribute_blocks(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        flags, code, value = draw(FLAGS), draw(ATTRIBUTE_CODES), draw(st.binary(max_size=40))
        length = struct.pack("!H", len(value)) if flags & 0x10 else bytes([len(value)])
        parts.append(bytes([flags, code]) + length + value)
    return b"".join(parts)


@FUZZ
@given(block=attribute_blocks(), nlri=st.binary(max_size=20), negotiated=WIRE_SESSIONS)
def test_structured_attribute_fuzz(block: bytes, nlri: bytes, negotiated: Negotiated) -> None:
    try:
        result = decode(message(2, update_body(block, nlri)), negotiated)
    except CodecError as error:
        assert error.code in (3, 1)
        return
    assert isinstance(result, (Update, EndOfRib))
