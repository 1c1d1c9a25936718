"""meshsim's own BGP engine: the sans-IO router (meshsim.bgp) over asyncio TCP."""
