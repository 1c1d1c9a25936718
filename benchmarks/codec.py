"""Micro-benchmarks for codec.py.

Owns nothing but measurement: CPU µs per operation (process_time), median of several runs.
Run:
    cd /work/scratch/codec && PYTHONPATH=. /work/main/.venv/bin/python bench_codec.py [--runs 9]

"cold"   = nothing memoised: ExaBGP decodes / packs the path attributes.
"warm"   = the UPDATE bytes are new but its attribute block was seen before (the common case:
           many prefixes share attributes) - the decode/encode memo of the block hits.
"hit"    = the very same UPDATE bytes were decoded before (route reflector fan-out inside
           one process); fresh bytes objects each time, so hashing is included.
"exabgp"  = ExaBGP 5.0.15 alone, the way-(d) reference: Update.messages() + Message.unpack();
           warm = ExaBGP's own one-entry attribute cache hits, cold = a new attribute set each time.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from meshsim.bgp import codec  # noqa: E402
from meshsim.bgp import messages as m  # noqa: E402
from meshsim.bgp.messages import PathAttrs, Update  # noqa: E402

IBGP = m.Negotiated(64512, 64512, 90, True, False, False, True)
PLAIN = PathAttrs(next_hop=IPv4Address("192.168.0.81"))  # ORIGIN, AS_PATH, NEXT_HOP, LOCAL_PREF
REFLECTED = PathAttrs(
    next_hop=IPv4Address("192.168.0.81"), originator_id=IPv4Address("10.0.0.2"), cluster_list=(IPv4Address("10.0.0.1"),)
)
N_OPS = 2000


def median_us(batch: Callable[[], object], ops: int, runs: int, setup: Callable[[], object] | None = None) -> float:
    """Median over `runs` of the per-operation CPU time of one batch, in µs.

    CPU time (process_time) rather than wall time: the machine is shared, and a busy
    neighbour inflates wall-clock figures by up to 2x without changing the work done.
    """
    samples = []
    for _ in range(runs):
        if setup is not None:
            setup()
        start = time.process_time()
        batch()
        samples.append((time.process_time() - start) / ops * 1e6)
    return statistics.median(samples)


def prefix(index: int) -> IPv4Network:
    return IPv4Network((0x0AF40000 + index * 64, 26))


def with_next_hop(attrs: PathAttrs, index: int) -> PathAttrs:
    """A distinct attribute set per index (its next hop), so nothing is memoised."""
    return replace(attrs, next_hop=IPv4Address(0xC0A80000 + index))


def update_benchmarks(name: str, attrs: PathAttrs, runs: int) -> dict[str, float]:
    cold_updates = [Update(attrs=with_next_hop(attrs, i), nlri=(prefix(i),)) for i in range(N_OPS)]
    warm_updates = [Update(attrs=attrs, nlri=(prefix(i),)) for i in range(N_OPS)]
    cold_raw = [codec.encode(u, IBGP) for u in cold_updates]
    warm_raw = [codec.encode(u, IBGP) for u in warm_updates]
    one = warm_raw[0]
    copies = [bytes(bytearray(one)) for _ in range(N_OPS)]

    def encode_all(updates: Sequence[Update]) -> Callable[[], object]:
        return lambda: [codec.encode(u, IBGP) for u in updates]

    def decode_all(raws: Sequence[bytes]) -> Callable[[], object]:
        return lambda: [codec.decode(r, IBGP) for r in raws]

    def warm_decode_setup() -> None:
        codec.cache_clear()
        codec.decode(one, IBGP)  # the block is known, the other 1999 messages are not

    results = {
        "encode cold": median_us(encode_all(cold_updates), N_OPS, runs, codec.cache_clear),
        "encode warm": median_us(encode_all(warm_updates), N_OPS, runs, lambda: codec.encode(warm_updates[0], IBGP)),
        "decode cold": median_us(decode_all(cold_raw), N_OPS, runs, codec.cache_clear),
        "decode warm": median_us(decode_all(warm_raw), N_OPS, runs, warm_decode_setup),
        "decode hit": median_us(decode_all(copies), N_OPS, runs, lambda: codec.decode(one, IBGP)),
        "exabgp warm enc+dec": exabgp_reference(attrs, runs, cold=False),
        "exabgp cold enc+dec": exabgp_reference(attrs, runs, cold=True),
    }
    print(f"\nUPDATE, one /26, {name}  ({len(one)} bytes on the wire)")
    for label, value in results.items():
        print(f"  {label:<24} {value:8.2f} µs")
    print(f"  {'codec cold enc+dec':<24} {results['encode cold'] + results['decode cold']:8.2f} µs")
    print(f"  {'codec warm enc+dec':<24} {results['encode warm'] + results['decode warm']:8.2f} µs")
    return results


def exabgp_reference(attrs: PathAttrs, runs: int, cold: bool) -> float:
    """ExaBGP alone: an Update packed and its bytes unpacked again, per operation. Warm: one
    Attributes object reused, so ExaBGP's one-entry wire cache hits on unpack (the way-(d)
    34 µs figure). Cold: a new attribute set (next hop) each time, built from PathAttrs."""
    from exabgp.bgp.message import Action, Message
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.update import Update as ExaUpdate
    from exabgp.bgp.message.update.attribute import NextHop
    from exabgp.bgp.message.update.nlri.cidr import CIDR
    from exabgp.bgp.message.update.nlri.inet import INET
    from exabgp.protocol.family import AFI, SAFI

    negotiated = codec._exa_negotiated(codec.session_key(IBGP))
    exa_attrs = codec._exa_attributes(attrs)
    next_hop = NextHop(str(attrs.next_hop), attrs.next_hop.packed)

    def one(index: int) -> None:
        nlri = INET(AFI.ipv4, SAFI.unicast, Action.ANNOUNCE)
        nlri.cidr = CIDR(prefix(index).network_address.packed, 26)
        if cold:
            fresh = with_next_hop(attrs, index)
            nlri.nexthop = NextHop(str(fresh.next_hop), fresh.next_hop.packed)
            (raw,) = ExaUpdate([nlri], codec._exa_attributes(fresh)).messages(negotiated)
        else:
            nlri.nexthop = next_hop
            (raw,) = ExaUpdate([nlri], exa_attrs).messages(negotiated)
        Message.unpack(2, raw[19:], Direction.IN, negotiated)

    def batch() -> None:
        for index in range(N_OPS):
            one(index)

    return median_us(batch, N_OPS, runs)


def keepalive_benchmark(runs: int) -> float:
    raw = codec.KEEPALIVE_BYTES

    def batch() -> None:
        for _ in range(N_OPS):
            frames, _used = codec.frame(raw)
            codec.decode(frames[0], IBGP)

    return median_us(batch, N_OPS, runs)


def frame_benchmarks(runs: int) -> dict[str, float]:
    updates = [codec.encode(Update(attrs=REFLECTED, nlri=(prefix(i),)), IBGP) for i in range(1000)]
    keepalives = codec.KEEPALIVE_BYTES * 1000
    mixed = b"".join(updates)
    results = {}
    for label, buffer in (("1000 KEEPALIVEs", keepalives), ("1000 UPDATEs", mixed)):
        per_call = median_us(functools.partial(frame_20_times, buffer), 20, runs)
        results[label] = per_call
        print(f"  frame({label}, {len(buffer)} bytes) {per_call:9.1f} µs per call, {per_call / 1000:.3f} µs/message")
    return results


def frame_20_times(buffer: bytes) -> None:
    for _ in range(20):
        codec.frame(buffer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs per measurement; the median is printed")
    runs = parser.parse_args().runs
    print(f"codec benchmarks: median of {runs} runs of {N_OPS} operations (ExaBGP {codec.EXABGP_VERSION})")
    update_benchmarks("ORIGIN/AS_PATH/NEXT_HOP/LOCAL_PREF", PLAIN, runs)
    update_benchmarks("+ ORIGINATOR_ID/CLUSTER_LIST", REFLECTED, runs)
    print(f"\nKEEPALIVE frame()+decode()   {keepalive_benchmark(runs):8.2f} µs")
    print("\nframing")
    frame_benchmarks(runs)


if __name__ == "__main__":
    main()
