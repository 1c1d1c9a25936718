"""Where nodes run: processes on this machine, network namespaces, or containers (compose)."""
