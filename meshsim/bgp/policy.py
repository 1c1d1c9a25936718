"""Import and export rules of one Calico node's BIRD, as pure functions.

Owns: `ExportContext`, `import_check()` (RFC 4456 §8 loop checks, RFC 4271 §9.1.2 AS
loop with BIRD's `allow local as N`, the peer's BGPFilter import rules), `normalize_import()`,
and `export_decision()`/`export()`: the peer's BGPFilter export rules, then Calico's
`calico_export_to_bgp_peers` filter (v3.28: disabled pools, apply_communities, calico_aggr,
service static routes, the route reflector's LB ranges, pools), then the BGP rules in one
function, like GoBGP's `filterpath` (never back to the source, iBGP split horizon, RFC 4456
reflection, eBGP attribute rewriting with `next hop keep`). Pure: stdlib and meshsim.bgp only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import TypeAlias

from meshsim.bgp.filters import PrefixCommunities, RouteFacts, communities_for, merge_communities, run_filters
from meshsim.bgp.types import PathAttrs
from meshsim.bgp.rib import Path, PeerInfo

__all__ = [
    "ExportContext",
    "ExportDecision",
    "calico_export",
    "Memo",
    "calico_filter",
    "route_facts",
    "export",
    "export_decision",
    "import_check",
    "normalize_import",
]


@dataclass(frozen=True)
class ExportContext:
    """What the rules need to know about the local node."""

    router_id: IPv4Address
    """Our BGP identifier, equal to our declared node address (also our next hop)."""
    local_as: int
    cluster_id: IPv4Address | None = None
    """Set => we are a route reflector (Calico `routeReflectorClusterID`)."""
    exportable_pools: tuple[IPv4Network, ...] = ()
    """IP pools that are neither `disabled` nor `disableBGPExport`."""
    affine_blocks: tuple[IPv4Network, ...] = ()
    """Our own (confirmed) affine blocks: what `calico_aggr()` is rendered from."""
    rejected_pools: tuple[IPv4Network, ...] = ()
    """Pools with disableBGPExport (or disabled): `reject_disabled_pools()`, the filter's first step."""
    static_routes: tuple[IPv4Network, ...] = ()
    """confd's static routes (service IPs): `if ( net ~ S ) then { accept; }` after calico_aggr."""
    rr_accept: tuple[IPv4Network, ...] = ()
    """On a route reflector, the serviceLoadBalancerIPs ranges: routes inside them are accepted too."""
    communities: tuple[PrefixCommunities, ...] = ()
    """prefixAdvertisements: apply_communities()."""
    host_interface: str = "eth0"
    """The interface BGP routes resolve through (`ifname` of a learned route, for BGPFilter interface rules)."""
    local_interfaces: tuple[tuple[IPv4Network, str], ...] = ()
    """`ifname` of our own /32s: a pod's cali device, tunl0 for the tunnel address (blocks and static routes
    are blackholes: no ifname)."""

    filter_cache: dict[IPv4Network, tuple[bool, str]] = field(default_factory=dict, compare=False, repr=False)
    """calico_filter() results for this context (they depend on the prefix and the context only)."""

    def __post_init__(self) -> None:
        for name in ("exportable_pools", "affine_blocks", "rejected_pools", "static_routes", "rr_accept",
                     "communities", "local_interfaces"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def is_route_reflector(self) -> bool:
        return self.cluster_id is not None


@dataclass(frozen=True)
class ExportDecision:
    """The outcome of exporting one path to one peer: the attributes to send, or None,
    and a short reason either way (for logs, `meshsim trace` and tests)."""

    attrs: PathAttrs | None
    reason: str

    @property
    def accepted(self) -> bool:
        return self.attrs is not None


def _is_ebgp(peer: PeerInfo, ctx: ExportContext) -> bool:
    return peer.asn != ctx.local_as


# --------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------


def normalize_import(attrs: PathAttrs, source: PeerInfo, ctx: ExportContext) -> PathAttrs:
    """Attributes as stored for a path received from `source`.

    From an eBGP peer, LOCAL_PREF is ignored (RFC 4271 §5.1.5) and ORIGINATOR_ID /
    CLUSTER_LIST, which never cross an AS boundary (RFC 4456 §8), are dropped.
    """
    if not _is_ebgp(source, ctx):
        return attrs
    return replace(attrs, local_pref=100, originator_id=None, cluster_list=())


def import_check(path: Path, ctx: ExportContext) -> str | None:
    """Why a received path must be ignored, or None to accept it."""
    attrs, source = path.attrs, path.source
    if source is None:
        return None
    # RFC 4456 §8: a route whose ORIGINATOR_ID is our own router id is ignored.
    if attrs.originator_id is not None and attrs.originator_id == ctx.router_id:
        return f"ORIGINATOR_ID {attrs.originator_id} is our router id (RFC 4456 §8)"
    # RFC 4456 §8: an RR ignores a route whose CLUSTER_LIST holds its cluster id. BIRD checks it
    # per session, and only on sessions to its own clients (`rr client`, whose `rr cluster id` confd
    # renders as ours): BIRD 1.6 bgp_decode_attrs -> bgp_cluster_list_loopy() tests p->rr_client, BIRD 2
    # bgp_decode_attrs `if (p->rr_client && bgp_cluster_list_loopy(p, attrs))`. So a reflector keeps
    # what another reflector of the same cluster reflects to it (a second, longer path per client block).
    if ctx.cluster_id is not None and source.rr_client and ctx.cluster_id in attrs.cluster_list:
        return f"CLUSTER_LIST contains our cluster id {ctx.cluster_id} (RFC 4456 §8)"
    # RFC 4271 §9.1.2: a route from an external peer whose AS_PATH holds our AS is a loop; BIRD's
    # `allow local as N` (BGPPeer numAllowedLocalASNumbers) accepts up to N occurrences.
    if _is_ebgp(source, ctx) and attrs.as_path.count(ctx.local_as) > source.allow_local_as:
        allowed = f" more than {source.allow_local_as} times (allow local as)" if source.allow_local_as else ""
        return f"AS_PATH contains our AS {ctx.local_as}{allowed} (RFC 4271 §9.1.2)"
    # The BGPFilters of the peer (confd: `import filter { 'bgp_NAME_importFilterV4'(); ... accept; }`).
    if source.import_filters:
        verdict, why = run_filters(source.import_filters, RouteFacts(path.prefix, True, ctx.host_interface))
        if verdict == "reject":
            return f"{why}: import rejected"
    return None


# --------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------


def calico_filter(prefix: IPv4Network, ctx: ExportContext) -> tuple[bool, str]:
    """Calico's `calico_export_to_bgp_peers` (v3.28 bird_ipam.cfg.template), reduced to what a
    meshsim node can hold, in the template's order: reject_disabled_pools(), calico_aggr(), the
    static routes, a route reflector's LB ranges, then `net ~ POOL`, else reject.
    (apply_communities() sits between the first two; `calico_export` adds the communities.)
    Memoised per context: a route reflector asks it once per client for the same prefix."""
    cached = ctx.filter_cache.get(prefix)
    if cached is None:
        cached = ctx.filter_cache[prefix] = _calico_filter(prefix, ctx)
    return cached


def _calico_filter(prefix: IPv4Network, ctx: ExportContext) -> tuple[bool, str]:
    for pool in ctx.rejected_pools:
        if prefix.subnet_of(pool):
            return False, f"{prefix} is in pool {pool}, whose BGP export is disabled (reject_disabled_pools)"
    # calico_aggr(): `if net = BLOCK then accept; if net ~ BLOCK then reject;` per block.
    for block in ctx.affine_blocks:
        if prefix == block:
            return True, f"{prefix} is our affine block (calico_aggr: net = BLOCK accept)"
        if prefix.subnet_of(block):
            return False, f"{prefix} is inside our affine block {block} (calico_aggr: net ~ BLOCK reject)"
    for static in ctx.static_routes:
        if prefix.subnet_of(static):
            return True, f"{prefix} is in the static route {static} (a service range: net ~ S accept)"
    if ctx.cluster_id is not None:
        for lb in ctx.rr_accept:
            if prefix.subnet_of(lb):
                return True, f"{prefix} is in the LB range {lb} a route reflector accepts"
    pool = next((p for p in ctx.exportable_pools if prefix.subnet_of(p)), None)
    if pool is None:
        return False, f"{prefix} is in no exportable IP pool (calico: disabled pool / not a pool route)"
    return True, f"{prefix} is in pool {pool} (net ~ POOL accept)"


def calico_export(prefix: IPv4Network, attrs: PathAttrs, ctx: ExportContext) -> tuple[PathAttrs | None, str]:
    """calico_export_to_bgp_peers with its apply_communities(): the attributes with the prefixAdvertisements'
    communities added, or None."""
    ok, why = calico_filter(prefix, ctx)
    if not ok:
        return None, why
    added = communities_for(prefix, ctx.communities)
    if added:
        attrs = replace(attrs, communities=merge_communities(attrs.communities, added))
    return attrs, why


def route_facts(path: Path, ctx: ExportContext) -> RouteFacts:
    """What a BGPFilter condition sees of a route in our table."""
    if path.source is not None:
        return RouteFacts(path.prefix, True, ctx.host_interface)
    ifname = next((name for net, name in ctx.local_interfaces if net == path.prefix), None)
    return RouteFacts(path.prefix, False, ifname)


def _to_ebgp(attrs: PathAttrs, ctx: ExportContext, *, local: bool, keep_next_hop: bool = False) -> PathAttrs:
    # RFC 4271 §5.1.2: prepend our AS; §5.1.3: next hop self toward an external peer.
    # RFC 4271 §5.1.5: no LOCAL_PREF to external peers (PathAttrs always carries one, so
    # it is reset to the default and the adapter leaves it out on eBGP sessions).
    # RFC 4271 §5.1.4: a MED learned from a neighbour is not passed on to another AS.
    # RFC 4456 §8: ORIGINATOR_ID and CLUSTER_LIST are not sent to eBGP peers.
    # BIRD `next hop keep` (BGPPeer keepOriginalNextHop): a learned route keeps its NEXT_HOP.
    return replace(
        attrs,
        as_path=(ctx.local_as, *attrs.as_path),
        next_hop=attrs.next_hop if keep_next_hop and not local else ctx.router_id,
        local_pref=100,
        med=attrs.med if local else None,
        originator_id=None,
        cluster_list=(),
    )


def _reflect(path: Path, ctx: ExportContext) -> PathAttrs:
    assert path.source is not None and ctx.cluster_id is not None
    attrs = path.attrs
    return replace(
        attrs,
        # RFC 4456 §10: a reflector does not change NEXT_HOP (attrs.next_hop kept).
        # RFC 4456 §8: ORIGINATOR_ID is set to the originator's router id only if absent.
        originator_id=attrs.originator_id if attrs.originator_id is not None else path.source.router_id,
        # RFC 4456 §8: the reflector prepends its CLUSTER_ID to the CLUSTER_LIST.
        cluster_list=(ctx.cluster_id, *attrs.cluster_list),
    )


Memo: TypeAlias = dict[object, object]
"""What `export_decision` remembers while one path is exported to many peers (see there)."""


def export_decision(path: Path, to: PeerInfo, ctx: ExportContext, memo: Memo | None = None) -> ExportDecision:
    """What to send `to` for `path` (the best path, or with ADD-PATH each candidate): the whole export
    rule set in one place.

    `memo`: a dict the caller keeps while it exports one path to many peers. Past rule 1 (never back to the
    source) the decision depends on `to` only through its kind: internal or external, `rr client` or not,
    its BGPFilters and `next hop keep`; so it is made once per kind (a route reflector reflects a path once
    for all its clients), and the reflected attributes once per attribute set.
    """
    source = path.source
    # 1. Never advertise a path back to the neighbour it came from (BIRD 1.6 bgp_import_control `p == new_bgp`,
    # 2.0 bgp_preexport "Reject our routes").
    if source is not None and source.name == to.name:
        return ExportDecision(None, f"learned from {to.name}: not sent back")
    if memo is None:
        return _decide(path, to, ctx, None)
    kind = (_is_ebgp(to, ctx), to.rr_client, to.export_filters, to.keep_next_hop)
    decision = memo.get(kind)
    if decision is None:
        decision = memo[kind] = _decide(path, to, ctx, memo)
    return decision  # type: ignore[return-value]


def _decide(path: Path, to: PeerInfo, ctx: ExportContext, memo: Memo | None) -> ExportDecision:
    """Rules 2-6 of `export_decision`; they read `to` only through its kind (see there)."""
    source = path.source
    to_ebgp = _is_ebgp(to, ctx)
    if source is not None and not to_ebgp and not _is_ebgp(source, ctx) and ctx.cluster_id is None:
        # 4. RFC 4271 §9.2: routes learned from an internal peer are not re-advertised to other internal
        # peers (iBGP split horizon) unless we are a route reflector. BIRD applies it before any filter
        # (bgp_preexport); checked first, it is also the common case.
        return ExportDecision(None, "iBGP-learned, not a route reflector: split horizon (RFC 4271 §9.2)")

    # 2. The peer's BGPFilters, then Calico's export filter (confd: `export filter {
    #    'bgp_NAME_exportFilterV4'(); calico_export_to_bgp_peers(internal); reject; }`).
    attrs: PathAttrs = path.attrs
    verdict, why = run_filters(to.export_filters, route_facts(path, ctx)) if to.export_filters else (None, "")
    if verdict == "reject":
        return ExportDecision(None, f"{why}: export rejected")
    if verdict is None:
        exported, why = calico_export(path.prefix, attrs, ctx)
        if exported is None:
            return ExportDecision(None, why)
        attrs = exported
    if attrs is not path.attrs:
        path = replace(path, attrs=attrs)

    # 3. Locally originated: to every peer, next hop self (RFC 4271 §5.1.3).
    if source is None:
        if to_ebgp:
            return ExportDecision(_to_ebgp(path.attrs, ctx, local=True), f"{why}; local, to eBGP")
        return ExportDecision(replace(path.attrs, next_hop=ctx.router_id), f"{why}; local")

    if to_ebgp:
        # 6. Best paths go to eBGP peers whatever their source (RFC 4271 §9.2).
        return ExportDecision(_to_ebgp(path.attrs, ctx, local=False, keep_next_hop=to.keep_next_hop),
                              f"{why}; to eBGP")

    if _is_ebgp(source, ctx):
        # Learned over eBGP, sent over iBGP: attributes (and NEXT_HOP) unchanged
        # (RFC 4271 §5.1.3 1; LOCAL_PREF already set on import, §5.1.5).
        return ExportDecision(path.attrs, f"{why}; eBGP-learned to iBGP")

    # From here on: learned over iBGP, going to an iBGP peer, and we are a route reflector.
    # 5. Route reflection, RFC 4456 §8. A path whose CLUSTER_LIST holds our cluster id (learned from
    # a non-client reflector of our cluster) is not sent to our clients (BIRD bgp_import_control ->
    # bgp_cluster_list_loopy() with the client session's `rr cluster id`).
    if to.rr_client and ctx.cluster_id in path.attrs.cluster_list:
        return ExportDecision(None, f"CLUSTER_LIST contains our cluster id {ctx.cluster_id}: not sent to "
                                    f"clients (RFC 4456 §8)")
    if source.rr_client or to.rr_client:
        key = ("reflect", path.attrs)
        reflected = memo.get(key) if memo is not None else None
        if reflected is None:
            reflected = _reflect(path, ctx)
            if memo is not None:
                memo[key] = reflected
        assert isinstance(reflected, PathAttrs)
        if source.rr_client:
            # From a client: reflect to all peers, clients and non-clients, except the source.
            return ExportDecision(reflected, f"{why}; reflected from client {source.name} (RFC 4456 §8)")
        # From a non-client iBGP peer: reflect to clients only.
        return ExportDecision(reflected, f"{why}; reflected from non-client to client (RFC 4456 §8)")
    return ExportDecision(None, "from a non-client, not reflected to a non-client (RFC 4456 §8)")


def export(path: Path, to: PeerInfo, ctx: ExportContext, memo: Memo | None = None) -> PathAttrs | None:
    """Attributes to send `to` for `path`, or None if it must not be sent."""
    return export_decision(path, to, ctx, memo).attrs
