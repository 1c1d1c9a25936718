"""How mesh and route-reflector costs grow with the cluster: exact models, fits, crossovers, what-ifs.

Owns `Shape` (what a cluster like the user's looks like at any size N, N counting ALL nodes, reflectors
included), the exact models BGP implies (sessions: N(N-1)/2 for the mesh, R(R-1)/2 + R(N-R) for R
reflectors sharing a cluster ID; prefix advertisements by the rule of `meshsim.oracle.advertisements`),
`fit()` (least squares with non-negative coefficients over a stated form such as a + b*N + c*N^2; each
term is a cost, so none may be negative), `crossovers()` and `Model.at(N)` for what-if sizes.
Sessions are exact; advertisement counts follow the stated rule; everything fitted (UPDATE messages,
memory, CPU, times) is an estimate and carries its fit error. Pure: plain Python, no I/O.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

MESH, RR = "mesh", "rr"


@dataclass(frozen=True)
class Shape:
    """A cluster like the user's at any size N: R reflectors (rr design), prefixes each node originates at
    cold start (mean over the user's nodes; `p_client`/`p_reflector` in the rr design), and peers outside
    the cluster per node (eBGP and iBGP, e.g. ToRs)."""

    reflectors: int
    p_node: float = 1.0
    p_client: float = 1.0
    p_reflector: float = 1.0
    ext_ebgp: float = 0.0
    ext_ibgp: float = 0.0

    def valid(self, design: str, n: float) -> bool:
        return n >= 2 and (design == MESH or n > self.reflectors)

    def sessions(self, design: str, n: float) -> float:
        """BGP sessions (each counted once), exact."""
        ext = (self.ext_ebgp + self.ext_ibgp) * n
        if design == MESH:
            return n * (n - 1) / 2 + ext
        r = self.reflectors
        return r * (r - 1) / 2 + r * (n - r) + ext

    def sessions_per_node(self, design: str, n: float) -> tuple[float, float]:
        """(a client's sessions, the busiest node's sessions); in a mesh both are N-1."""
        ext = self.ext_ebgp + self.ext_ibgp
        if design == MESH:
            return n - 1 + ext, n - 1 + ext
        return self.reflectors + ext, n - 1 + ext

    def prefixes(self, design: str, n: float) -> float:
        if design == MESH:
            return self.p_node * n
        return self.p_client * (n - self.reflectors) + self.p_reflector * self.reflectors

    def cold_advertisements(self, design: str, n: float) -> float:
        """Prefix advertisements of a cold start, by the rule. Mesh: every prefix from its origin to the
        N-1 others. RR: a client's prefix goes to the R reflectors, each sends it to the N-2 other nodes
        (to the other reflectors too, which drop it by CLUSTER_LIST): R(N-1); a reflector's own prefix goes
        to the N-1 others and every other reflector reflects it to the N-R clients."""
        total_p = self.prefixes(design, n)
        ext = n * self.ext_ebgp * total_p
        if design == MESH:
            return total_p * (n - 1) + ext + self.ext_ibgp * total_p
        r = self.reflectors
        clients = self.p_client * (n - r) * r * (n - 1)
        refl = self.p_reflector * r * ((n - 1) + (r - 1) * (n - r))
        ibgp = self.ext_ibgp * (self.p_client * (n - r) + r * total_p)
        return clients + refl + ext + ibgp

    def block_advertisements(self, design: str, n: float) -> float:
        """Prefix advertisements for one new block on a (client) node, by the rule."""
        ext = self.ext_ebgp * n
        if design == MESH:
            return (n - 1) + ext + self.ext_ibgp
        r = self.reflectors
        return r * (n - 1) + ext + self.ext_ibgp * (1 + r)


TermFn = Callable[[Shape, str, float], float]
TERMS: dict[str, TermFn] = {
    "1": lambda s, d, n: 1.0,
    "N": lambda s, d, n: n,
    "N^2": lambda s, d, n: n * n,
    "A(N)": lambda s, d, n: s.cold_advertisements(d, n),
}
TERM_TEXT = {"1": "a", "N": "b*N", "N^2": "c*N^2", "A(N)": "k*A(N)"}


def form_text(terms: Sequence[str]) -> str:
    return " + ".join(TERM_TEXT[t] for t in terms)


@dataclass(frozen=True)
class Model:
    """One metric of one design as a function of N: exact, by the rule, or fitted."""

    metric: str
    design: str
    kind: str  # "exact" | "rule" | "fit"
    form: str
    shape: Shape
    terms: tuple[str, ...] = ()
    coefficients: tuple[float, ...] = ()
    points: tuple[tuple[float, float], ...] = ()
    rms: float | None = None  # root mean square residual on the measured points
    max_rel_error: float | None = None  # largest |residual| / value on the measured points
    note: str = ""
    exact_fn: Callable[[Shape, str, float], float] | None = field(default=None, compare=False, repr=False)

    def at(self, n: float) -> float | None:
        if not self.shape.valid(self.design, n):
            return None
        if self.exact_fn is not None:
            return self.exact_fn(self.shape, self.design, n)
        if not self.terms:
            return None
        return sum(c * TERMS[t](self.shape, self.design, n) for t, c in zip(self.terms, self.coefficients))

    @property
    def predicts(self) -> bool:
        """Exact models always; a fit only when it has an error estimate (two sizes or more)."""
        return self.exact_fn is not None or (bool(self.terms) and self.rms is not None)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"metric": self.metric, "design": self.design, "kind": self.kind, "form": self.form}
        if self.kind == "fit":
            out.update({"terms": list(self.terms), "coefficients": [round(c, 6) for c in self.coefficients],
                        "points": [list(p) for p in self.points], "rms": _r(self.rms),
                        "max_rel_error": _r(self.max_rel_error)})
        if self.note:
            out["note"] = self.note
        return out


def _r(v: float | None, digits: int = 4) -> float | None:
    return None if v is None else round(v, digits)


def exact_model(metric: str, design: str, shape: Shape, fn: Callable[[Shape, str, float], float], form: str,
                kind: str = "exact", counted: Sequence[tuple[float, float]] = ()) -> Model:
    """An exact model; `counted` (N, value counted on the real cluster) is checked against it."""
    worst = max((abs(fn(shape, design, n) - v) for n, v in counted), default=None)
    note = ""
    if worst:
        note = (f"the count on the measured clusters differs by up to {worst:g}: the formula takes the mean "
                "prefixes per node and the docs' reflector setup (the counts in the measured table are exact)")
    return Model(metric, design, kind, form, shape, points=tuple(counted), rms=None,
                 max_rel_error=None, note=note, exact_fn=fn)


def _solve(rows: list[list[float]], ys: list[float]) -> list[float] | None:
    """Least squares by the normal equations (k <= 3 unknowns), None if singular."""
    k = len(rows[0])
    ata = [[sum(r[i] * r[j] for r in rows) for j in range(k)] for i in range(k)]
    aty = [sum(r[i] * y for r, y in zip(rows, ys)) for i in range(k)]
    m = [row[:] + [b] for row, b in zip(ata, aty)]
    for col in range(k):
        piv = max(range(col, k), key=lambda r: abs(m[r][col]))
        if abs(m[piv][col]) < 1e-12 * max(1.0, max(abs(x) for x in m[piv][:k])):
            return None
        m[col], m[piv] = m[piv], m[col]
        for r in range(k):
            if r != col:
                f = m[r][col] / m[col][col]
                m[r] = [a - f * b for a, b in zip(m[r], m[col])]
    return [m[i][k] / m[i][i] for i in range(k)]


def fit(metric: str, design: str, shape: Shape, terms: Sequence[str], points: Sequence[tuple[float, float]]) \
        -> Model:
    """Least squares over `terms` with non-negative coefficients (every subset of the terms is tried; the
    non-negative solution with the smallest residual wins, ties to fewer terms, then to the terms listed
    first). At most one term fewer than there are points, so every fit keeps a residual to estimate its
    error from; a single point gives a one-term fit with no error estimate."""
    pts = sorted((float(n), float(y)) for n, y in points if y is not None and shape.valid(design, n))
    if not pts:
        return Model(metric, design, "fit", form_text(terms), shape, note="no measured point")
    scale = sum(y * y for _, y in pts) or 1.0
    best: tuple[float, int, tuple[int, ...], list[float]] | None = None
    for size in range(1, min(len(terms), max(1, len(pts) - 1)) + 1):
        for subset in itertools.combinations(range(len(terms)), size):
            rows = [[TERMS[terms[i]](shape, design, n) for i in subset] for n, _ in pts]
            coef = _solve(rows, [y for _, y in pts])
            if coef is None or any(c < -1e-12 for c in coef):
                continue
            resid = sum((sum(c * x for c, x in zip(coef, row)) - y) ** 2 for row, (_, y) in zip(rows, pts))
            cand = (round(resid / scale, 9), size, subset, coef)  # relative, so exact fits tie
            if best is None or cand[:3] < best[:3]:
                best = cand
    if best is None:
        return Model(metric, design, "fit", form_text(terms), shape, points=tuple(pts), note="no non-negative fit")
    _, size, subset, coef = best
    used = tuple(terms[i] for i in subset)
    model = Model(metric, design, "fit", form_text(used), shape, terms=used,
                  coefficients=tuple(max(0.0, c) for c in coef), points=tuple(pts))
    residuals = [(model.at(n) or 0.0) - y for n, y in pts]
    dof = len(pts) - size
    rms = math.sqrt(sum(r * r for r in residuals) / len(pts))
    rel = max((abs(r) / abs(y) for r, (_, y) in zip(residuals, pts) if y), default=0.0)
    note = "" if dof > 0 else "one size measured: no fit error can be estimated; measure more sizes (--nodes)"
    if size < len(terms):
        dropped = [t for t in terms if t not in used]
        note = (note + "; " if note else "") + f"terms {', '.join(TERM_TEXT[t] for t in dropped)} fitted as 0"
    return Model(metric, design, "fit", form_text(used), shape, terms=used, coefficients=model.coefficients,
                 points=tuple(pts), rms=rms if dof > 0 else None, max_rel_error=rel if dof > 0 else None, note=note)


@dataclass(frozen=True)
class Crossover:
    """Below `n` one design is lower, from `n` on the other (`lower_from_here`)."""

    n: int
    lower_from_here: str

    def to_json(self) -> dict[str, object]:
        return {"n": self.n, "lower_from_here": self.lower_from_here}


def scan_start(mesh: Model, rr: Model) -> int:
    """The smallest size both models speak for: above the reflectors, and for fits the smallest run
    (a fit says nothing below what was measured)."""
    start = max(2, mesh.shape.reflectors + 1)
    for m in (mesh, rr):
        if m.kind == "fit" and m.points:
            start = max(start, int(math.ceil(min(n for n, _ in m.points))))
    return start


FIT_TIE = 0.05  # fitted curves within 5 % of each other are a tie (they come from noisy runs)


def _sides(mesh: Model, rr: Model, up_to: int) -> list[tuple[int, str | None]]:
    """(N, the lower design or None for a tie) for N from `scan_start` to up_to."""
    tol = FIT_TIE if "fit" in (mesh.kind, rr.kind) else 1e-9
    out: list[tuple[int, str | None]] = []
    for n in range(scan_start(mesh, rr), up_to + 1):
        a, b = mesh.at(n), rr.at(n)
        if a is None or b is None:
            continue
        out.append((n, None if abs(a - b) <= tol * max(1e-12, abs(a), abs(b)) else (MESH if a < b else RR)))
    return out


def crossovers(mesh: Model, rr: Model, up_to: int) -> list[Crossover]:
    """Sizes where the lower design changes, scanning N from `scan_start` to up_to (ties are skipped;
    fitted curves tie within 5 %)."""
    out: list[Crossover] = []
    last: str | None = None
    for n, lower in _sides(mesh, rr, up_to):
        if lower is None:
            continue
        if last is not None and lower != last:
            out.append(Crossover(n, lower))
        last = lower
    return out


def lower_everywhere(mesh: Model, rr: Model, up_to: int) -> str | None:
    """The design that is lower at every size where they differ (None when they cross or always tie)."""
    sides = {lower for _, lower in _sides(mesh, rr, up_to)} - {None}
    return sides.pop() if len(sides) == 1 else None


def first_difference(mesh: Model, rr: Model, up_to: int) -> int | None:
    """The smallest size (from `scan_start`) at which the designs differ."""
    return next((n for n, lower in _sides(mesh, rr, up_to) if lower is not None), None)
