"""One node's agent: the HTTP API, its state and counters, the kernel dataplane, around a BGP engine."""
