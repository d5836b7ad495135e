"""The figures of a run, computed from the methods' results: the representative of repeated
runs, the ratios the issue sets targets for, the targets' PASS/MISS, statement time per kind,
and how each figure is written."""

from __future__ import annotations

from collections import defaultdict

from .base import GIB
from .machine import CONTENDED_CORES

# Targets from the issue.
TARGET_SCIPY_RATIO = 4.0  # ours <= 4x scipy, at 1M and 5M
TARGET_SCIPY_SIZES = (1_000_000, 5_000_000)
TARGET_LP_SPEEDUP = 8.0  # ours >= 8x faster than label propagation
TARGET_PEAK_BYTES = 8 * GIB  # 5M within 8 GiB peak
TARGET_PEAK_SIZE = 5_000_000


def combine(runs: list[dict]) -> dict:
    """Several runs of one method: the fastest run during which other processes stayed quiet
    stands for them (others only ever add time), else the fastest run, flagged as contended;
    the peak RSS is the largest; every time is kept."""
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        return runs[-1]
    ok.sort(key=lambda r: r["seconds"])
    quiet = [r for r in ok if (r.get("others_cores") or 0.0) < CONTENDED_CORES]
    rep = dict((quiet or ok)[0])
    rep["contended"] = not quiet
    rep["all_seconds"] = [r["seconds"] for r in runs if r.get("status") == "ok"]
    rep["peak_rss"] = max(r.get("peak_rss") or 0 for r in ok)
    rep["runs"] = len(runs)
    return rep


def fmt_s(x) -> str:
    if x is None:
        return "—"
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def fmt_b(x) -> str:
    return "—" if not x else f"{x / GIB:.2f} GiB"


def fmt_n(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else (f"{n // 1000}k" if n % 1000 == 0 else str(n))


def fmt_x(x) -> str:
    return "—" if x is None else f"{x:.2f}x"


def secs(r: dict | None):
    return r["seconds"] if r and r.get("status") == "ok" else None


def status_cell(r: dict | None, spread: bool = False) -> str:
    if not r:
        return "not run"
    if r.get("status") == "ok":
        runs = r.get("all_seconds") or []
        mark = " †" if r.get("contended") else ""
        if spread and len(runs) > 1:
            return f"{fmt_s(r['seconds'])}{mark} ({fmt_s(min(runs))}–{fmt_s(max(runs))})"
        return fmt_s(r["seconds"]) + mark
    if r.get("status") == "timeout":
        return f"timeout (> {r['timeout']:.0f}s)"
    return r.get("status", "?")


def ours_edges_to_lookup(o: dict | None) -> float | None:
    """Ours from its valid-key edges to the finished lookup: its rounds and the publication of
    graph and lookup, the same span label propagation's time covers."""
    if not o or o.get("status") != "ok":
        return None
    return sum(st["seconds"] for st in o.get("statements", []) if st["phase"] in ("loop", "publish")) or None


def ratios(m: dict) -> tuple[float | None, float | None]:
    """(ours / scipy, both from the valid key values; label propagation / ours, both from the
    valid-key edges to the finished lookup — the same span for both SQL loops)."""
    o, s, lp = secs(m.get("ours")), secs(m.get("scipy")), secs(m.get("labelprop"))
    e2l = ours_edges_to_lookup(m.get("ours"))
    return (o / s if o and s else None), (lp / e2l if e2l and lp else None)


def ratio_with_build(m: dict) -> float | None:
    """Label propagation / ours when both also pay the same graph build (ours' build phase)."""
    o, lp, e2l = secs(m.get("ours")), secs(m.get("labelprop")), ours_edges_to_lookup(m.get("ours"))
    return (lp + (o - e2l)) / o if o and lp and e2l else None


def loop_seconds(m: dict) -> tuple[float | None, float | None]:
    """(ours: sum of its rounds, label propagation: its propagation) — the loops alone."""
    o, lp = m.get("ours", {}), m.get("labelprop", {})
    a = sum(it["seconds"] for it in o["iterations"]) if o.get("status") == "ok" else None
    b = lp["loop_seconds"] if lp.get("status") == "ok" else None
    return a, b


def targets(all_results: dict) -> list[tuple[str, str, str, str]]:
    """(records, target, measured, PASS/MISS) for each target the issue sets at a size run."""
    rows = []
    for n, res in all_results.items():
        m = res["methods"]
        r_scipy, r_lp = ratios(m)
        if n in TARGET_SCIPY_SIZES:
            ok = r_scipy is not None and r_scipy <= TARGET_SCIPY_RATIO
            rows.append((fmt_n(n), f"ours <= {TARGET_SCIPY_RATIO:g}x scipy", fmt_x(r_scipy), "PASS" if ok else "MISS"))
        lp = m.get("labelprop", {})
        if n not in TARGET_SCIPY_SIZES:
            pass  # the issue sets its targets at 1M and 5M records
        elif r_lp is not None:
            rows.append(
                (
                    fmt_n(n),
                    f"ours >= {TARGET_LP_SPEEDUP:g}x faster than label propagation",
                    fmt_x(r_lp),
                    "PASS" if r_lp >= TARGET_LP_SPEEDUP else "MISS",
                )
            )
        elif lp.get("status") == "timeout" and secs(m.get("ours")):
            bound = lp["timeout"] / (ours_edges_to_lookup(m["ours"]) or secs(m["ours"]))
            rows.append(
                (
                    fmt_n(n),
                    f"ours >= {TARGET_LP_SPEEDUP:g}x faster than label propagation",
                    f"> {bound:.1f}x (label propagation stopped)",
                    "PASS" if bound >= TARGET_LP_SPEEDUP else "MISS?",
                )
            )
        if n == TARGET_PEAK_SIZE:
            o = m.get("ours", {})
            peak = o.get("peak_rss") if o.get("status") == "ok" else None
            rows.append(
                (
                    fmt_n(n),
                    "ours peak RSS <= 8 GiB",
                    fmt_b(peak),
                    "PASS" if peak is not None and peak <= TARGET_PEAK_BYTES else "MISS",
                )
            )
    return rows


def build_tables(all_results: dict) -> list[str]:
    """The tables ours built before its first round, as the statement log shows them."""
    for res in all_results.values():
        o = res["methods"].get("ours", {})
        if o.get("status") == "ok":
            seen = []
            for s in o["statements"]:
                if s["phase"] == "build" and s["kind"].startswith("build "):
                    name = s["kind"][len("build ") :]
                    if name not in seen:
                        seen.append(name)
            return seen
    return ["key_values", "nodes", "edges"]


def by_kind(stmts: list[dict]) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in stmts:
        out[(s["phase"], s["kind"])].append(s["seconds"])
    return out


def shares(stmts: list[dict]) -> dict:
    """Seconds per statement kind and per phase ('phase:loop', ...)."""
    b: dict[str, float] = defaultdict(float)
    for s in stmts:
        b[s["kind"]] += s["seconds"]
        b["phase:" + s["phase"]] += s["seconds"]
    return b
