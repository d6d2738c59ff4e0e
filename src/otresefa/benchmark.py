"""The paper's evaluation (sec. 4, Table 1) on any generator, plus what FID cannot show.

:func:`run_benchmark` runs every (method, region, sign, seed) *cell* of a benchmark and writes a
Markdown table, a CSV, a JSON summary and plots into an output folder.  The protocol
(``docs/evaluation.md`` explains it at length):

1. **Discovery.** For each region, the Gram matrices ``A_F``, ``A_B`` of the W-space Jacobians of a few
   *discovery* seeds are averaged (each seed with its own region mask on the built-in domain, whose
   faces move) and every method runs on them.  Region methods take their top direction (or the best of
   their top ``num_candidates``); the global baselines SeFa and GANSpace, which ignore the region,
   take the one of their top ``global_candidates`` with the largest first-order region ratio
   ``n^T A_F n / n^T A_B n`` -- their best shot at a local edit.
2. **Matched strength.** Each direction and sign gets its own strength ``alpha`` such that the mean
   RMS pixel change inside the region over *calibration* samples equals the region's target (images
   in [-1, 1]; :func:`otresefa.metrics.locality.matched_strength`).  All methods thus change the
   region equally and differ only in how (natural or not, local or not, the right attribute or not).
   The target is ``target_change`` or, by default on the built-in domain, the change that the
   renderer's ground-truth edit of the region's main attribute makes (:data:`REFERENCE_EDIT`).
3. **Orientation.** On a domain with an attribute estimator the direction's sign is set so that
   ``+`` increases the region's main attribute (mouth: ``mouth_open``; eyes: ``eye_size``; nose:
   ``nose_length + nose_width``): "mouth open / close" then mean the same for every method.
   Elsewhere ``+`` is the direction as the method returned it.
4. **Evaluation** on held-out *sample* seeds: FID and KID (x 1e4) of the edited images against the
   real set; the change outside the region; the change inside per unit alpha; with an estimator the
   target attribute's change and the leakage into every other attribute; for the mouth the area of
   teeth, tongue and cavity that appears.  An unedited "no edit" row gives FID's floor.
5. **Replicates.** Every cell is repeated for each seed in ``seeds`` (method seed = that seed, and
   its own sample and calibration seeds); tables give the mean and the 95% t-interval.

Cells are cached as JSON in ``OUT/cells/``; a rerun with the same settings reuses them.

SDFlow, the paper's third baseline, is not implemented in otresefa (:data:`NOT_IMPLEMENTED`).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

from otresefa.directions import Directions
from otresefa.editing import edited_ws, render_ws
from otresefa.jacobian import generator_fingerprint, jacobian, region_grams
from otresefa.latents import z_from_seed
from otresefa.methods import RegionProblem, available_methods, method_needs, method_options, run_method
from otresefa.metrics.fid import fid_from_features, image_features, inception_features, kid_from_features
from otresefa.metrics.locality import change_outside_fraction, matched_strength, rms_change_inside
from otresefa.metrics.semantics import (attribute_columns, attribute_leakage, attribute_shift, leakage_summary,
                                        part_area_change, target_change_per_alpha)
from otresefa.models import Generator, check_layer_indices
from otresefa.outputs import json_ready
from otresefa.regions import Region, resolve_region
from otresefa.render.images import atomic_path, draw_mask_outline, make_grid, save_png, tiles_from_images

__all__ = ["BenchmarkConfig", "BenchmarkResults", "Domain", "MethodSpec", "NOT_IMPLEMENTED", "QUICK", "FULL",
           "run_benchmark", "synthfaces_domain", "synthfaces_reference_edit", "generic_domain", "write_reports",
           "write_markdown", "write_csv", "write_plots", "load_image_folder"]

NOT_IMPLEMENTED = {
    "sdflow": "SDFlow (Li et al., ICASSP 2024; the paper's Table 1) is not implemented in otresefa: it needs a "
              "conditional normalizing flow trained on attribute labels. Its row is not reported.",
}

METHOD_TITLES = {"ot-resefa": "OT-ReSeFa", "resefa": "ReSeFa", "lowrankgan": "LowRankGAN", "sefa": "SeFa",
                 "ganspace": "GANSpace"}
# Methods whose result does not depend on the seed: discovered once per region and reused by every replicate.
SEED_FREE_METHODS = {"resefa", "lowrankgan", "sefa"}

# Disjoint seed ranges keep the real, calibration and sample sets apart from each other and from the
# discovery seeds (which must be below SAMPLE_SEED_BASE); replicate s takes its sample and calibration
# seeds from BASE + s * SEEDS_PER_REPLICATE on.
SAMPLE_SEED_BASE = 1_000_000
CALIBRATION_SEED_BASE = 2_000_000
REAL_SEED = 3_000_000
SEEDS_PER_REPLICATE = 100_000

TARGET_CHANGE = 0.2
"""Default matched change where the domain has no reference edit: RMS pixel change inside the
region, images in [-1, 1] (10% of the range)."""
REFERENCE_EDIT = (0.25, 0.75)
"""The built-in domain's reference edit: the region's main attributes moved from the first to the
second value (half their range) in the renderer, on :data:`REFERENCE_FACES` faces."""
REFERENCE_FACES = 16
REFERENCE_SEED = 4_000_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
EXAMPLES = 4
"""Held-out samples shown per cell in ``OUT/examples/``."""
EXAMPLE_TILE = 128


# --- presets ----------------------------------------------------------------------------------------

FULL = {
    "methods": ("ot-resefa:within=both,normalize=unit_rows", "ot-resefa:within=both,normalize=mean_cost",
                "ot-resefa:within=both,normalize=none", "ot-resefa:within=foreground,normalize=unit_rows",
                "ot-resefa:within=foreground,normalize=mean_cost", "ot-resefa:within=foreground,normalize=none",
                "resefa", "lowrankgan", "sefa", "ganspace"),
    "seeds": (0, 1, 2),
    "discovery_seeds": tuple(range(8)),
    "num_real": 1000,
    "num_edited": 500,
    "num_calibration": 16,
    "calibration_tolerance": 0.02,
    "kid_subsets": 100,
}
"""The paper's protocol: 1,000 real and 500 edited images per cell, three replicates."""

QUICK = {
    "methods": ("ot-resefa:within=both,normalize=unit_rows,max_iter=20",
                "ot-resefa:within=foreground,normalize=unit_rows,max_iter=20",
                "resefa", "lowrankgan:max_iter=100", "sefa", "ganspace:num_samples=2000"),
    "seeds": (0,),
    "discovery_seeds": (0,),
    "num_real": 64,
    "num_edited": 16,
    "num_calibration": 4,
    "calibration_tolerance": 0.05,
    "kid_subsets": 20,
}
"""A smoke test of the whole pipeline (CI): tiny sets, one replicate, capped solver iterations."""


# --- methods ----------------------------------------------------------------------------------------

def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@dataclass(frozen=True)
class MethodSpec:
    """A method of the registry with options: ``MethodSpec.parse("ot-resefa:within=foreground,lam=4")``."""

    method: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method in NOT_IMPLEMENTED:
            raise ValueError(NOT_IMPLEMENTED[self.method])
        if self.method not in available_methods():
            raise ValueError(f"unknown method {self.method!r}; known methods: {', '.join(available_methods())}")
        known = method_options(self.method)
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for method {self.method!r}; valid options: "
                             f"{', '.join(sorted(known)) or '(none)'}")
        object.__setattr__(self, "options", dict(sorted(self.options.items())))

    @classmethod
    def parse(cls, spec: "str | MethodSpec") -> "MethodSpec":
        if isinstance(spec, MethodSpec):
            return spec
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"a method is written NAME or NAME:OPTION=VALUE,..., got {spec!r}")
        name, _, rest = spec.strip().partition(":")
        options = {}
        for pair in filter(None, (p.strip() for p in rest.split(","))):
            if "=" not in pair:
                raise ValueError(f"method options are OPTION=VALUE, got {pair!r} in {spec!r}")
            key, text = pair.split("=", 1)
            options[key.strip()] = _parse_value(text.strip())
        return cls(name.strip().lower(), options)

    @property
    def all_options(self) -> dict[str, Any]:
        """Every option of the method, defaults filled in."""
        return {**method_options(self.method), **self.options}

    @property
    def label(self) -> str:
        """Table name: OT-ReSeFa always shows ``within`` and ``normalize``, other methods the options set."""
        shown = dict(self.options)
        parts = []
        if self.method == "ot-resefa":
            parts = [str(self.all_options["within"]), str(self.all_options["normalize"])]
            shown = {k: v for k, v in shown.items() if k not in ("within", "normalize")}
        parts += [f"{k}={v}" for k, v in shown.items()]
        title = METHOD_TITLES.get(self.method, self.method)
        return f"{title} ({', '.join(parts)})" if parts else title

    @property
    def text(self) -> str:
        options = ",".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in self.options.items())
        return f"{self.method}:{options}" if options else self.method

    @property
    def file_stem(self) -> str:
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", self.text.replace(":", "__").replace(",", "_"))


# --- domains ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Domain:
    """What the benchmark can read off images beyond their pixels.

    The built-in face domain (:func:`synthfaces_domain`) has it all; a user's model
    (:func:`generic_domain`) has none of it: fixed regions, no attributes, no semantic columns.

    Attributes:
        name: shown in reports.
        segment: ``images [N, 3, S, S] -> Long[N, S, S]`` part maps, or None.
        named_region: ``(part_map [S, S], name) -> Region`` (``ValueError`` when the part is not
            found); names in ``region_names`` are taken per image from it, others are fixed regions.
        region_names: the names ``named_region`` knows.
        part_names: labels of the part maps.
        estimate_attributes: ``images -> [N, A]`` in [0, 1], or None.
        attribute_names: the ``A`` column names.
        attribute_valid: ``attributes [N, A] -> bool [N, A]``: which estimates mean something (None: all).
        main_attributes: region name -> the attributes that "+" increases (orientation and target).
        sign_names: region name -> (name of "-", name of "+"), e.g. ``("close", "open")``.
        revealed_parts: region name -> parts whose appearing area is measured.
        real_images: ``(n, seed, size) -> [n, 3, size, size]`` in [-1, 1]: the domain's real data, or None.
        features: ``() -> nn.Module``: the domain's FID/KID feature extractor, or None.
        reference_edit: ``(region name, size) -> (RMS change inside, % of the change outside)`` of a
            ground-truth edit of the region's main attributes, or None: the default matched change,
            and what a perfect edit scores on the locality metric.
        fingerprint: identifies the networks behind ``segment``, ``estimate_attributes`` and
            ``features`` (part of every cell's key: cells measured with other networks are recomputed).
    """

    name: str
    segment: Callable[[torch.Tensor], torch.Tensor] | None = None
    named_region: Callable[[torch.Tensor, str], Region] | None = None
    region_names: tuple[str, ...] = ()
    part_names: tuple[str, ...] = ()
    estimate_attributes: Callable[[torch.Tensor], torch.Tensor] | None = None
    attribute_names: tuple[str, ...] = ()
    attribute_valid: Callable[[torch.Tensor], torch.Tensor] | None = None
    main_attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sign_names: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    revealed_parts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    real_images: Callable[[int, int, int], torch.Tensor] | None = None
    features: Callable[[], nn.Module] | None = None
    reference_edit: Callable[[str, int], tuple[float, float]] | None = None
    fingerprint: str = ""


def generic_domain() -> Domain:
    """Any generator: regions are fixed (presets, boxes, mask files); no attributes."""
    return Domain("generic")


SYNTHFACES_MAIN_ATTRIBUTES = {"mouth": ("mouth_open",), "eyes": ("eye_size",), "nose": ("nose_length", "nose_width")}
"""Built-in domain: the attributes that "+" increases, per region."""


def synthfaces_domain(device: str | torch.device | None = None) -> Domain:
    """The built-in face domain: per-image regions from the segmenter, attributes from the
    estimator, real images from the renderer, features from the estimator's penultimate layer."""
    from otresefa.synthfaces import ATTRIBUTE_NAMES, PART_NAMES, attribute_visibility
    from otresefa.synthfaces.perception import (ESTIMATOR_PATH, SEGMENTER_PATH, SynthfacesFeatureExtractor,
                                                estimate_attributes, load_estimator, load_segmenter, segment)
    from otresefa.synthfaces.quality import rendered_images
    from otresefa.synthfaces.regions import SYNTHFACE_REGIONS, synthface_region

    missing = [str(p) for p in (ESTIMATOR_PATH, SEGMENTER_PATH) if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"the built-in face domain's perception networks are missing from the installation: "
                                f"{', '.join(missing)}")
    estimator, segmenter = load_estimator(device), load_segmenter(device)

    return Domain(
        name="synthfaces",
        segment=lambda images: segment(images, segmenter),
        named_region=synthface_region,
        region_names=tuple(SYNTHFACE_REGIONS),
        part_names=tuple(PART_NAMES),
        estimate_attributes=lambda images: estimate_attributes(images, estimator),
        attribute_names=tuple(ATTRIBUTE_NAMES),
        attribute_valid=attribute_visibility,  # a frame's thickness means nothing without glasses
        main_attributes=SYNTHFACES_MAIN_ATTRIBUTES,
        sign_names={"mouth": ("close", "open"), "eyes": ("smaller", "larger"), "nose": ("smaller", "larger")},
        revealed_parts={"mouth": ("mouth_cavity", "teeth", "tongue")},
        real_images=lambda n, seed, size: rendered_images(n, seed, size),
        features=lambda: SynthfacesFeatureExtractor(estimator),
        reference_edit=synthfaces_reference_edit,
        fingerprint=hashlib.sha256(ESTIMATOR_PATH.read_bytes() + SEGMENTER_PATH.read_bytes()).hexdigest()[:16],
    )


def synthfaces_reference_edit(region: str, size: int) -> tuple[float, float]:
    """``(RMS change inside, % of the change outside)`` of the region, averaged over faces, when the
    renderer moves the region's main attributes from ``REFERENCE_EDIT[0]`` to ``REFERENCE_EDIT[1]``
    (regions from the renderer's exact part maps)."""
    from otresefa.synthfaces import attribute_index, render, sample_attributes
    from otresefa.synthfaces.regions import synthface_region

    attributes = sample_attributes(REFERENCE_FACES, REFERENCE_SEED)  # [n, A]
    before, after = attributes.clone(), attributes.clone()
    for name in SYNTHFACES_MAIN_ATTRIBUTES[region]:
        before[:, attribute_index(name)], after[:, attribute_index(name)] = REFERENCE_EDIT
    start, end = render(before, size), render(after, size)
    masks = [synthface_region(parts, region) for parts in start.parts]
    inside = [float(rms_change_inside(a, b, m)) for a, b, m in zip(start.images, end.images, masks)]
    outside = [float(change_outside_fraction(a, b, m)) for a, b, m in zip(start.images, end.images, masks)]
    return float(np.mean(inside)), 100 * float(np.mean(outside))


# --- configuration ----------------------------------------------------------------------------------

@dataclass
class BenchmarkConfig:
    """Everything a benchmark run depends on.  Fields left at ``None`` take the preset's value
    (:data:`FULL`, or :data:`QUICK` when ``quick``).

    Attributes:
        out: output folder (cells, tables, plots); reused across runs.
        generator: ``"synthfaces"`` (the built-in model), a checkpoint path, or a loaded Generator.
        quick: the :data:`QUICK` preset (CI smoke test) instead of :data:`FULL` (the paper's sizes).
        domain: ``"auto"`` (the built-in face domain for ``generator="synthfaces"``, else generic),
            ``"synthfaces"``, ``"generic"`` or a :class:`Domain`.
        regions: region names of the domain, FFHQ presets, ``"box:r,c,h,w"``, mask files, or Regions.
        signs: ``-1`` and/or ``+1`` (or ``"-"``, ``"+"``).
        methods: method specs ``"NAME"`` / ``"NAME:OPTION=VALUE,..."`` or :class:`MethodSpec` s.
        seeds: replicates; replicate ``s`` uses method seed ``s`` and its own sample/calibration seeds.
        discovery_seeds: latent seeds whose Jacobians give the Gram matrices (below 1,000,000).
        num_real, num_edited, num_calibration: images in the real set, per cell, for calibration.
        calibration_tolerance: relative tolerance of the matched change on the calibration images.
        target_change: matched RMS pixel change inside the region (images in [-1, 1]): one number,
            a mapping region label -> number, or None: the domain's reference edit where it has one
            (built-in domain: mouth, nose, eyes), else :data:`TARGET_CHANGE`.
        truncation_psi: truncation of every latent (discovery, calibration, samples).
        jacobian_size: Jacobians are taken at ``min(jacobian_size, resolution)`` (the paper: 256).
        layers: W+ layers that receive the edit and the Jacobian's perturbation (None: all).
        num_candidates: a region method's direction is the best (largest region ratio) of its top
            ``num_candidates``; 1 = its own top direction.
        global_candidates: the same for SeFa and GANSpace, which ignore the region.
        real: ``"auto"`` (the domain's real images, else unedited generator samples), ``"generator"``,
            or a folder of image files (PNG/JPEG, the first ``num_real`` in name order).
        features: ``"auto"`` (the domain's extractor, else Inception when ``inception_weights`` is
            given, else none: FID/KID n/a), ``"domain"``, ``"inception"``, ``"none"`` or an
            ``nn.Module`` (uint8 images ``[N, 3, H, W]`` -> ``[N, F]``).
        inception_weights: local path of the FID Inception-v3 weights (never downloaded).
        image_size: larger images are area-downsampled to this for every metric (the paper: 256).
        kid_subset_size: KID subset size (None: ``min(1000, num_real, num_edited)``); ``kid_subsets``.
        batch_size: generator batch.  device: where the generator and networks run.
        jacobian_cache: ``True`` (the default cache folder), a folder, or ``False``.
        progress: tqdm progress bars.
    """

    out: str | os.PathLike = "benchmark"
    generator: str | os.PathLike | Generator = "synthfaces"
    quick: bool = False
    domain: str | Domain = "auto"
    regions: Sequence[Any] = ("mouth", "nose", "eyes")
    signs: Sequence[int | str] = (-1, 1)
    methods: Sequence[str | MethodSpec] | None = None
    seeds: Sequence[int] | None = None
    discovery_seeds: Sequence[int] | None = None
    num_real: int | None = None
    num_edited: int | None = None
    num_calibration: int | None = None
    calibration_tolerance: float | None = None
    target_change: float | Mapping[str, float] | None = None
    truncation_psi: float = 0.7
    jacobian_size: int = 256
    layers: Sequence[int] | None = None
    num_candidates: int = 1
    global_candidates: int = 8
    real: str | os.PathLike = "auto"
    features: str | nn.Module = "auto"
    inception_weights: str | os.PathLike | None = None
    image_size: int = 256
    kid_subset_size: int | None = None
    kid_subsets: int | None = None
    batch_size: int = 16
    device: str | None = None
    jacobian_cache: bool | str | os.PathLike = True
    progress: bool = True

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "BenchmarkConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown benchmark setting(s) {unknown}; known: {', '.join(sorted(known))}")
        return cls(**values)


def _preset(config: BenchmarkConfig, name: str) -> Any:
    value = getattr(config, name)
    return (QUICK if config.quick else FULL)[name] if value is None else value


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _seed_list(values: Any, name: str, below: int | None = None) -> tuple[int, ...]:
    seeds = tuple(values) if not isinstance(values, (int, str)) else (values,)
    if not seeds:
        raise ValueError(f"{name} is empty")
    for seed in seeds:
        _positive_int(seed, f"every entry of {name}", 0)
        if below is not None and seed >= below:
            raise ValueError(f"{name} must be below {below} (larger seeds are the held-out sample seeds), got {seed}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{name} has repeated entries: {list(seeds)}")
    return tuple(int(s) for s in seeds)


def _sign(value: Any) -> int:
    if value in (1, "+", "+1", "plus"):
        return 1
    if value in (-1, "-", "-1", "minus"):
        return -1
    raise ValueError(f"signs are -1 / +1 (or '-' / '+'), got {value!r}")


@dataclass(frozen=True)
class _RegionEntry:
    """One region of the benchmark: its label, and either a domain name (per image) or a fixed Region."""

    label: str
    spec: Any
    per_image: bool


@dataclass
class _Plan:
    """A validated configuration with the presets filled in."""

    config: BenchmarkConfig
    out: Path
    methods: list[MethodSpec]
    regions: list[_RegionEntry]
    signs: tuple[int, ...]
    seeds: tuple[int, ...]
    discovery_seeds: tuple[int, ...]
    num_real: int
    num_edited: int
    num_calibration: int
    calibration_tolerance: float
    kid_subsets: int
    kid_subset_size: int


def _plan(config: BenchmarkConfig) -> _Plan:
    """Check every setting before any work starts; raise ``ValueError`` naming the bad one."""
    if not isinstance(config, BenchmarkConfig):
        raise ValueError(f"run_benchmark takes a BenchmarkConfig (or a mapping of its fields), got {type(config).__name__}")
    methods = [MethodSpec.parse(m) for m in _preset(config, "methods")]
    if not methods:
        raise ValueError("no methods to benchmark")
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels):
        raise ValueError(f"methods are repeated: {labels}")
    regions = _region_entries(config)
    signs = tuple(dict.fromkeys(_sign(s) for s in config.signs))
    if not signs:
        raise ValueError("no signs to benchmark; use (-1, 1)")
    seeds = _seed_list(_preset(config, "seeds"), "seeds")
    discovery_seeds = _seed_list(_preset(config, "discovery_seeds"), "discovery_seeds", below=SAMPLE_SEED_BASE)
    num_real = _positive_int(_preset(config, "num_real"), "num_real", 2)
    num_edited = _positive_int(_preset(config, "num_edited"), "num_edited", 2)
    num_calibration = _positive_int(_preset(config, "num_calibration"), "num_calibration", 1)
    for count, name in ((num_edited, "num_edited"), (num_calibration, "num_calibration")):
        if count > SEEDS_PER_REPLICATE:
            raise ValueError(f"{name} must be at most {SEEDS_PER_REPLICATE}, got {count}")
    if max(seeds) * SEEDS_PER_REPLICATE + SEEDS_PER_REPLICATE > CALIBRATION_SEED_BASE - SAMPLE_SEED_BASE:
        raise ValueError(f"seeds must be below {(CALIBRATION_SEED_BASE - SAMPLE_SEED_BASE) // SEEDS_PER_REPLICATE}")
    calibration_tolerance = _preset(config, "calibration_tolerance")
    if not (isinstance(calibration_tolerance, (int, float)) and 0 < calibration_tolerance < 1):
        raise ValueError(f"calibration_tolerance is a relative tolerance in (0, 1), got {calibration_tolerance!r}")
    kid_subsets = _positive_int(_preset(config, "kid_subsets"), "kid_subsets")
    largest_subset = min(1000, num_real, num_edited)
    kid_subset_size = largest_subset if config.kid_subset_size is None else \
        _positive_int(config.kid_subset_size, "kid_subset_size", 2)
    if kid_subset_size > min(num_real, num_edited):
        raise ValueError(f"kid_subset_size ({kid_subset_size}) must not exceed num_real ({num_real}) "
                         f"nor num_edited ({num_edited})")
    targets = config.target_change if isinstance(config.target_change, Mapping) else {"": config.target_change}
    for label, target in targets.items():
        if target is not None and not (isinstance(target, (int, float)) and 0 < target < 2):
            raise ValueError(f"target_change is an RMS change of images in [-1, 1], in (0, 2); got {target!r}")
    unknown = sorted(set(targets) - {e.label for e in regions} - {""})
    if unknown:
        raise ValueError(f"target_change names regions that are not benchmarked: {unknown}")
    if not 0 <= config.truncation_psi <= 1:
        raise ValueError(f"truncation_psi must be in [0, 1], got {config.truncation_psi}")
    _positive_int(config.jacobian_size, "jacobian_size", 4)
    _positive_int(config.image_size, "image_size", 8)
    _positive_int(config.batch_size, "batch_size")
    _positive_int(config.num_candidates, "num_candidates")
    _positive_int(config.global_candidates, "global_candidates")
    features = config.features
    if not isinstance(features, nn.Module) and features not in ("auto", "domain", "inception", "none"):
        raise ValueError(f"features must be 'auto', 'domain', 'inception', 'none' or an nn.Module, got {features!r}")
    if features == "inception" and config.inception_weights is None:
        raise ValueError("features='inception' needs inception_weights: the path of the Inception-v3 weights file "
                         "(it is never downloaded)")
    if config.inception_weights is not None and not Path(config.inception_weights).expanduser().is_file():
        raise FileNotFoundError(f"Inception weights file not found: {config.inception_weights}")
    real = config.real
    if real not in ("auto", "generator") and not Path(real).is_dir():
        raise ValueError(f"real must be 'auto', 'generator' or a folder of images, got {str(real)!r}")
    return _Plan(config, Path(config.out), methods, regions, signs, seeds, discovery_seeds, num_real, num_edited,
                 num_calibration, float(calibration_tolerance), kid_subsets, kid_subset_size)


def _region_entries(config: BenchmarkConfig) -> list[_RegionEntry]:
    specs = list(config.regions) if not isinstance(config.regions, (str, Region)) else [config.regions]
    if not specs:
        raise ValueError("no regions to benchmark")
    entries = []
    for spec in specs:
        if isinstance(spec, Region):
            entries.append(_RegionEntry(spec.name, spec, False))
        elif isinstance(spec, (str, os.PathLike)):
            text = str(spec)
            is_file = Path(text).suffix.lower() in IMAGE_SUFFIXES or Path(text).is_file()
            entries.append(_RegionEntry(Path(text).stem if is_file else text, text, False))
        elif isinstance(spec, (list, tuple)):
            entries.append(_RegionEntry("box:" + ",".join(f"{v:g}" for v in spec), list(spec), False))
        else:
            raise ValueError(f"a region is a name, 'box:r,c,h,w', a mask file, a box or a Region; got {spec!r}")
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise ValueError(f"regions are repeated: {labels}")
    return entries


# --- results ----------------------------------------------------------------------------------------

@dataclass
class BenchmarkResults:
    """What :func:`run_benchmark` found.

    Attributes:
        out: the output folder.
        setup: the resolved settings (as written to ``config.json``).
        cells: one dict per (method, region, sign, seed) cell, plus the "no edit" cells.
        summary: one dict per (method, region, sign): every metric's mean, 95% half-interval and n.
        normalization: which OT-ReSeFa ``normalize`` wins, per ``within`` variant and criterion.
        computed, reused: cells computed by this run / taken from the cache.
        files: report files written.
        notes: remarks for the reader (not implemented methods, missing metrics, failed cells).
    """

    out: Path
    setup: dict
    cells: list[dict]
    summary: list[dict]
    normalization: dict
    computed: int = 0
    reused: int = 0
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# Per-cell metrics: key -> (table title, lower is better?, number format)
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
PERCENT_METRICS = {"outside_fraction", "revealed_area"}


def _finite(value: Any) -> bool:
    """A real, finite number (results read back from JSON hold None where NaN was)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def _t_interval(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, half-width of the 95% Student-t interval (NaN for fewer than 2 values) and count."""
    finite = [v for v in values if _finite(v)]
    if not finite:
        return float("nan"), float("nan"), 0
    mean = float(np.mean(finite))
    if len(finite) < 2:
        return mean, float("nan"), 1
    half = float(stats.t.ppf(0.975, len(finite) - 1) * np.std(finite, ddof=1) / math.sqrt(len(finite)))
    return mean, half, len(finite)


def _summarise(cells: list[dict]) -> list[dict]:
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
                mean, half, count = _t_interval([v for v in values if v is not None])
                row["metrics"][name] = {"mean": mean, "ci95": half, "n": count, "values": values}
        leak = [c["metrics"].get("leakage_max_attribute") for c in members if not c.get("error")]
        # the attribute most often the worst across seeds (ties: alphabetical, so reports are reproducible)
        row["worst_leak"] = max(sorted(set(filter(None, leak))), key=leak.count) if any(leak) else None
        rows.append(row)
    return rows


def _normalization_winner(summary: list[dict], plan: _Plan) -> dict:
    """Per ``within`` variant of OT-ReSeFa: the ``normalize`` with the lowest mean FID and the lowest
    mean outside fraction over all (region, sign) columns."""
    by_spec = {m.label: m for m in plan.methods}
    result: dict[str, dict] = {}
    for within in ("both", "foreground"):
        variants = [m for m in plan.methods if m.method == "ot-resefa" and m.all_options["within"] == within]
        normalizations = {m.all_options["normalize"] for m in variants}
        if len(normalizations) < 2:
            continue
        entry: dict[str, Any] = {"compared": sorted(normalizations)}
        for criterion in ("fid", "outside_fraction"):
            scores = {}
            for row in summary:
                spec = by_spec.get(row["method"])
                if spec in variants and criterion in row["metrics"]:
                    scores.setdefault(spec.all_options["normalize"], []).append(row["metrics"][criterion]["mean"])
            means = {k: float(np.nanmean(v)) for k, v in scores.items() if np.isfinite(v).any()}
            if len(means) >= 2:
                entry[criterion] = {"winner": min(means, key=means.get), "means": means}
        result[within] = entry
    return result


# --- rendering --------------------------------------------------------------------------------------

def _downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, 3, R, R] -> [N, 3, size, size]`` by area averaging when ``R > size``."""
    return F.interpolate(images, size=(size, size), mode="area") if images.shape[-1] > size else images


def _ws_of_seeds(G: Generator, seeds: Sequence[int], psi: float) -> torch.Tensor:
    z = torch.stack([z_from_seed(G, s) for s in seeds]).to(G.device)  # [N, z_dim]
    with torch.no_grad():
        return G.mapping(z, None, truncation_psi=psi).cpu()  # [N, num_ws, w_dim]


def _render(G: Generator, ws: torch.Tensor, size: int, batch_size: int) -> torch.Tensor:
    """Images of ``ws [N, num_ws, w_dim]`` at ``size`` ``[N, 3, size, size]``, rendered in batches
    (the full-resolution images of a large model never all sit in memory)."""
    return torch.cat([_downsample(render_ws(G, chunk, batch_size=batch_size), size)
                      for chunk in ws.split(batch_size)])


def _edit(G: Generator, ws: torch.Tensor, direction: torch.Tensor, alpha: float, layers, size: int,
          batch_size: int) -> torch.Tensor:
    moved = edited_ws(G, ws, direction, [alpha], layers=layers)[:, 0]  # [N, num_ws, w_dim]
    return _render(G, moved, size, batch_size)


def load_image_folder(folder: str | os.PathLike, count: int, size: int) -> torch.Tensor:
    """The first ``count`` images (by file name) of ``folder`` as ``[count, 3, size, size]`` in [-1, 1]."""
    from PIL import Image

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < count:
        raise ValueError(f"{folder} holds {len(files)} images; the benchmark needs num_real = {count}")
    images = []
    for path in files[:count]:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
        images.append(torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1))  # [3, S, S] uint8
    return torch.stack(images).float() / 127.5 - 1


# --- the run ----------------------------------------------------------------------------------------

@dataclass
class _Samples:
    """The unedited images of a set of seeds, and what every cell reads from them."""

    ws: torch.Tensor  # [N, num_ws, w_dim]
    images: torch.Tensor  # [N, 3, S, S]
    parts: torch.Tensor | None  # Long[N, S, S]
    attributes: torch.Tensor | None  # [N, A]
    valid: torch.Tensor | None  # bool [N, A]
    regions: dict[str, list[Region | None]]  # region label -> per-image region (None: not found)


class _Run:
    """State of one benchmark run: the generator, domain, features and lazily computed inputs."""

    def __init__(self, plan: _Plan):
        from otresefa.checkpoints import load_generator

        self.plan = plan
        config = plan.config
        source = config.generator
        self.G = source if isinstance(source, Generator) else load_generator(source, device=config.device)
        self.generator_name = "Generator object" if isinstance(source, Generator) else str(source)
        self.fingerprint = generator_fingerprint(self.G)
        self.domain = self._domain()
        self.size = min(config.image_size, self.G.img_resolution)
        self.jacobian_size = min(config.jacobian_size, self.G.img_resolution)
        self.layers = None if config.layers is None else list(config.layers)
        if self.layers is not None:
            check_layer_indices(self.layers, self.G.num_ws)
        for entry in plan.regions:
            if not entry.per_image:
                resolve_region(entry.spec, self.size)  # raises on unknown names or empty regions
        self.extractor, self.features_name = self._features()
        self.references = {e.label: self.domain.reference_edit(e.spec, self.size) for e in plan.regions
                           if e.per_image and self.domain.reference_edit is not None
                           and e.spec in self.domain.main_attributes}
        self.targets = {e.label: self._target(e) for e in plan.regions}
        self.settings = self._settings()
        self.notes: list[str] = [NOT_IMPLEMENTED["sdflow"]]
        self._grams: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._real_features: torch.Tensor | None = None
        self._samples: dict[tuple[str, int], _Samples] = {}
        self._directions: dict[tuple, dict] = {}  # (label, region, replicate seed) -> chosen direction
        self._candidate_cache: dict[tuple, tuple[torch.Tensor, list]] = {}  # (label, region, method seed)

    # -- setup -----------------------------------------------------------------------------------

    def _domain(self) -> Domain:
        choice = self.plan.config.domain
        if isinstance(choice, Domain):
            domain = choice
        elif choice == "synthfaces" or (choice == "auto" and self.plan.config.generator == "synthfaces"):
            domain = synthfaces_domain(self.plan.config.device)
        elif choice in ("auto", "generic"):
            domain = generic_domain()
        else:
            raise ValueError(f"domain must be 'auto', 'synthfaces', 'generic' or a Domain, got {choice!r}")
        # a domain's named regions are per image; anything else is one fixed region for all images
        self.plan.regions = [dataclasses.replace(e, per_image=isinstance(e.spec, str) and e.spec in domain.region_names
                                                 and domain.segment is not None) for e in self.plan.regions]
        return domain

    def _features(self) -> tuple[nn.Module | None, str]:
        config = self.plan.config
        choice = config.features
        if isinstance(choice, nn.Module):
            digest = hashlib.sha256()
            for name, tensor in sorted(choice.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            return choice.eval(), f"custom ({type(choice).__name__} {digest.hexdigest()[:12]})"
        if choice == "inception" or (choice == "auto" and self.domain.features is None and config.inception_weights):
            return inception_features(config.inception_weights).to(self.G.device), "Inception-v3 pool features (2048-d)"
        if choice in ("domain", "auto") and self.domain.features is not None:
            return self.domain.features(), f"{self.domain.name} attribute estimator's penultimate layer"
        if choice == "domain":
            raise ValueError(f"the {self.domain.name} domain has no feature extractor; use features='inception' "
                             "with inception_weights, or pass an nn.Module")
        return None, "none"

    def _target(self, entry: _RegionEntry) -> float:
        """The matched RMS change inside ``entry``: given, else the reference edit's, else the default."""
        given = self.plan.config.target_change
        if isinstance(given, Mapping):
            given = given.get(entry.label)
        if given is not None:
            return float(given)
        return self.references[entry.label][0] if entry.label in self.references else TARGET_CHANGE

    def _settings(self) -> dict:
        plan, config = self.plan, self.plan.config
        return json_ready({
            "generator": self.generator_name, "generator_fingerprint": self.fingerprint,
            "resolution": self.G.img_resolution, "domain": self.domain.name,
            "domain_fingerprint": self.domain.fingerprint, "quick": config.quick,
            "methods": [m.text for m in plan.methods], "method_labels": [m.label for m in plan.methods],
            "regions": [e.label for e in plan.regions],
            "region_kind": {e.label: "per image (segmented)" if e.per_image else "fixed" for e in plan.regions},
            "signs": list(plan.signs), "seeds": list(plan.seeds), "discovery_seeds": list(plan.discovery_seeds),
            "num_real": plan.num_real, "num_edited": plan.num_edited, "num_calibration": plan.num_calibration,
            "calibration_tolerance": plan.calibration_tolerance,
            "target_change": self.targets,
            "reference_edit": {label: {"inside_rms": rms, "outside_fraction": outside}
                               for label, (rms, outside) in self.references.items()},
            "truncation_psi": config.truncation_psi,
            "jacobian_size": self.jacobian_size, "image_size": self.size, "layers": self.layers or "all",
            "num_candidates": config.num_candidates, "global_candidates": config.global_candidates,
            "real": self._real_source(), "features": self.features_name,
            "kid_subsets": plan.kid_subsets, "kid_subset_size": plan.kid_subset_size,
        })

    def _real_source(self) -> str:
        real = self.plan.config.real
        if real == "auto":
            return f"{self.domain.name} renderer" if self.domain.real_images is not None else "generator (unedited)"
        return "generator (unedited)" if real == "generator" else f"folder {real}"

    def cell_key(self, **cell: Any) -> str:
        """Hash of everything a cell's numbers depend on: a cached cell is reused only if it matches.
        Settings that list the benchmark's parts (methods, regions, their targets, ...) are left out,
        so adding a part keeps the other cells; each cell passes its own part in ``cell``."""
        per_part = ("methods", "method_labels", "regions", "region_kind", "signs", "seeds", "quick", "target_change",
                    "reference_edit")
        setup = {k: v for k, v in self.settings.items() if k not in per_part}
        text = json.dumps(json_ready({**setup, **cell}), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    # -- inputs shared by cells --------------------------------------------------------------------

    def regions_of(self, entry: _RegionEntry, parts: torch.Tensor | None, count: int) -> list[Region | None]:
        """The region of each of ``count`` images at the metric size (None where the part is missing)."""
        if not entry.per_image:
            return [resolve_region(entry.spec, self.size)] * count
        regions: list[Region | None] = []
        for part_map in parts:
            try:
                regions.append(self.domain.named_region(part_map, entry.spec).resized(self.size))
            except ValueError:
                regions.append(None)
        return regions

    def samples(self, kind: str, seed: int) -> _Samples:
        """Held-out ``"sample"`` or ``"calibration"`` images of replicate ``seed`` (computed once)."""
        key = (kind, seed)
        if key not in self._samples:
            plan = self.plan
            base, count = ((SAMPLE_SEED_BASE, plan.num_edited) if kind == "sample"
                           else (CALIBRATION_SEED_BASE, plan.num_calibration))
            start = base + seed * SEEDS_PER_REPLICATE
            ws = _ws_of_seeds(self.G, range(start, start + count), plan.config.truncation_psi)
            images = _render(self.G, ws, self.size, plan.config.batch_size)  # [N, 3, S, S]
            parts = self.domain.segment(images) if self.domain.segment is not None else None
            attributes = valid = None
            if self.domain.estimate_attributes is not None:
                attributes = self.domain.estimate_attributes(images).double()  # [N, A]
                valid = self.domain.attribute_valid(attributes) if self.domain.attribute_valid else None
            regions = {entry.label: self.regions_of(entry, parts, count) for entry in plan.regions}
            self._samples[key] = _Samples(ws, images, parts, attributes, valid, regions)
        return self._samples[key]

    def grams(self) -> dict[str, tuple[torch.Tensor, torch.Tensor] | None]:
        """Per region label, ``(A_F, A_B)`` averaged over the discovery seeds (None: the region is in
        none of their images); each Jacobian is computed (or read from the cache) once for all
        regions and then dropped."""
        if self._grams is None:
            plan, config = self.plan, self.plan.config
            sums: dict[str, list] = {e.label: [] for e in plan.regions}
            ws = _ws_of_seeds(self.G, plan.discovery_seeds, config.truncation_psi)  # [D, num_ws, w_dim]
            images = _render(self.G, ws, self.G.img_resolution, config.batch_size)  # [D, 3, R, R]
            parts = self.domain.segment(images) if self.domain.segment is not None else None
            for index in tqdm(range(len(plan.discovery_seeds)), desc="Jacobians (discovery seeds)", unit="seed",
                              disable=not config.progress):
                J = jacobian(self.G, ws[index, 0], size=self.jacobian_size, layers=self.layers,
                             cache=config.jacobian_cache)  # [S, S, w_dim]
                for entry in plan.regions:
                    region = self._discovery_region(entry, None if parts is None else parts[index])
                    if region is not None:
                        sums[entry.label].append(region_grams(J, region.mask))
            # None marks a region found in no discovery image: its cells fail, the others go on
            self._grams = {label: (torch.stack([p[0] for p in pairs]).mean(0), torch.stack([p[1] for p in pairs]).mean(0))
                           if pairs else None for label, pairs in sums.items()}
        return self._grams

    def region_grams(self, entry: _RegionEntry) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A_F, A_B)`` of one region; a ValueError when no discovery image showed it."""
        grams = self.grams()[entry.label]
        if grams is None:
            raise ValueError(f"region {entry.label!r} was found in none of the discovery seeds' images "
                             f"(seeds {', '.join(map(str, self.plan.discovery_seeds))})")
        return grams

    def _discovery_region(self, entry: _RegionEntry, part_map: torch.Tensor | None) -> Region | None:
        if not entry.per_image:
            return resolve_region(entry.spec, self.jacobian_size)
        try:
            return self.domain.named_region(part_map, entry.spec).resized(self.jacobian_size).check_usable()
        except ValueError:
            return None

    def real_features(self) -> torch.Tensor:
        """Features ``[num_real, F]`` of the real set, cached in ``OUT/cache``."""
        if self._real_features is None:
            plan, config = self.plan, self.plan.config
            key = self.cell_key(kind="real")
            path = plan.out / "cache" / f"real_features_{key}.pt"
            if path.is_file():
                self._real_features = torch.load(path, weights_only=True)
            else:
                images = self._real_images()
                self._real_features = image_features(images, self.extractor, config.batch_size)
                with atomic_path(path) as temporary:
                    torch.save(self._real_features, temporary)
        return self._real_features

    def _real_images(self) -> torch.Tensor:
        plan, config = self.plan, self.plan.config
        if config.real == "auto" and self.domain.real_images is not None:
            return _downsample(self.domain.real_images(plan.num_real, REAL_SEED, self.G.img_resolution), self.size)
        if config.real in ("auto", "generator"):
            ws = _ws_of_seeds(self.G, range(REAL_SEED, REAL_SEED + plan.num_real), config.truncation_psi)
            return _render(self.G, ws, self.size, config.batch_size)
        return load_image_folder(config.real, plan.num_real, self.size)

    # -- directions --------------------------------------------------------------------------------

    def direction(self, spec: MethodSpec, entry: _RegionEntry, seed: int) -> dict:
        """The chosen, oriented direction of ``spec`` for ``entry`` and its matched strengths per sign.

        Returns ``{"vector", "strengths": {sign: (strength, calibrated change)}, "flipped", "candidate",
        "region_ratio", "orientation": {...}}``; ``{"error": text}`` when the method or the calibration fails.
        """
        key = (spec.label, entry.label, seed)
        if key not in self._directions:
            method_seed = 0 if spec.method in SEED_FREE_METHODS else seed
            try:
                found = self._find_direction(spec, entry, method_seed, seed)
                self._save_direction(spec, entry, seed, found)
            except (ValueError, FloatingPointError) as error:
                found = {"error": f"{type(error).__name__}: {error}"}
            self._directions[key] = found
        return self._directions[key]

    def _candidates(self, spec: MethodSpec, entry: _RegionEntry, method_seed: int) -> tuple[torch.Tensor, list]:
        cache_key = (spec.label, entry.label, method_seed)
        if cache_key not in self._candidate_cache:
            gram_fg, gram_bg = self.region_grams(entry)
            count = self.plan.config.global_candidates if method_needs(spec.method) == "generator" \
                else self.plan.config.num_candidates
            result = run_method(spec.method, RegionProblem(gram_fg, gram_bg, generator=self.G),
                                num_directions=min(count, self.G.w_dim), seed=method_seed, **spec.options)
            vectors = result.vectors.double()  # [k, w_dim]
            # first-order region ratio n^T A_F n / n^T A_B n (eqs. 4-6)
            ratios = ((vectors @ gram_fg) * vectors).sum(1) / ((vectors @ gram_bg) * vectors).sum(1)  # [k]
            self._candidate_cache[cache_key] = (result.vectors, ratios.tolist())
        return self._candidate_cache[cache_key]

    def _find_direction(self, spec: MethodSpec, entry: _RegionEntry, method_seed: int, seed: int) -> dict:
        vectors, ratios = self._candidates(spec, entry, method_seed)
        best = int(np.nanargmax(ratios))
        vector = vectors[best].clone()  # [w_dim]
        calibration = self.samples("calibration", seed)
        strengths, target_shifts = {}, {}
        targets = self._target_columns(entry)
        guess = 1.0
        for sign in (1, -1) if targets else self.plan.signs:
            strength, change, usable, edited = self._calibrate(vector, sign, calibration, entry, guess)
            strengths[sign] = (strength, change)
            guess = strength
            if targets:
                estimates = self.domain.estimate_attributes(edited).double()
                shift = attribute_shift(calibration.attributes[usable], estimates)  # [n, A]
                target_shifts[sign] = float(shift[:, targets].mean())
        flipped = bool(targets) and target_shifts[1] < target_shifts[-1]
        if flipped:
            vector = -vector
            strengths = {1: strengths[-1], -1: strengths[1]}
            target_shifts = {1: target_shifts[-1], -1: target_shifts[1]}
        return {"vector": vector, "strengths": strengths, "flipped": flipped, "candidate": best,
                "region_ratio": ratios[best], "orientation": {"targets": self._target_names(entry),
                                                              "calibration_target_shift": target_shifts}}

    def _target_names(self, entry: _RegionEntry) -> list[str]:
        if not entry.per_image or self.domain.estimate_attributes is None:
            return []
        return list(self.domain.main_attributes.get(entry.spec, ()))

    def _target_columns(self, entry: _RegionEntry) -> list[int]:
        names = self._target_names(entry)
        return attribute_columns(names, self.domain.attribute_names) if names else []

    def _calibrate(self, vector: torch.Tensor, sign: int, calibration: _Samples, entry: _RegionEntry,
                   first_guess: float) -> tuple[float, float, list[int], torch.Tensor]:
        """Matched strength of ``sign * vector`` on the calibration images where the region was found:
        ``(strength, change, those images' indices, their edits [n, 3, S, S] at that strength)``."""
        regions = calibration.regions[entry.label]
        usable = [i for i, r in enumerate(regions) if r is not None]
        if not usable:
            raise ValueError(f"region {entry.label!r} was found in none of the calibration images")
        ws, originals = calibration.ws[usable], calibration.images[usable]
        edits: dict[float, torch.Tensor] = {}  # strength -> [n, 3, S, S]

        def change_at(strength: float) -> float:
            edits[strength] = _edit(self.G, ws, vector, sign * strength, self.layers, self.size,
                                    self.plan.config.batch_size)
            return float(np.mean([float(rms_change_inside(originals[j], edits[strength][j], regions[i]))
                                  for j, i in enumerate(usable)]))

        strength, change = matched_strength(change_at, self.targets[entry.label], first_guess=first_guess,
                                            rel_tol=self.plan.calibration_tolerance)
        return strength, change, usable, edits[strength]

    def _save_direction(self, spec: MethodSpec, entry: _RegionEntry, seed: int, found: dict) -> None:
        metadata = {"method": spec.method, "options": spec.all_options, "label": spec.label, "region": entry.label,
                    "replicate_seed": seed, "checkpoint": self.fingerprint, "candidate": found["candidate"],
                    "region_ratio": found["region_ratio"], "sign_flipped_by_orientation": found["flipped"],
                    "orientation": found["orientation"],
                    "matched_strength": {str(s): v[0] for s, v in found["strengths"].items()},
                    "truncation_psi": self.plan.config.truncation_psi, "space": "w", "layers": self.layers or "all"}
        stem = self.plan.out / "directions" / f"{spec.file_stem}__{_safe(entry.label)}__s{seed}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        Directions(found["vector"][None], torch.tensor([found["region_ratio"]]), metadata).save(stem, overwrite=True)

    # -- cells -------------------------------------------------------------------------------------

    def evaluate(self, entry: _RegionEntry, sign: int, seed: int, found: dict, example: Path | None,
                 title: str) -> dict:
        """Edit the held-out samples of replicate ``seed``, measure every metric of one cell, and
        save the first few samples and their edits as the PNG ``example`` (when given)."""
        config = self.plan.config
        samples = self.samples("sample", seed)
        strength, calibrated = found["strengths"][sign]
        alpha = sign * strength
        regions = samples.regions[entry.label]
        edited = _edit(self.G, samples.ws, found["vector"], alpha, self.layers, self.size, config.batch_size)
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
        metrics.update(self._distances(edited, seed))
        metrics.update(self._semantics(samples, edited, entry, alpha))
        if example is not None:
            _save_examples(example, samples.images[:EXAMPLES], edited[:EXAMPLES], regions[:EXAMPLES],
                           f"alpha {alpha:+.3g}", title)
        return metrics

    def _distances(self, images: torch.Tensor, seed: int) -> dict:
        if self.extractor is None:
            return {}
        real = self.real_features()
        fake = image_features(images, self.extractor, self.plan.config.batch_size)
        kid, kid_std = kid_from_features(real, fake, self.plan.kid_subset_size, self.plan.kid_subsets, seed)
        return {"fid": fid_from_features(real, fake), "kid": kid, "kid_std": kid_std}

    def _semantics(self, samples: _Samples, edited: torch.Tensor, entry: _RegionEntry, alpha: float) -> dict:
        metrics: dict[str, Any] = {}
        if samples.attributes is not None:
            shift = attribute_shift(samples.attributes, self.domain.estimate_attributes(edited))  # [N, A]
            targets = self._target_columns(entry)
            leakage = attribute_leakage(shift, targets, samples.valid)  # [A]
            summary = leakage_summary(leakage, self.domain.attribute_names)
            metrics.update({"leakage": summary["mean"], "leakage_max": summary["max"],
                            "leakage_max_attribute": summary["max_attribute"],
                            "leakage_by_attribute": dict(zip(self.domain.attribute_names, leakage.tolist())),
                            "attribute_shift_mean": dict(zip(self.domain.attribute_names, shift.mean(0).tolist()))})
            if targets:
                sign = 1 if alpha > 0 else -1
                metrics["target_shift"] = sign * float(shift[:, targets].mean())
                metrics["target_per_alpha"] = target_change_per_alpha(shift, alpha, targets)
        revealed = self.domain.revealed_parts.get(entry.spec) if entry.per_image else None
        if revealed and samples.parts is not None:
            labels = [self.domain.part_names.index(p) for p in revealed]
            gained = part_area_change(samples.parts, self.domain.segment(edited), labels)  # [N]
            metrics["revealed_area"] = 100 * float(gained.mean())
        return metrics

    def no_edit(self, seed: int) -> dict:
        return self._distances(self.samples("sample", seed).images, seed)


def _save_examples(path: Path, originals: torch.Tensor, edited: torch.Tensor, regions: Sequence[Region | None],
                   edit_label: str, title: str) -> None:
    """Originals ``[n, 3, S, S]`` (region outlined) above their edits, as the PNG ``path``."""
    tiles = [tile if region is None else draw_mask_outline(tile, region.mask)
             for tile, region in zip(tiles_from_images(originals, EXAMPLE_TILE), regions)]
    grid = make_grid([tiles, tiles_from_images(edited, EXAMPLE_TILE)], row_labels=["original", edit_label], title=title)
    save_png(grid, path)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text)


def _column(domain: Domain, entry: _RegionEntry, sign: int, oriented: bool) -> str:
    names = domain.sign_names.get(entry.spec) if entry.per_image and oriented else None
    return f"{entry.label} {names[sign > 0]}" if names else f"{entry.label} {'+' if sign > 0 else '-'}"


def _read_cell(path: Path, key: str) -> dict | None:
    try:
        cell = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return cell if cell.get("key") == key else None


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(json_ready(value), indent=2, allow_nan=False), encoding="utf-8")


def run_benchmark(config: BenchmarkConfig | Mapping[str, Any]) -> BenchmarkResults:
    """Run (or resume) a benchmark and write its reports into ``config.out``.

    Every (method, region, sign, seed) cell is stored as ``OUT/cells/*.json`` as soon as it is done;
    a cell whose file exists with the same settings is reused, so an interrupted run resumes and a
    rerun only computes what changed.  Writes ``benchmark.md``, ``results.csv``, ``results.json``,
    ``config.json``, plots (``fid.png``, ``kid.png``, ``outside_fraction.png``, ``target_shift.png``)
    and the chosen directions (``directions/``).

    Raises:
        ValueError / FileNotFoundError: for bad settings, before any work starts.
    """
    config = BenchmarkConfig.from_mapping(config) if isinstance(config, Mapping) else config
    plan = _plan(config)
    started = time.monotonic()
    run = _Run(plan)
    setup = dict(run.settings)
    plan.out.mkdir(parents=True, exist_ok=True)
    _write_json(plan.out / "config.json", setup)
    oriented = run.domain.estimate_attributes is not None

    jobs = [(spec, entry, seed) for seed in plan.seeds for entry in plan.regions for spec in plan.methods]
    cells: list[dict] = []
    computed = reused = 0
    bar = tqdm(total=len(jobs) * len(plan.signs) + len(plan.seeds), desc="benchmark cells", unit="cell",
               disable=not config.progress)

    def take_cell(path: Path, key: str, compute: Callable[[], dict]) -> None:
        """The cell stored at ``path`` when its key matches, else ``{"key": key, **compute()}``, stored."""
        nonlocal computed, reused
        cell = _read_cell(path, key)
        if cell is None:
            cell = {"key": key, **compute()}
            _write_json(path, cell)
            computed += 1
        else:
            reused += 1
        cells.append(cell)
        bar.update()

    def edit_cell(spec: MethodSpec, entry: _RegionEntry, sign: int, seed: int, stem: str) -> dict:
        bar.set_postfix_str(f"{spec.label}, {entry.label} {'+' if sign > 0 else '-'}, seed {seed}")
        cell = {"method": spec.label, "method_spec": spec.text, "region": entry.label,
                "sign": sign, "column": _column(run.domain, entry, sign, oriented), "seed": seed}
        found = run.direction(spec, entry, seed)
        if "error" in found:
            return {**cell, "error": found["error"], "metrics": {}}
        # examples of the first replicate only: the others look alike and would only add files
        example = f"examples/{stem}.png" if seed == plan.seeds[0] else None
        return {**cell, "metrics": run.evaluate(entry, sign, seed, found, example and plan.out / example,
                                                f"{spec.label}: {cell['column']}, seed {seed}"),
                "direction": {"candidate": found["candidate"], "region_ratio": found["region_ratio"],
                              "flipped": found["flipped"]}, "example": example}

    for seed in plan.seeds:
        take_cell(plan.out / "cells" / f"no-edit__s{seed}.json", run.cell_key(kind="no-edit", seed=seed),
                  lambda: {"method": "no edit", "method_spec": "none", "region": "-", "sign": 0, "column": "all",
                           "seed": seed, "metrics": run.no_edit(seed)})
    for spec, entry, seed in jobs:
        for sign in plan.signs:
            key = run.cell_key(kind="edit", method=spec.text, region=entry.label, region_spec=_region_id(entry),
                               target=run.targets[entry.label], sign=sign, seed=seed)
            stem = f"{spec.file_stem}__{_safe(entry.label)}__{'plus' if sign > 0 else 'minus'}__s{seed}"
            take_cell(plan.out / "cells" / f"{stem}.json", key, lambda: edit_cell(spec, entry, sign, seed, stem))
    bar.close()

    summary = _summarise(cells)
    results = BenchmarkResults(plan.out, setup, cells, summary, _normalization_winner(summary, plan),
                               computed, reused, notes=list(run.notes))
    if run.extractor is None:
        results.notes.append("FID/KID: n/a (no feature extractor: give inception_weights, or features=<nn.Module>)")
    if not oriented:
        results.notes.append("Semantic columns: n/a (this domain has no attribute estimator); signs are each "
                             "method's own: '+' moves along the direction as the method returned it.")
    failed = [c for c in cells if c.get("error")]
    for cell in failed:
        results.notes.append(f"failed: {cell['method']}, {cell['region']} {cell['sign']:+d}, seed {cell['seed']}: "
                             f"{cell['error']}")
    results.setup["seconds"] = round(time.monotonic() - started, 1)
    results.files = write_reports(results, plan.out)
    return results


def _region_id(entry: _RegionEntry) -> Any:
    spec = entry.spec
    if isinstance(spec, Region):
        return spec.to_json()
    if isinstance(spec, str) and not entry.per_image and Path(spec).is_file():
        return {"file": spec, "sha256": hashlib.sha256(Path(spec).read_bytes()).hexdigest()[:16]}
    return spec


# --- reports ----------------------------------------------------------------------------------------

def _columns(summary: list[dict]) -> list[str]:
    return list(dict.fromkeys(row["column"] for row in summary if row["column"] != "all"))


def _methods(summary: list[dict]) -> list[str]:
    return list(dict.fromkeys(row["method"] for row in summary if row["method"] != "no edit"))


def _format(value: dict | None, metric: str, *, bold: bool = False) -> str:
    if value is None or not _finite(value["mean"]):
        return "n/a"
    pattern = METRICS[metric][2]
    text = pattern.format(value["mean"])
    if _finite(value["ci95"]):
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
                      and _finite(cell[(m, column)]["metrics"][metric]["mean"])}
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


def write_markdown(results: BenchmarkResults, path: str | os.PathLike) -> Path:
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
                          f"({REFERENCE_EDIT[0]} -> {REFERENCE_EDIT[1]}) has {reference} of its change outside "
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
    lines += ["## OT-ReSeFa cost normalisation", ""]
    if results.normalization:
        for within, entry in results.normalization.items():
            for criterion in ("fid", "outside_fraction"):
                if criterion in entry:
                    means = ", ".join(f"{k}: {v:.3g}" for k, v in sorted(entry[criterion]["means"].items()))
                    lines.append(f"- within={within}, by mean {criterion}: **{entry[criterion]['winner']}** ({means})")
    else:
        lines.append("- only one `normalize` setting was run; add OT-ReSeFa variants to compare them.")
    lines += ["", "## Notes", ""] + [f"- {note}" for note in results.notes]
    lines += ["", f"{results.computed} cells computed, {results.reused} reused from `cells/`; "
              f"{setup.get('seconds', 0):.0f} s.", ""]
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_csv(results: BenchmarkResults, path: str | os.PathLike) -> Path:
    """Long format: one line per (method, region, sign, metric) with mean, 95% half-interval, n, values."""
    path = Path(path)
    with atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "method_spec", "region", "sign", "column", "metric", "mean", "ci95", "n", "values"])
        for row in results.summary:
            for metric, value in row["metrics"].items():
                writer.writerow([row["method"], row["method_spec"], row["region"], row["sign"], row["column"], metric,
                                 f"{value['mean']:.6g}" if _finite(value["mean"]) else "",
                                 f"{value['ci95']:.6g}" if _finite(value["ci95"]) else "",
                                 value["n"], ";".join("" if v is None else f"{v:.6g}" for v in value["values"])])
    return path


def write_plots(results: BenchmarkResults, folder: str | os.PathLike) -> dict[str, Path]:
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
                means.append(value["mean"] if value and _finite(value["mean"]) else np.nan)
                errors.append(value["ci95"] if value and _finite(value["ci95"]) else 0.0)
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


def write_reports(results: BenchmarkResults, out: str | os.PathLike) -> dict[str, Path]:
    """All report files of ``results`` into ``out``: Markdown, CSV, JSON and plots."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": write_markdown(results, out / "benchmark.md"), "csv": write_csv(results, out / "results.csv")}
    summary = {"setup": results.setup, "summary": results.summary, "normalization": results.normalization,
               "notes": results.notes, "computed": results.computed, "reused": results.reused}
    _write_json(out / "results.json", summary)
    files["json"] = out / "results.json"
    files.update({f"plot_{k}": v for k, v in write_plots(results, out).items()})
    return files
