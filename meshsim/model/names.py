"""Names used as file names: a node name (a DNS-1123 subdomain, up to 253 characters) as a file stem.

Owns `file_stem(name)`: the name itself when it is short enough for a file name with its suffix, else a
prefix of it and a hash of the whole (so two long names never share a file). Pure.
"""

from __future__ import annotations

import hashlib

MAX_STEM = 200  # leaves room for ".log", ".ip", ".txt" within the 255-byte limit


def file_stem(name: str) -> str:
    if len(name.encode()) <= MAX_STEM and "/" not in name and name not in ("", ".", ".."):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in name)[: MAX_STEM - 17]
    return f"{safe}-{digest}"
