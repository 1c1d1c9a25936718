"""Programming a real kernel routing table from the Felix-like agent's deltas (`--dataplane kernel`).

Owns `KernelDataplane`: applies a RouteDelta with iproute2 (`ip [-n NS] route replace|del`), in the
node's own network namespace or container. What it programs:
- BGP routes (`proto bird`), with `onlink` where the route has it;
- own-block blackholes (`blackhole X proto bird`);
- pods: a pod is modelled as its address on `lo` (`ip addr add IP/32 dev lo`), so a ping from or to a pod
  address works; the `dev caliXXXX` route stays in the simulated table only;
- host routes (default, connected) are the host's own and are never touched.
Routes through a device the kernel lacks (this machine has no `ipip` module, so no `tunl0`) are said
once (`dataplane_device_missing`) and stay simulated. Every command has a timeout; failures are logged,
never raised, so a node keeps running with its simulated table.
"""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Network

from meshsim.host.iproute import aip
from meshsim.routes.routetable import Route, RouteDelta

PROTO = "bird"


class KernelDataplane:
    def __init__(self, log, netns: str | None = None, host_interface: str = "eth0") -> None:
        self.log = log
        self.netns = netns
        self.host_interface = host_interface
        self.missing_devices: set[str] = set()
        self.errors = 0
        self.applied = 0
        self._devices: set[str] | None = None
        self._lock = asyncio.Lock()

    async def devices(self) -> set[str]:
        if self._devices is None:
            rc, out = await aip("-o", "link", "show", ns=self.netns)
            self._devices = set()
            if rc == 0:
                for line in out.splitlines():
                    parts = line.split(":")
                    if len(parts) > 1:
                        self._devices.add(parts[1].strip().split("@")[0])
        return self._devices

    def _managed(self, r: Route) -> str | None:
        """'route' (BGP or blackhole), 'pod' (address on lo), or None (host route or simulated only)."""
        if r.type == "blackhole" and r.proto == PROTO:
            return "route"
        if r.proto == PROTO:
            return "route"
        if r.dev and r.dev.startswith("cali") and r.dst.prefixlen == 32:
            return "pod"
        return None

    def _route_args(self, r: Route) -> list[str]:
        args = [] if r.type == "unicast" else [r.type]
        args.append(str(r.dst))
        if r.via is not None:
            args += ["via", str(r.via)]
        if r.dev is not None:
            args += ["dev", r.dev]
        args += ["proto", PROTO]
        if r.onlink:
            args.append("onlink")
        return args

    async def apply(self, delta: RouteDelta) -> None:
        """Program one delta with a single `ip -force -batch -` (a failed line is reported, the rest applied)."""
        async with self._lock:
            devices = await self.devices()
            added = {r.dst for r in delta.added}
            lines: list[str] = []
            for r in delta.removed:
                kind = self._managed(r)
                if kind == "route" and r.dst not in added and (r.dev is None or r.dev in devices):
                    lines.append("route del " + " ".join(self._route_args(r)))
                elif kind == "pod" and r.dst not in added:
                    lines.append(f"addr del {r.dst.network_address}/32 dev lo")
            for r in delta.added:
                kind = self._managed(r)
                if kind == "route":
                    if r.dev is not None and r.dev not in devices:
                        if r.dev not in self.missing_devices:
                            self.missing_devices.add(r.dev)
                            self.log.warning("dataplane_device_missing", device=r.dev,
                                             detail=f"the kernel has no {r.dev}; routes through it stay simulated")
                        continue
                    lines.append("route replace " + " ".join(self._route_args(r)))
                elif kind == "pod":
                    lines.append(f"addr replace {r.dst.network_address}/32 dev lo")
            if not lines:
                return
            rc, out = await aip("-force", "-batch", "-", ns=self.netns, stdin="\n".join(lines) + "\n")
            errors = [ln for ln in out.splitlines() if ln.strip() and "No such process" not in ln
                      and "Cannot assign" not in ln and not ln.startswith("Command failed")]
            self.applied += len(lines)
            if rc != 0 and errors:
                self.errors += 1
                self.log.warning("dataplane_command_failed", commands=len(lines), error=" | ".join(errors[:3]))

    async def kernel_table(self) -> str:
        rc, out = await aip("route", "show", ns=self.netns)
        return out + "\n" if rc == 0 else ""

    async def clear(self, routes: list[Route]) -> None:
        """Remove what we programmed (on stop)."""
        await self.apply(RouteDelta(added=(), removed=tuple(routes)))


__all__ = ["KernelDataplane", "IPv4Network"]
