"""meshsim: an emulator of Calico's BGP control plane.

The public API (meshsim.api), imported lazily so that `import meshsim` (and the pytest plugin, which every
pytest run in an environment with meshsim loads) stays cheap:
- `emulate(*scenario_files, text=..., workers=..., isolation=..., ...)`: an async context manager yielding an
  `Emulation`, a running cluster to drive and read;
- `EventRecord`, `PeerEndpoint`, `EmulationError`, `NotConverged`, `MeshsimError` (every error meant for a person).

Inside: the pure core (meshsim.model, meshsim.bgp, meshsim.routes, meshsim.oracle) reads no clock and does no
I/O; adapters (agent, engines, fabric, run, cli) sit around it; only `meshsim.bgp.codec` imports ExaBGP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshsim.errors import MeshsimError

__version__ = "0.1.0"
__all__ = ["emulate", "Emulation", "EventRecord", "PeerEndpoint", "EmulationError", "NotConverged", "MeshsimError",
           "__version__"]

if TYPE_CHECKING:
    from meshsim.api import EmulationError, Emulation, EventRecord, NotConverged, PeerEndpoint, emulate


def __getattr__(name: str) -> Any:
    if name in ("emulate", "Emulation", "EventRecord", "PeerEndpoint", "EmulationError", "NotConverged"):
        import meshsim.api

        return getattr(meshsim.api, name)
    raise AttributeError(f"module 'meshsim' has no attribute {name!r}")
