"""Summaries of benchmark cells: the metrics' table, means with 95% t-intervals, option comparisons."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import stats

from otresefa.benchmark.config import MethodSpec

__all__ = ["METRICS", "PERCENT_METRICS", "finite", "option_winners", "summarise", "t_interval"]

METRICS: dict[str, tuple[str, bool | None, str]] = {
    "fid": ("FID (lower is better)", True, "{:.2f}"),
    "kid": ("KID x 1e4 (lower is better)", True, "{:.1f}"),
    "outside_fraction": ("Share of the change outside the region, % (lower is better)", True, "{:.1f}"),
    "inside_rms": ("RMS change inside the region on held-out samples (target: matched)", None, "{:.3f}"),
    "strength": ("Matched edit strength |alpha|", None, "{:.2f}"),
    "inside_per_alpha": ("RMS change inside the region per unit alpha (higher: a more efficient direction)",
                         False, "{:.4f}"),
    "target_shift": ("Change of the region's main attribute at the matched strength, signed as the column "
                     "(higher is better)", False, "{:+.3f}"),
    "target_per_alpha": ("Main attribute change per unit alpha, signed as the column", False, "{:+.4f}"),
    "leakage": ("Leakage: mean |change| of every other attribute (lower is better)", True, "{:.4f}"),
    "revealed_area": ("Image share gained by the parts the edit reveals (mouth: teeth, tongue, cavity), %", None,
                      "{:+.2f}"),
}
"""Per-cell metrics: key -> (table title, lower is better? (None: neither), number format)."""
PERCENT_METRICS = {"outside_fraction", "revealed_area"}
COMPARED_BY = ("fid", "outside_fraction")
"""The criteria :func:`option_winners` compares option values by."""


def finite(value: Any) -> bool:
    """A real, finite number (results read back from JSON hold None where NaN was)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def t_interval(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean, half-width of the 95% Student-t interval (NaN for fewer than 2 values) and count."""
    values = [v for v in values if finite(v)]
    if not values:
        return float("nan"), float("nan"), 0
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, float("nan"), 1
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))
    return mean, half, len(values)


def summarise(cells: list[dict]) -> list[dict]:
    """One row per (method, region, sign): every metric's mean, 95% half-interval, count and values."""
    groups: dict[tuple, list[dict]] = {}
    for cell in cells:
        groups.setdefault((cell["method"], cell["region"], cell["sign"]), []).append(cell)
    rows = []
    for (method, region, sign), members in groups.items():
        first = members[0]
        row = {"method": method, "method_spec": first["method_spec"], "region": region, "sign": sign,
               "column": first["column"], "seeds": [c["seed"] for c in members],
               "failed": [c["seed"] for c in members if c.get("error")],
               "examples": {c["seed"]: c["example"] for c in members if c.get("example")}, "metrics": {}}
        for name in METRICS:
            values = [c["metrics"].get(name) for c in members if not c.get("error")]
            if any(v is not None for v in values):
                mean, half, count = t_interval([v for v in values if v is not None])
                row["metrics"][name] = {"mean": mean, "ci95": half, "n": count, "values": values}
        leak = [c["metrics"].get("leakage_max_attribute") for c in members if not c.get("error")]
        # the attribute most often the worst across seeds (ties: alphabetical, so reports are reproducible)
        row["worst_leak"] = max(sorted(set(filter(None, leak))), key=leak.count) if any(leak) else None
        rows.append(row)
    return rows


def option_winners(summary: list[dict], methods: Sequence[MethodSpec]) -> list[dict]:
    """Which value of an option does best, for every option the benchmarked variants of a method vary.

    Variants of one method that differ in one option only (e.g. OT-ReSeFa's ``normalize`` with
    ``within`` fixed) are compared by their mean of each :data:`COMPARED_BY` metric over all
    (region, sign) columns; lower is better for both.

    Returns
    -------
    list of dict
        ``{"method", "option", "fixed" (the other options), "compared" (values), criterion:
        {"winner", "means"}}`` per comparison.
    """
    by_label = {spec.label: spec for spec in methods}
    comparisons = []
    for name in dict.fromkeys(spec.method for spec in methods):
        variants = [spec for spec in methods if spec.method == name]
        for option in variants[0].info.defaults:
            groups: dict[str, list[MethodSpec]] = {}
            for spec in variants:
                fixed = {k: v for k, v in spec.all_options.items() if k != option}
                groups.setdefault(repr(sorted(fixed.items())), []).append(spec)
            for group in groups.values():
                values = {spec.all_options[option] for spec in group}
                if len(values) < 2:
                    continue
                info = group[0].info
                fixed = {k: v for k, v in group[0].all_options.items()
                         if k != option and (k in info.shown or v != info.defaults[k])}
                entry: dict[str, Any] = {"method": name, "option": option, "fixed": fixed,
                                         "compared": sorted(map(str, values))}
                for criterion in COMPARED_BY:
                    scores: dict[str, list[float]] = {}
                    for row in summary:
                        spec = by_label.get(row["method"])
                        if spec in group and criterion in row["metrics"] and finite(row["metrics"][criterion]["mean"]):
                            scores.setdefault(str(spec.all_options[option]), []).append(row["metrics"][criterion]["mean"])
                    means = {value: float(np.mean(found)) for value, found in scores.items()}
                    if len(means) >= 2:
                        entry[criterion] = {"winner": min(means, key=means.get), "means": means}
                comparisons.append(entry)
    return comparisons
