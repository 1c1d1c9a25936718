"""Runners: drive node processes on this machine (local) and observe them."""
