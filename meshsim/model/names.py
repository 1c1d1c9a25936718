"""Resource names: Calico's rule for what a name may be, and the file names meshsim derives from them.

Owns `name_problem(name)`, `file_stem(name)` and `veth_name(namespace, pod)`.
- Calico validates every resource name (`metadata.name`) as a DNS-1123 subdomain: lower-case alphanumerics, '-'
  and '.', starting and ending with an alphanumeric, at most 253 bytes (libcalico-go
  `lib/validator/v3/validator.go`: `nameSubdomainFmt`, `validateObjectMeta` with
  `k8svalidation.DNS1123SubdomainMaxLength`; Kubernetes `apimachinery/pkg/util/validation` IsDNS1123Subdomain
  applies the same rule to Node, Pod and Secret names). Such a name holds no '/', no "..", nothing a shell or a
  path would read specially.
- A valid 253-character node name plus ".route" does not fit Linux's 255-byte file-name limit, so files named
  after nodes (`status/<node>.txt`, `routes/<node>.ip`, `logs/<node>.log`) use `file_stem(name)`: the name itself
  when it leaves room for a suffix, else its head and a hash of the whole name.
Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 253  # k8svalidation.DNS1123SubdomainMaxLength
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
NAME_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")  # libcalico-go validator.go nameSubdomainFmt
NAME_RULE = ("a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or "
             f"digit, at most {MAX_NAME} characters (Calico's and Kubernetes' rule for resource names)")

FILE_NAME_MAX = 255  # NAME_MAX on Linux file systems, in bytes
SUFFIX_ROOM = 16  # the longest suffix meshsim appends to a stem (".route", ".txt", ".log.1", ...), with margin
_HASH_CHARS = 16


def name_problem(name: object) -> str | None:
    """Why `name` is not a valid resource name, or None when it is."""
    if not isinstance(name, str):
        return "is not a string"
    if not name:
        return "is empty"
    if len(name.encode()) > MAX_NAME:
        return f"is {len(name.encode())} bytes long, {len(name.encode()) - MAX_NAME} over the limit"
    if not NAME_RE.match(name):
        if name != name.lower():
            return "has upper-case letters"
        if "/" in name:
            return "contains '/'"
        return "has characters or a shape a resource name cannot have"
    return None


def file_stem(name: str) -> str:
    """A file-name stem for a valid resource name: the name itself when stem + a suffix of up to SUFFIX_ROOM
    bytes fits in 255 bytes, otherwise the name's head, '-' and 16 hex digits of its SHA-256 (distinct names give
    distinct stems). Refuses an invalid name rather than produce a path from it."""
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"not a valid resource name ({problem}): {name[:80]!r}")
    limit = FILE_NAME_MAX - SUFFIX_ROOM
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_CHARS]
    head = name[: limit - _HASH_CHARS - 1].rstrip(".-")
    return f"{head}-{digest}"


def veth_name(namespace: str, pod: str, prefix: str = "cali") -> str:
    """Calico's host-side veth name: prefix + first 11 hex chars of sha1("<namespace>.<pod>")
    (libcalico-go lib/names VethNameForWorkload)."""
    digest = hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()
    return prefix + digest[:11]


__all__ = ["veth_name", "MAX_NAME", "NAME_RE", "NAME_RULE", "name_problem", "file_stem"]
