"""Running a benchmark: each method's direction per region, its matched strength, and every cell.

For each (method, region, replicate) :class:`Directions` picks the method's direction from the
region's discovery Grams (through :func:`otresefa.discover`), orients it on a domain with an
attribute estimator, and calibrates its strength per sign to the region's matched change.  Each
(method, region, sign, replicate) *cell* then edits the held-out samples and measures every metric.
Cells are stored as JSON in ``OUT/cells/`` as soon as they are done; a stored cell whose key (a
fingerprint of everything its numbers depend on) matches is reused, so an interrupted run resumes
and a rerun only computes what changed.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from otresefa.benchmark.config import NOT_IMPLEMENTED, BenchmarkConfig, MethodSpec, RegionEntry, make_plan
from otresefa.benchmark.samples import Inputs, Samples, render
from otresefa.benchmark.stats import option_winners, summarise
from otresefa.discovery import discover
from otresefa.directions import Directions
from otresefa.editing import Edit, LinearEdit, edited_ws, negated
from otresefa.io import file_fingerprint, write_json
from otresefa.metrics.fid import fid_from_features, image_features, kid_from_features
from otresefa.metrics.locality import change_outside_fraction, matched_strength, rms_change_inside
from otresefa.metrics.semantics import (attribute_columns, attribute_leakage, attribute_shift, leakage_summary,
                                        part_area_change, target_change_per_alpha)
from otresefa.regions import Region
from otresefa.render.images import draw_mask_outline, make_grid, save_png, tiles_from_images

__all__ = ["BenchmarkResults", "run_benchmark"]

EXAMPLES = 4
"""Held-out samples shown per cell in ``OUT/examples/``."""
EXAMPLE_TILE = 128


@dataclass
class BenchmarkResults:
    """What :func:`run_benchmark` found.

    Attributes
    ----------
    out : Path
        The output folder.
    setup : dict
        The resolved settings (as written to ``config.json``).
    cells : list of dict
        One per (method, region, sign, seed) cell, plus the "no edit" cells.
    summary : list of dict
        One per (method, region, sign): every metric's mean, 95% half-interval and n.
    comparisons : list of dict
        Which value of each varied option wins (:func:`otresefa.benchmark.stats.option_winners`).
    computed, reused : int
        Cells computed by this run / taken from ``cells/``.
    files : dict
        Report files written.
    notes : list of str
        Remarks for the reader (not implemented methods, missing metrics, failed cells).
    """

    out: Path
    setup: dict
    cells: list[dict]
    summary: list[dict]
    comparisons: list[dict]
    computed: int = 0
    reused: int = 0
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _edit(inputs: Inputs, ws: torch.Tensor, direction: Edit, alpha: float) -> torch.Tensor:
    """Images ``[N, 3, S, S]`` of ``ws [N, num_ws, w_dim]`` moved along the one-direction edit by ``alpha``."""
    moved = edited_ws(inputs.G, ws, direction, [alpha], layers=inputs.layers)[:, 0]  # [N, num_ws, w_dim]
    return render(inputs.G, moved, inputs.size, inputs.plan.config.batch_size)


class DirectionChooser:
    """Each method's direction per region and replicate: chosen, oriented, calibrated, saved."""

    def __init__(self, inputs: Inputs):
        self.inputs = inputs
        self._chosen: dict[tuple, dict] = {}  # (label, region, replicate seed) -> chosen direction
        self._candidates: dict[tuple, tuple[Edit, list[float]]] = {}  # (label, region, method seed)

    def direction(self, spec: MethodSpec, entry: RegionEntry, seed: int) -> dict:
        """The chosen, oriented direction of ``spec`` for ``entry`` and its matched strengths per sign.

        Returns ``{"vector", "strengths": {sign: (strength, calibrated change)}, "flipped",
        "candidate", "region_ratio", "orientation"}``, or ``{"error": text}`` when the method or the
        calibration fails.  Seed-free methods are discovered once and reused by every replicate.
        """
        key = (spec.label, entry.label, seed)
        if key not in self._chosen:
            method_seed = seed if spec.info.seeded else 0
            try:
                found = self._choose(spec, entry, method_seed, seed)
                self._save(spec, entry, seed, found)
            except (ValueError, FloatingPointError) as error:
                found = {"error": f"{type(error).__name__}: {error}"}
            self._chosen[key] = found
        return self._chosen[key]

    def candidates(self, spec: MethodSpec, entry: RegionEntry, method_seed: int) -> tuple[Edit, list[float]]:
        """The method's top candidates (an edit of ``k`` directions) and their first-order region ratios
        ``n^T A_F n / n^T A_B n`` (eqs. 4-6; NaN for a learned, non-linear edit, whose top one is taken)."""
        key = (spec.label, entry.label, method_seed)
        if key not in self._candidates:
            inputs, config = self.inputs, self.inputs.plan.config
            grams = inputs.grams(entry)
            count = config.num_candidates if "jacobians" in spec.info.needs else config.global_candidates
            found = discover(grams, method=spec.method, num_directions=min(count, inputs.G.w_dim), seed=method_seed,
                             generator=inputs.G, **spec.options)
            if isinstance(found, LinearEdit):
                vectors = found.vectors.double()  # [k, w_dim]
                ratios = ((vectors @ grams.gram_fg) * vectors).sum(1) / ((vectors @ grams.gram_bg) * vectors).sum(1)
                ratios = ratios.tolist()
            else:
                ratios = [1.0] + [float("nan")] * (len(found) - 1)
            self._candidates[key] = (found, ratios)
        return self._candidates[key]

    def _choose(self, spec: MethodSpec, entry: RegionEntry, method_seed: int, seed: int) -> dict:
        inputs = self.inputs
        candidates, ratios = self.candidates(spec, entry, method_seed)
        best = int(np.nanargmax(ratios))
        vector = candidates.select(best)  # one direction
        calibration = inputs.samples("calibration", seed)
        strengths, target_shifts = {}, {}
        targets = target_columns(inputs, entry)
        guess = 1.0
        for sign in (1, -1) if targets else inputs.plan.signs:
            strength, change, usable, edited = self._calibrate(vector, sign, calibration, entry, guess)
            strengths[sign] = (strength, change)
            guess = strength
            if targets:
                estimates = inputs.domain.estimate_attributes(edited).double()
                shift = attribute_shift(calibration.attributes[usable], estimates)  # [n, A]
                target_shifts[sign] = float(shift[:, targets].mean())
        flipped = bool(targets) and target_shifts[1] < target_shifts[-1]
        if flipped:
            vector = negated(vector)
            strengths = {1: strengths[-1], -1: strengths[1]}
            target_shifts = {1: target_shifts[-1], -1: target_shifts[1]}
        return {"vector": vector, "strengths": strengths, "flipped": flipped, "candidate": best,
                "region_ratio": ratios[best], "orientation": {"targets": target_names(inputs, entry),
                                                              "calibration_target_shift": target_shifts}}

    def _calibrate(self, vector: torch.Tensor, sign: int, calibration: Samples, entry: RegionEntry,
                   first_guess: float) -> tuple[float, float, list[int], torch.Tensor]:
        """Matched strength of ``sign * vector`` on the calibration images where the region was found:
        ``(strength, change, those images' indices, their edits [n, 3, S, S] at that strength)``."""
        inputs = self.inputs
        regions = calibration.regions[entry.label]
        usable = [i for i, r in enumerate(regions) if r is not None]
        if not usable:
            raise ValueError(f"region {entry.label!r} was found in none of the calibration images")
        ws, originals = calibration.ws[usable], calibration.images[usable]
        edits: dict[float, torch.Tensor] = {}  # strength -> [n, 3, S, S]

        def change_at(strength: float) -> float:
            edits[strength] = _edit(inputs, ws, vector, sign * strength)
            return float(np.mean([float(rms_change_inside(originals[j], edits[strength][j], regions[i]))
                                  for j, i in enumerate(usable)]))

        strength, change = matched_strength(change_at, inputs.targets[entry.label], first_guess=first_guess,
                                            rel_tol=inputs.plan.calibration_tolerance)
        return strength, change, usable, edits[strength]

    def _save(self, spec: MethodSpec, entry: RegionEntry, seed: int, found: dict) -> None:
        inputs = self.inputs
        metadata = {"method": spec.method, "options": spec.all_options, "label": spec.label, "region": entry.label,
                    "replicate_seed": seed, "checkpoint": inputs.fingerprint, "candidate": found["candidate"],
                    "region_ratio": found["region_ratio"], "sign_flipped_by_orientation": found["flipped"],
                    "orientation": found["orientation"],
                    "matched_strength": {str(s): v[0] for s, v in found["strengths"].items()},
                    "truncation_psi": inputs.plan.config.truncation_psi, "space": "w",
                    "layers": inputs.layers or "all"}
        stem = inputs.plan.out / "directions" / f"{spec.file_stem}__{safe_name(entry.label)}__s{seed}"
        chosen = found["vector"]
        if isinstance(chosen, LinearEdit):
            chosen = Directions(chosen.vectors, torch.tensor([found["region_ratio"]]), metadata)
        else:
            chosen.metadata.update(metadata)
        chosen.save(stem, overwrite=True)


def target_names(inputs: Inputs, entry: RegionEntry) -> list[str]:
    """The region's main attributes (what "+" increases), on a domain that reads attributes."""
    if not entry.per_image or inputs.domain.estimate_attributes is None:
        return []
    return list(inputs.domain.main_attributes.get(entry.spec, ()))


def target_columns(inputs: Inputs, entry: RegionEntry) -> list[int]:
    names = target_names(inputs, entry)
    return attribute_columns(names, inputs.domain.attribute_names) if names else []


class CellMetrics:
    """Every metric of a cell: locality, FID/KID, and on a domain with attributes the semantics."""

    def __init__(self, inputs: Inputs):
        self.inputs = inputs

    def edit_cell(self, entry: RegionEntry, sign: int, seed: int, found: dict, example: Path | None,
                  title: str) -> dict:
        """Edit the held-out samples of replicate ``seed``, measure every metric of one cell, and
        save the first few samples and their edits as the PNG ``example`` (when given)."""
        inputs = self.inputs
        samples = inputs.samples("sample", seed)
        strength, calibrated = found["strengths"][sign]
        alpha = sign * strength
        regions = samples.regions[entry.label]
        edited = _edit(inputs, samples.ws, found["vector"], alpha)
        outside, inside = [], []
        for original, image, region in zip(samples.images, edited, regions):
            if region is not None:
                outside.append(float(change_outside_fraction(original, image, region)))
                inside.append(float(rms_change_inside(original, image, region)))
        metrics: dict[str, Any] = {
            "strength": strength, "alpha": alpha, "calibrated_change": calibrated,
            "outside_fraction": 100 * float(np.nanmean(outside)) if outside else None,
            "inside_rms": float(np.mean(inside)) if inside else None,
            "inside_per_alpha": float(np.mean(inside)) / strength if inside else None,
            "samples_without_region": len(regions) - len(inside),
        }
        metrics.update(self.distances(edited, seed))
        metrics.update(self._semantics(samples, edited, entry, alpha))
        if example is not None:
            _save_examples(example, samples.images[:EXAMPLES], edited[:EXAMPLES], regions[:EXAMPLES],
                           f"alpha {alpha:+.3g}", title)
        return metrics

    def distances(self, images: torch.Tensor, seed: int) -> dict:
        """FID and KID of ``images`` against the real set (none without a feature extractor)."""
        inputs = self.inputs
        if inputs.extractor is None:
            return {}
        real = inputs.real_features()
        fake = image_features(images, inputs.extractor, inputs.plan.config.batch_size)
        kid, kid_std = kid_from_features(real, fake, inputs.plan.kid_subset_size, inputs.plan.kid_subsets, seed)
        return {"fid": fid_from_features(real, fake), "kid": kid, "kid_std": kid_std}

    def _semantics(self, samples: Samples, edited: torch.Tensor, entry: RegionEntry, alpha: float) -> dict:
        domain = self.inputs.domain
        metrics: dict[str, Any] = {}
        if samples.attributes is not None:
            shift = attribute_shift(samples.attributes, domain.estimate_attributes(edited))  # [N, A]
            targets = target_columns(self.inputs, entry)
            leakage = attribute_leakage(shift, targets, samples.valid)  # [A]
            summary = leakage_summary(leakage, domain.attribute_names)
            metrics.update({"leakage": summary["mean"], "leakage_max": summary["max"],
                            "leakage_max_attribute": summary["max_attribute"],
                            "leakage_by_attribute": dict(zip(domain.attribute_names, leakage.tolist())),
                            "attribute_shift_mean": dict(zip(domain.attribute_names, shift.mean(0).tolist()))})
            if targets:
                sign = 1 if alpha > 0 else -1
                metrics["target_shift"] = sign * float(shift[:, targets].mean())
                metrics["target_per_alpha"] = target_change_per_alpha(shift, alpha, targets)
        revealed = domain.revealed_parts.get(entry.spec) if entry.per_image else None
        if revealed and samples.parts is not None:
            labels = [domain.part_names.index(p) for p in revealed]
            gained = part_area_change(samples.parts, domain.segment(edited), labels)  # [N]
            metrics["revealed_area"] = 100 * float(gained.mean())
        return metrics


def _save_examples(path: Path, originals: torch.Tensor, edited: torch.Tensor, regions: Sequence[Region | None],
                   edit_label: str, title: str) -> None:
    """Originals ``[n, 3, S, S]`` (region outlined) above their edits, as the PNG ``path``."""
    tiles = [tile if region is None else draw_mask_outline(tile, region.mask)
             for tile, region in zip(tiles_from_images(originals, EXAMPLE_TILE), regions)]
    grid = make_grid([tiles, tiles_from_images(edited, EXAMPLE_TILE)], row_labels=["original", edit_label], title=title)
    save_png(grid, path)


def safe_name(text: str) -> str:
    """``text`` as a file-name part."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text)


def _column(inputs: Inputs, entry: RegionEntry, sign: int) -> str:
    """The table column of a cell: the domain's name of the sign (``mouth open``) where it orients."""
    oriented = inputs.domain.estimate_attributes is not None
    names = inputs.domain.sign_names.get(entry.spec) if entry.per_image and oriented else None
    return f"{entry.label} {names[sign > 0]}" if names else f"{entry.label} {'+' if sign > 0 else '-'}"


def _region_id(entry: RegionEntry) -> Any:
    """What identifies a region's mask in a cell key (a mask file by its content)."""
    spec = entry.spec
    if isinstance(spec, Region):
        return spec.to_json()
    if isinstance(spec, str) and not entry.per_image and Path(spec).is_file():
        return {"file": spec, "sha256": file_fingerprint(spec)}
    return spec


class CellStore:
    """Cells on disk: ``OUT/cells/NAME.json``, each with the key it was computed under."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.computed = self.reused = 0

    def take(self, name: str, key: str, compute: Callable[[], dict]) -> dict:
        """The stored cell ``name`` when its key matches, else ``{"key": key, **compute()}``, stored."""
        path = self.folder / f"{name}.json"
        try:
            cell = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cell = None
        if cell is not None and cell.get("key") == key:
            self.reused += 1
            return cell
        cell = {"key": key, **compute()}
        write_json(path, cell)
        self.computed += 1
        return cell


def run_benchmark(config: BenchmarkConfig | Mapping[str, Any]) -> BenchmarkResults:
    """Run (or resume) a benchmark and write its reports into ``config.out``.

    Every (method, region, sign, seed) cell is stored as ``OUT/cells/*.json`` as soon as it is done;
    a cell whose file exists with the same settings is reused, so an interrupted run resumes and a
    rerun only computes what changed.  Writes ``benchmark.md``, ``results.csv``, ``results.json``,
    ``config.json``, plots (``fid.png``, ``kid.png``, ``outside_fraction.png``, ``target_shift.png``)
    and the chosen directions (``directions/``).

    Raises
    ------
    ValueError, FileNotFoundError
        For bad settings, before any work starts.
    """
    from otresefa.benchmark.report import write_reports

    config = BenchmarkConfig.from_mapping(config) if isinstance(config, Mapping) else config
    plan = make_plan(config)
    started = time.monotonic()
    inputs = Inputs(plan)
    chooser, measure = DirectionChooser(inputs), CellMetrics(inputs)
    setup = dict(inputs.settings)
    write_json(plan.out / "config.json", setup)
    store = CellStore(plan.out / "cells")

    jobs = [(spec, entry, seed, sign) for seed in plan.seeds for entry in plan.regions for spec in plan.methods
            for sign in plan.signs]
    cells: list[dict] = []
    bar = tqdm(total=len(jobs) + len(plan.seeds), desc="benchmark cells", unit="cell", disable=not config.progress)

    def edit_cell(spec: MethodSpec, entry: RegionEntry, sign: int, seed: int, stem: str) -> dict:
        bar.set_postfix_str(f"{spec.label}, {entry.label} {'+' if sign > 0 else '-'}, seed {seed}")
        cell = {"method": spec.label, "method_spec": spec.text, "region": entry.label,
                "sign": sign, "column": _column(inputs, entry, sign), "seed": seed}
        found = chooser.direction(spec, entry, seed)
        if "error" in found:
            return {**cell, "error": found["error"], "metrics": {}}
        # examples of the first replicate only: the others look alike and would only add files
        example = f"examples/{stem}.png" if seed == plan.seeds[0] else None
        return {**cell, "metrics": measure.edit_cell(entry, sign, seed, found, example and plan.out / example,
                                                     f"{spec.label}: {cell['column']}, seed {seed}"),
                "direction": {"candidate": found["candidate"], "region_ratio": found["region_ratio"],
                              "flipped": found["flipped"]}, "example": example}

    for seed in plan.seeds:
        cells.append(store.take(f"no-edit__s{seed}", inputs.cell_key(kind="no-edit", seed=seed),
                                lambda: {"method": "no edit", "method_spec": "none", "region": "-", "sign": 0,
                                         "column": "all", "seed": seed,
                                         "metrics": measure.distances(inputs.samples("sample", seed).images, seed)}))
        bar.update()
    for spec, entry, seed, sign in jobs:
        key = inputs.cell_key(kind="edit", method=spec.text, region=entry.label, region_spec=_region_id(entry),
                              target=inputs.targets[entry.label], sign=sign, seed=seed)
        stem = f"{spec.file_stem}__{safe_name(entry.label)}__{'plus' if sign > 0 else 'minus'}__s{seed}"
        cells.append(store.take(stem, key, lambda: edit_cell(spec, entry, sign, seed, stem)))
        bar.update()
    bar.close()

    summary = summarise(cells)
    results = BenchmarkResults(plan.out, setup, cells, summary, option_winners(summary, plan.methods),
                               store.computed, store.reused, notes=list(NOT_IMPLEMENTED.values()))
    if inputs.extractor is None:
        results.notes.append("FID/KID: n/a (no feature extractor: give inception_weights, or features=<nn.Module>)")
    if inputs.domain.estimate_attributes is None:
        results.notes.append("Semantic columns: n/a (this domain has no attribute estimator); signs are each "
                             "method's own: '+' moves along the direction as the method returned it.")
    for cell in (c for c in cells if c.get("error")):
        results.notes.append(f"failed: {cell['method']}, {cell['region']} {cell['sign']:+d}, seed {cell['seed']}: "
                             f"{cell['error']}")
    results.setup["seconds"] = round(time.monotonic() - started, 1)
    results.files = write_reports(results, plan.out)
    return results
