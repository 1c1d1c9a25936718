"""meshsim's public API: an emulated Calico cluster that a program or an asyncio test starts, drives step by step,
reads and tears down. Everything here is exported from `meshsim` itself:

    import meshsim

    async with meshsim.emulate("cluster.yaml") as emu:
        record = await emu.kill_node("node2", mode="sigkill")
        await emu.wait_converged()

`emulate` / `Emulation` (meshsim.api.emulation), `EventRecord`, `PeerEndpoint`, `EmulationError`, `NotConverged`
(meshsim.api.records). The pytest plugin (`meshsim_cluster` fixture) is meshsim.pytest_plugin.
"""

from meshsim.api.emulation import Emulation, emulate
from meshsim.api.records import EmulationError, EventRecord, NotConverged, PeerEndpoint

__all__ = ["emulate", "Emulation", "EventRecord", "PeerEndpoint", "EmulationError", "NotConverged"]
