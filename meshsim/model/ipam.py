"""Calico IPAM: blocks, block affinity, auto-assignment, borrowing and release.

Owns `Ipam` (the datastore's view of IPPools and AllocationBlocks) following libcalico-go
`lib/ipam/ipam.go` autoAssign: use the host's affine blocks first, then claim a new block of
a pool whose nodeSelector selects the host (up to maxBlocksPerHost, default 20), then, unless
strictAffinity, borrow a single address from another host's block (exported as a /32 by the
host that runs the workload). Deterministic: a host's block search starts at an offset derived
from its name (Calico's randomBlockGenerator seeds on the hostname too) and borrowing takes the
lowest block with a free address. IPReservations (`reserved`) are never handed out: autoAssign skips them and a
block that is entirely reserved is never claimed (ipam.go / ipam_block.go `reservations`). A block read from a
dump (`load_block`) keeps its affinity, its allocations and Calico's order of free ordinals exactly, and may
lie in a pool that no longer exists (pool ""). Pure: no asyncio, no clock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable, Iterator, Mapping

from meshsim.errors import IpamError
from meshsim.model.resources import IPAMConfiguration, IPPool
from meshsim.model.selectors import parse as parse_selector


@dataclass
class AllocationBlock:
    """One block of a pool (Calico's AllocationBlock); `affinity` is the node it is affine to."""

    cidr: IPv4Network
    pool: str  # "" for a block of a pool that no longer exists (read from a dump)
    affinity: str | None = None
    state: str = "confirmed"
    # Calico keeps free ordinals as a list: allocation takes from the front,
    # release appends to the back (ipam_block.go autoAssign / release).
    unallocated: list[int] = field(default_factory=list)
    handles: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.unallocated and not self.handles:
            self.unallocated = list(range(self.cidr.num_addresses))

    @property
    def size(self) -> int:
        return self.cidr.num_addresses

    @property
    def in_use(self) -> int:
        return len(self.handles)

    @property
    def free(self) -> int:
        return len(self.unallocated)

    def address(self, ordinal: int) -> IPv4Address:
        return self.cidr.network_address + ordinal

    def ordinal(self, ip: IPv4Address) -> int:
        return int(ip) - int(self.cidr.network_address)

    def free_for(self, reserved: tuple[IPv4Network, ...]) -> int:
        """Free addresses that are not reserved (NumFreeAddresses with reservations)."""
        if not reserved:
            return len(self.unallocated)
        mine = [r for r in reserved if r.overlaps(self.cidr)]
        if not mine:
            return len(self.unallocated)
        return sum(1 for o in self.unallocated if not any(self.address(o) in r for r in mine))

    def take(self, handle: str, ip: IPv4Address | None = None, reserved: tuple[IPv4Network, ...] = ()) -> IPv4Address:
        if ip is None:
            # ipam_block.go autoAssign: the first free ordinal in `unallocated` order that is not reserved.
            mine = [r for r in reserved if r.overlaps(self.cidr)]
            index = next(i for i, o in enumerate(self.unallocated) if not any(self.address(o) in r for r in mine))
            ordinal = self.unallocated.pop(index)
        else:
            ordinal = self.ordinal(ip)
            self.unallocated.remove(ordinal)
        self.handles[ordinal] = handle
        return self.address(ordinal)

    def give_back(self, ip: IPv4Address) -> None:
        ordinal = self.ordinal(ip)
        del self.handles[ordinal]
        self.unallocated.append(ordinal)


@dataclass(frozen=True)
class Allocation:
    """One assigned address: which workload (handle) on which node, from which block."""

    handle: str
    ip: IPv4Address
    node: str
    block: IPv4Network
    borrowed: bool  # the block is not affine to `node`: the node exports the /32


@dataclass(frozen=True)
class Release:
    allocation: Allocation
    released_block: IPv4Network | None  # an affinity given up because the block emptied


class Ipam:
    """The cluster's IPAM state. Mutable, but pure: every call is deterministic."""

    def __init__(self, pools: Iterable[IPPool], node_labels: Mapping[str, Mapping[str, str]],
                 config: IPAMConfiguration = IPAMConfiguration(), reserved: Iterable[IPv4Network] = ()) -> None:
        self.pools = tuple(pools)
        self.config = config
        self.reserved = tuple(reserved)
        self.node_labels: dict[str, dict[str, str]] = {k: dict(v) for k, v in node_labels.items()}
        self.blocks: dict[IPv4Network, AllocationBlock] = {}
        self.allocations: dict[str, Allocation] = {}

    # -- queries ------------------------------------------------------------------
    def pool_of(self, net: IPv4Network | IPv4Address) -> IPPool | None:
        if isinstance(net, IPv4Address):
            return next((p for p in self.pools if net in p.cidr), None)
        return next((p for p in self.pools if net.subnet_of(p.cidr)), None)

    def blocks_of(self, node: str, include_pending: bool = True) -> list[AllocationBlock]:
        """Blocks affine to `node`, in address order."""
        return sorted((b for b in self.blocks.values() if b.affinity == node
                       and (include_pending or b.state == "confirmed")), key=lambda b: b.cidr)

    def allocations_on(self, node: str) -> list[Allocation]:
        return sorted((a for a in self.allocations.values() if a.node == node), key=lambda a: a.ip)

    def borrowed(self) -> list[Allocation]:
        return sorted((a for a in self.allocations.values() if a.borrowed), key=lambda a: a.ip)

    def block_containing(self, ip: IPv4Address) -> AllocationBlock | None:
        pool = self.pool_of(ip)
        if pool is None:
            return None
        size = 32 - pool.block_size
        cidr = IPv4Network(((int(ip) >> size) << size, pool.block_size))
        return self.blocks.get(cidr)

    def pools_for(self, node: str) -> list[IPPool]:
        """Enabled pools whose nodeSelector selects the node (Calico: pools usable for autoassign)."""
        labels = self.node_labels.get(node, {})
        return [p for p in self.pools if not p.disabled and parse_selector(p.node_selector).matches(labels)]

    # -- the datastore's state, as dumped (IPAMBlock, BlockAffinity) -----------------------------
    def load_block(self, cidr: IPv4Network, affinity: str | None, state: str, unallocated: Iterable[int] | None,
                   allocations: Iterable[tuple[int, str, str]]) -> AllocationBlock:
        """A block exactly as the datastore holds it: `allocations` are (ordinal, handle key, node running it)."""
        pool = self.pool_of(cidr)
        block = AllocationBlock(cidr=cidr, pool=pool.name if pool else "", affinity=affinity, state=state,
                                unallocated=[], handles={})
        used = set()
        for ordinal, handle, node in allocations:
            block.handles[ordinal] = handle
            used.add(ordinal)
            alloc = Allocation(handle, block.address(ordinal), node, cidr, borrowed=affinity != node)
            self.allocations[handle] = alloc
        if unallocated is None:
            block.unallocated = [o for o in range(cidr.num_addresses) if o not in used]
        else:
            order = list(unallocated)
            rest = [o for o in range(cidr.num_addresses) if o not in used and o not in set(order)]
            block.unallocated = order + rest  # ordinals a dump lists in neither place are free, at the end
        self.blocks[cidr] = block
        return block

    def rekey(self, old: str, new: str, node: str | None = None) -> Allocation:
        """Give an allocation read from a dump the handle meshsim knows it by (a pod's "ns/name", a tunnel's
        handle), and, when a pod shows it runs elsewhere than the attributes said, that node."""
        alloc = self.allocations.pop(old)
        block = self.blocks[alloc.block]
        node = node or alloc.node
        alloc = Allocation(new, alloc.ip, node, alloc.block, borrowed=block.affinity != node)
        block.handles[block.ordinal(alloc.ip)] = new
        self.allocations[new] = alloc
        return alloc

    # -- pinning (BlockAffinity / WorkloadEndpoint resources) -----------------------
    def claim(self, node: str, cidr: IPv4Network, state: str = "confirmed") -> AllocationBlock:
        """Make `cidr` affine to `node` (a pinned BlockAffinity or a new claim)."""
        pool = self.pool_of(cidr)
        if pool is None:
            raise IpamError(node, f"block {cidr} lies in no IPPool")
        block = self.blocks.get(cidr)
        if block is None:
            block = self.blocks[cidr] = AllocationBlock(cidr=cidr, pool=pool.name)
        elif block.affinity not in (None, node):
            raise IpamError(node, f"block {cidr} is already affine to node {block.affinity}")
        block.affinity = node
        block.state = state
        return block

    def assign(self, handle: str, node: str, ip: IPv4Address) -> Allocation:
        """Assign a specific address (a pinned WorkloadEndpoint). An unclaimed block is claimed by `node`."""
        if handle in self.allocations:
            raise IpamError(node, f"handle {handle} already has an address")
        block = self.block_containing(ip)
        if block is None:
            pool = self.pool_of(ip)
            if pool is None:
                raise IpamError(node, f"{ip} lies in no IPPool")
            block = self.claim(node, IPv4Network(f"{ip}/{pool.block_size}", strict=False))
        if block.ordinal(ip) in block.handles:
            raise IpamError(node, f"{ip} is already assigned to {block.handles[block.ordinal(ip)]}")
        if block.ordinal(ip) not in block.unallocated:
            raise IpamError(node, f"{ip} is not a free address of block {block.cidr}")
        block.take(handle, ip)
        alloc = Allocation(handle, ip, node, block.cidr, borrowed=block.affinity != node)
        self.allocations[handle] = alloc
        return alloc

    # -- Calico's autoAssign ----------------------------------------------------------
    def _candidate_blocks(self, node: str, pool: IPPool) -> Iterator[IPv4Network]:
        """Every block of the pool, starting at a host-derived offset (randomBlockGenerator)."""
        count = 1 << (pool.block_size - pool.cidr.prefixlen)
        step = 1 << (32 - pool.block_size)
        start = int.from_bytes(hashlib.sha256(node.encode()).digest()[:8], "big") % count
        base = int(pool.cidr.network_address)
        for i in range(count):
            yield IPv4Network((base + ((start + i) % count) * step, pool.block_size))

    def auto_assign(self, handle: str, node: str, pools: list[IPPool] | None = None) -> Allocation:
        if handle in self.allocations:
            raise IpamError(node, f"handle {handle} already has an address")
        pools = self.pools_for(node) if pools is None else pools
        if not pools:
            raise IpamError(node, "no enabled IPPool's nodeSelector selects this node")
        pool_names = {p.name for p in pools}
        # 1. the host's affine blocks (confirmed), lowest first
        reserved = self.reserved
        for block in self.blocks_of(node, include_pending=False):
            if block.pool in pool_names and block.free_for(reserved):
                return self._take(block, handle, node)
        # 2. claim a new block, unless the host reached maxBlocksPerHost (Calico ErrBlockLimit)
        limit_hit = len(self.blocks_of(node)) >= self.config.max_blocks_per_host
        if not limit_hit:
            for pool in pools:
                for cidr in self._candidate_blocks(node, pool):
                    existing = self.blocks.get(cidr)
                    if existing is None and any(cidr.subnet_of(r) for r in reserved):
                        continue  # "Ignoring block, it is entirely reserved."
                    if existing is None or (existing.affinity is None and existing.free_for(reserved)):
                        return self._take(self.claim(node, cidr), handle, node)
        # 3. borrow from another host's block ("a random hunt through any blocks we haven't yet tried")
        if self.config.strict_affinity:
            why = f"reached maxBlocksPerHost={self.config.max_blocks_per_host}" if limit_hit else \
                "no free block left in its pools"
            raise IpamError(node, f"{why} and strictAffinity forbids borrowing from other nodes' blocks")
        for block in sorted(self.blocks.values(), key=lambda b: b.cidr):
            if block.pool in pool_names and block.affinity != node and block.free_for(reserved):
                return self._take(block, handle, node)
        raise IpamError(node, f"the pools {', '.join(sorted(pool_names))} have no free address left")

    def _take(self, block: AllocationBlock, handle: str, node: str) -> Allocation:
        ip = block.take(handle, reserved=self.reserved)
        alloc = Allocation(handle, ip, node, block.cidr, borrowed=block.affinity != node)
        self.allocations[handle] = alloc
        return alloc

    def release(self, handle: str) -> Release:
        """Free a workload's address. An emptied block is released (kube-controllers releaseUnusedBlocks)
        when its node still has another block; Calico waits a 15 min grace period, meshsim does not."""
        alloc = self.allocations.pop(handle, None)
        if alloc is None:
            raise IpamError("?", f"no address is assigned to handle {handle}")
        block = self.blocks[alloc.block]
        block.give_back(alloc.ip)
        released = None
        if block.in_use == 0:
            if block.affinity is None:
                del self.blocks[block.cidr]
            elif len(self.blocks_of(block.affinity)) > 1:
                released = block.cidr
                del self.blocks[block.cidr]
        return Release(alloc, released)

    def forget_node(self, node: str) -> list[IPv4Network]:
        """A node leaves: release its affinities (Calico's node controller cleans up IPAM)."""
        gone = []
        for handle in [h for h, a in self.allocations.items() if a.node == node]:
            self.release(handle)
        for block in self.blocks_of(node):
            if block.in_use == 0:
                del self.blocks[block.cidr]
            else:
                block.affinity = None
            gone.append(block.cidr)
        self.node_labels.pop(node, None)
        return gone
