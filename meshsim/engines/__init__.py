"""BGP engines a node agent drives: meshsim's own asyncio sessions, or real BIRD."""
