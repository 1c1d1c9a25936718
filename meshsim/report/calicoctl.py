"""Text renderings users know from Calico tools.

Owns the boxed table of olekukonko/tablewriter as calicoctl uses it (upper-case headers centred,
cells left-aligned, numbers right-aligned), `calicoctl node status`, an IPAM block table in the
style of `calicoctl ipam show --show-blocks`, and the peerings table of `meshsim peers`, plus
tabwriter-style columns (`calicoctl get`: minwidth 5, padding 3). Pure: no asyncio, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from meshsim.model.cluster import Cluster
from meshsim.model.peering import Peering

_NUMERIC = re.compile(r"^-?\d+(\.\d+)?$")


def boxed_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """tablewriter's default ASCII table, as calicoctl prints it."""
    headers = [h.upper() for h in headers]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centred(text: str, width: int) -> str:
        gap = width - len(text)
        left = gap // 2  # tablewriter Pad(): gapLeft = ceil(float(gap / 2)) with integer gap/2
        return " " * left + text + " " * (gap - left)

    lines = [sep, "| " + " | ".join(centred(h, widths[i]) for i, h in enumerate(headers)) + " |", sep]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cells.append(cell.rjust(widths[i]) if _NUMERIC.match(cell) else cell.ljust(widths[i]))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(sep)
    return "\n".join(lines) + "\n"


def columns(headers: Sequence[str], rows: Sequence[Sequence[str]], minwidth: int = 5, padding: int = 3) -> str:
    """Go text/tabwriter output as `calicoctl get` uses it."""
    widths = [max(minwidth, len(h)) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    out = []
    for row in [list(headers), *[list(r) for r in rows]]:
        line = "".join(cell.ljust(widths[i] + padding) if i < len(row) - 1 else cell for i, cell in enumerate(row))
        out.append(line.rstrip())
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class StatusRow:
    """One row of `calicoctl node status`."""

    peer_address: str
    peer_type: str
    state: str  # BIRD protocol state: up | start | down
    since: str
    info: str  # Established | Active Socket: ... | Passive | Connect ...


def node_status(rows: Sequence[StatusRow], running: bool = True) -> str:
    if not running:
        return "Calico process is not running.\n"
    out = ["Calico process is running.", "", "IPv4 BGP status"]
    text = "\n".join(out) + "\n"
    if rows:
        text += boxed_table(["Peer address", "Peer type", "State", "Since", "Info"],
                            [[r.peer_address, r.peer_type, r.state, r.since, r.info] for r in rows])
    else:
        text += "No IPv4 peers found.\n"
    text += "\nIPv6 BGP status\nNo IPv6 peers found.\n\n"
    return text


def peerings_table(peerings: dict[str, list[Peering]], only: str | None = None) -> str:
    rows = []
    for node, lst in peerings.items():
        if only is not None and node != only:
            continue
        for p in lst:
            rr = f"rr client (cluster {p.cluster_id})" if p.rr_client else ""
            passive = "this node" if p.passive else "peer" if _peer_is_passive(peerings, p) else "neither"
            rows.append([node, p.name, str(p.peer_address) + (f":{p.peer_port}" if p.peer_port else ""),
                         p.peer_node or "(external)", p.type, f"AS {p.local_as}->{p.peer_as}", passive, rr])
    headers = ["NODE", "PROTOCOL", "PEER ADDRESS", "PEER NODE", "PEER TYPE", "AS", "PASSIVE SIDE", "RR"]
    return columns(headers, rows)


def _peer_is_passive(peerings: dict[str, list[Peering]], p: Peering) -> bool:
    for q in peerings.get(p.peer_node or "", []):
        if q.peer_node == p.node and q.peer_address == p.local_address:
            return q.passive
    return False


def _pct(part: int, whole: int) -> str:
    return f"{part} ({(100.0 * part / whole) if whole else 0:.0f}%)"


def ipam_table(cluster: Cluster) -> str:
    """Pools and blocks with their use, per node, then borrowed addresses."""
    rows = []
    for pool in cluster.scenario.pools:
        blocks = sorted((b for b in cluster.ipam.blocks.values() if b.pool == pool.name), key=lambda b: b.cidr)
        used = sum(b.in_use for b in blocks)
        total = pool.cidr.num_addresses
        rows.append(["IP Pool", str(pool.cidr), "", str(total), _pct(used, total), _pct(total - used, total)])
        for b in blocks:
            owner = b.affinity or "(none)"
            if b.state != "confirmed":
                owner += f" ({b.state})"
            rows.append(["Block", str(b.cidr), owner, str(b.size), _pct(b.in_use, b.size), _pct(b.free, b.size)])
    text = boxed_table(["Grouping", "CIDR", "Affinity", "IPs total", "IPs in use", "IPs free"], rows)
    borrowed = cluster.ipam.borrowed()
    if borrowed:
        brows = []
        for a in borrowed:
            block = cluster.ipam.blocks.get(a.block)
            owner = block.affinity if block and block.affinity else "(none)"
            pod = next((p.key for p in cluster.pods.values() if p.ip == a.ip), a.handle)
            brows.append([str(a.ip), str(a.block), owner, a.node, pod])
        text += "\nBorrowed addresses (each exported as a /32 by the node that uses it)\n"
        text += boxed_table(["Address", "Block", "Block affinity", "Used on node", "Pod"], brows)
    return text
