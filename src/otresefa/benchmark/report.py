"""The benchmark's reports: a Markdown table per metric, a long-format CSV, a JSON summary, bar plots."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from otresefa.benchmark.stats import METRICS, finite
from otresefa.io import atomic_path, write_json, write_text

if TYPE_CHECKING:
    from otresefa.benchmark.run import BenchmarkResults

__all__ = ["write_csv", "write_markdown", "write_plots", "write_reports"]


def _columns(summary: list[dict]) -> list[str]:
    return list(dict.fromkeys(row["column"] for row in summary if row["column"] != "all"))


def _methods(summary: list[dict]) -> list[str]:
    return list(dict.fromkeys(row["method"] for row in summary if row["method"] != "no edit"))


def _format(value: dict | None, metric: str, *, bold: bool = False) -> str:
    if value is None or not finite(value["mean"]):
        return "n/a"
    pattern = METRICS[metric][2]
    text = pattern.format(value["mean"])
    if finite(value["ci95"]):
        text += " ± " + pattern.replace("+", "").format(value["ci95"])
    return f"**{text}**" if bold else text


def _metric_table(summary: list[dict], metric: str) -> list[str]:
    columns, methods = _columns(summary), _methods(summary)
    cell = {(row["method"], row["column"]): row for row in summary}
    lower_better = METRICS[metric][1]
    best: dict[str, str] = {}
    if lower_better is not None:
        for column in columns:
            scored = {m: cell[(m, column)]["metrics"][metric]["mean"] for m in methods
                      if (m, column) in cell and metric in cell[(m, column)]["metrics"]
                      and finite(cell[(m, column)]["metrics"][metric]["mean"])}
            if len(scored) > 1:
                best[column] = (min if lower_better else max)(scored, key=scored.get)
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    floor = next((row for row in summary if row["method"] == "no edit"), None)
    if floor is not None and metric in floor["metrics"]:
        lines.append("| no edit (floor) | " + " | ".join([_format(floor["metrics"][metric], metric)] * len(columns)) + " |")
    for method in methods:
        entries = []
        for column in columns:
            row = cell.get((method, column))
            if row is None:
                entries.append("")
            elif row["failed"] and len(row["failed"]) == len(row["seeds"]):
                entries.append("failed")
            else:
                entries.append(_format(row["metrics"].get(metric), metric, bold=best.get(column) == method))
        lines.append(f"| {method} | " + " | ".join(entries) + " |")
    return lines


def write_markdown(results: "BenchmarkResults", path: str | os.PathLike) -> Path:
    """The report: one table per metric (methods x region/sign columns, mean ± 95% t-interval over
    seeds, best per column in bold), the normalisation comparison, the setup and notes."""
    setup, summary = results.setup, results.summary
    lines = ["# Local editing benchmark", "",
             f"Generator `{setup['generator']}` ({setup['resolution']}px, {setup['domain']} domain); "
             f"{setup['num_real']} real images ({setup['real']}) and {setup['num_edited']} edited images per cell; "
             f"seeds {setup['seeds']} (mean ± 95% t-interval over them; n/a with one seed); "
             f"edit strength matched per direction and sign so that the RMS change inside the region is "
             f"{', '.join(f'{v:.3g} ({k})' for k, v in setup['target_change'].items())} (images in [-1, 1]) on "
             f"{setup['num_calibration']} calibration samples; "
             f"directions from the Gram matrices of discovery seeds {setup['discovery_seeds']}; "
             f"FID/KID features: {setup['features']}. See docs/evaluation.md for the protocol and how to read this.",
             ""]
    present = {name for row in summary for name in row["metrics"]}
    for metric, (title, _, _) in METRICS.items():
        if metric in present:
            lines += [f"## {title}", ""] + _metric_table(summary, metric) + [""]
            if metric == "outside_fraction" and setup.get("reference_edit"):
                reference = ", ".join(f"{label} {value['outside_fraction']:.1f}%"
                                      for label, value in setup["reference_edit"].items())
                lines += [f"For reference, the renderer's ground-truth edit of each region's main attribute "
                          f"(half its range) has {reference} of its change outside "
                          "the region: a perfect edit moves the surroundings that much.", ""]
    worst = [(row["method"], row["column"], row["worst_leak"]) for row in summary if row.get("worst_leak")]
    if worst:
        lines += ["## Attribute that leaked most", "", "| method | column | attribute |", "|---|---|---|"]
        lines += [f"| {m} | {c} | {a} |" for m, c, a in worst] + [""]
    columns, methods = _columns(summary), _methods(summary)
    examples = {(row["method"], row["column"]): row["examples"] for row in summary}
    if any(examples.values()):
        lines += ["## Example edits (first held-out samples, region outlined)", "",
                  "| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        for method in methods:
            links = [" ".join(f"[seed {seed}]({link})" for seed, link in examples.get((method, column), {}).items())
                     for column in columns]
            lines.append(f"| {method} | " + " | ".join(links) + " |")
        lines.append("")
    lines += ["## Option comparisons", ""]
    for entry in results.comparisons:
        fixed = ", ".join(f"{k}={v}" for k, v in entry["fixed"].items())
        for criterion in ("fid", "outside_fraction"):
            if criterion in entry:
                means = ", ".join(f"{k}: {v:.3g}" for k, v in sorted(entry[criterion]["means"].items()))
                lines.append(f"- {entry['method']} `{entry['option']}` ({fixed}), by mean {criterion}: "
                             f"**{entry[criterion]['winner']}** ({means})")
    if not results.comparisons:
        lines.append("- no method was run with more than one value of an option.")
    lines += ["", "## Notes", ""] + [f"- {note}" for note in results.notes]
    lines += ["", f"{results.computed} cells computed, {results.reused} reused from `cells/`; "
              f"{setup.get('seconds', 0):.0f} s.", ""]
    return write_text(path, "\n".join(lines))


def write_csv(results: "BenchmarkResults", path: str | os.PathLike) -> Path:
    """Long format: one line per (method, region, sign, metric) with mean, 95% half-interval, n, values."""
    path = Path(path)
    with atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "method_spec", "region", "sign", "column", "metric", "mean", "ci95", "n", "values"])
        for row in results.summary:
            for metric, value in row["metrics"].items():
                writer.writerow([row["method"], row["method_spec"], row["region"], row["sign"], row["column"], metric,
                                 f"{value['mean']:.6g}" if finite(value["mean"]) else "",
                                 f"{value['ci95']:.6g}" if finite(value["ci95"]) else "",
                                 value["n"], ";".join("" if v is None else f"{v:.6g}" for v in value["values"])])
    return path


def write_plots(results: "BenchmarkResults", folder: str | os.PathLike) -> dict[str, Path]:
    """Grouped bar charts with 95% error bars, one bar per method in each region/sign column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    summary = results.summary
    columns, methods = _columns(summary), _methods(summary)
    cell = {(row["method"], row["column"]): row for row in summary}
    floor = next((row for row in summary if row["method"] == "no edit"), None)
    written = {}
    for metric in ("fid", "kid", "outside_fraction", "target_shift"):
        if not any(metric in row["metrics"] for row in summary if row["method"] != "no edit"):
            continue
        figure, axes = plt.subplots(figsize=(max(6.0, 1.3 * len(columns) * max(1, len(methods)) / 3), 4.2))
        width = 0.8 / max(1, len(methods))
        for index, method in enumerate(methods):
            means, errors = [], []
            for column in columns:
                value = cell.get((method, column), {}).get("metrics", {}).get(metric)
                means.append(value["mean"] if value and finite(value["mean"]) else np.nan)
                errors.append(value["ci95"] if value and finite(value["ci95"]) else 0.0)
            positions = np.arange(len(columns)) + (index - (len(methods) - 1) / 2) * width
            axes.bar(positions, means, width, yerr=errors if any(errors) else None, capsize=2, label=method)
        if floor is not None and metric in floor["metrics"]:
            axes.axhline(floor["metrics"][metric]["mean"], color="black", linestyle="--", linewidth=1,
                         label="no edit (floor)")
        axes.set_xticks(np.arange(len(columns)), columns, rotation=20, ha="right")
        axes.set_title(METRICS[metric][0], fontsize=10)
        axes.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
        figure.tight_layout()
        path = folder / f"{metric}.png"
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=120)
        plt.close(figure)
        written[metric] = path
    return written


def write_reports(results: "BenchmarkResults", out: str | os.PathLike) -> dict[str, Path]:
    """All report files of ``results`` into ``out``: Markdown, CSV, JSON and plots."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": write_markdown(results, out / "benchmark.md"), "csv": write_csv(results, out / "results.csv")}
    summary = {"setup": results.setup, "summary": results.summary, "comparisons": results.comparisons,
               "notes": results.notes, "computed": results.computed, "reused": results.reused}
    write_json(out / "results.json", summary)
    files["json"] = out / "results.json"
    files.update({f"plot_{k}": v for k, v in write_plots(results, out).items()})
    return files
