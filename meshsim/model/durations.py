"""Durations as Calico writes them: Go's `time.ParseDuration` syntax ("2m0s", "1h0m0s", "1.5s", "300ms", "0").

Owns `parse_go_duration` (Go's syntax only, as Kubernetes' metav1.Duration reads it) and `parse_duration` (the same,
plus a bare number of seconds for meshsim's own fields), both refusing negative, NaN, infinite and out-of-range
values (Go's Duration is int64 nanoseconds: about 292 years). Pure: stdlib only.
"""

from __future__ import annotations

import math
import re
from typing import Any

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
MAX_DURATION = 290 * 365 * 24 * 3600.0  # Go's time.Duration (int64 nanoseconds) tops out at ~292 years


def parse_go_duration(text: str) -> float | None:
    """Go's `time.ParseDuration` (what Kubernetes' metav1.Duration reads): "2m0s", "1h0m0s", "1.5s", "300ms",
    "0" -> seconds; None when Go would refuse it (a bare number other than 0, an unknown unit, ...)."""
    s = text.strip()
    sign = 1.0
    if s[:1] in ("-", "+"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        return None
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _GO_PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            return None
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    total *= sign
    return total if abs(total) <= MAX_DURATION else None


def parse_duration(value: Any) -> float | None:
    """A duration in seconds from a Go duration ("2m0s", "9s", "500ms", "1h30m") or, for meshsim's own fields, a
    bare number of seconds (9, 1.5) and the older "1.5m"; None when unparsable, negative, NaN or infinite."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            go = parse_go_duration(text)
            if go is None:
                return None
            seconds = go
    else:
        return None
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0 or seconds > MAX_DURATION:
        return None
    return seconds


__all__ = ["parse_go_duration", "parse_duration", "MAX_DURATION"]
