"""What a benchmark run is: its settings, the methods it compares, and the checked plan.

:class:`BenchmarkConfig` holds what the user asks for (fields left at ``None`` take the preset's
value: :data:`FULL`, the paper's sizes, or :data:`QUICK`, a smoke test); :func:`make_plan` checks
every setting before any work starts and fills in the presets.  Methods are written as
:class:`MethodSpec` texts, ``"NAME"`` or ``"NAME:OPTION=VALUE,..."``, read by the registry's one
option parser.
"""

from __future__ import annotations

import json
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from otresefa.io import dataclass_from_dict
from otresefa.methods import method_info, parse_option_pairs

if TYPE_CHECKING:
    from torch import nn

    from otresefa.domains import Domain
    from otresefa.models import Generator

__all__ = ["BenchmarkConfig", "FULL", "MethodSpec", "NOT_IMPLEMENTED", "Plan", "QUICK", "RegionEntry", "make_plan"]

NOT_IMPLEMENTED = {
    "sdflow": "SDFlow (Li et al., ICASSP 2024; the paper's Table 1) is not implemented in otresefa: it needs a "
              "conditional normalizing flow trained on attribute labels. Its row is not reported.",
}

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
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

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


@dataclass(frozen=True)
class MethodSpec:
    """A method of the registry with options: ``MethodSpec.parse("ot-resefa:within=foreground,lam=4")``."""

    method: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method in NOT_IMPLEMENTED:
            raise ValueError(NOT_IMPLEMENTED[self.method])
        parsed = method_info(self.method).parse_options(self.options)
        object.__setattr__(self, "options", dict(sorted(parsed.items())))

    @classmethod
    def parse(cls, spec: "str | MethodSpec") -> "MethodSpec":
        if isinstance(spec, MethodSpec):
            return spec
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"a method is written NAME or NAME:OPTION=VALUE,..., got {spec!r}")
        name, _, rest = spec.strip().partition(":")
        name = name.strip().lower()
        if name in NOT_IMPLEMENTED:
            raise ValueError(NOT_IMPLEMENTED[name])
        return cls(name, parse_option_pairs(name, rest))

    @property
    def info(self):
        return method_info(self.method)

    @property
    def all_options(self) -> dict[str, Any]:
        """Every option of the method, defaults filled in."""
        return {**self.info.defaults, **self.options}

    @property
    def label(self) -> str:
        """Table name: the title, the options the registry always shows, then the options set."""
        info = self.info
        parts = [_shown(self.all_options[name]) for name in info.shown]
        parts += [f"{k}={_shown(v)}" for k, v in self.options.items() if k not in info.shown]
        return f"{info.title} ({', '.join(parts)})" if parts else info.title

    @property
    def text(self) -> str:
        options = ",".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in self.options.items())
        return f"{self.method}:{options}" if options else self.method

    @property
    def file_stem(self) -> str:
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", self.text.replace(":", "__").replace(",", "_"))


def _shown(value: Any) -> str:
    """An option value as a label shows it: ``4`` for ``4.0``, ``1e-05``, ``both``."""
    return format(value, "g") if isinstance(value, float) else str(value)


@dataclass
class BenchmarkConfig:
    """Everything a benchmark run depends on.  Fields left at ``None`` take the preset's value
    (:data:`FULL`, or :data:`QUICK` when ``quick``).

    Attributes
    ----------
    out : path
        Output folder (cells, tables, plots); reused across runs.
    generator : str, path or Generator
        ``"synthfaces"`` (the built-in model), a checkpoint path, or a loaded Generator.
    quick : bool
        The :data:`QUICK` preset (CI smoke test) instead of :data:`FULL` (the paper's sizes).
    domain : str or Domain
        ``"auto"`` (:func:`otresefa.domains.domain_of` the generator), ``"synthfaces"``,
        ``"generic"`` or a :class:`~otresefa.domains.Domain`.
    regions : sequence
        Region names of the domain, FFHQ presets, ``"box:r,c,h,w"``, mask files, or Regions.
    signs : sequence
        ``-1`` and/or ``+1`` (or ``"-"``, ``"+"``).
    methods : sequence
        Method specs ``"NAME"`` / ``"NAME:OPTION=VALUE,..."`` or :class:`MethodSpec` s.
    seeds : sequence of int
        Replicates; replicate ``s`` uses method seed ``s`` and its own sample/calibration seeds.
    discovery_seeds : sequence of int
        Latent seeds whose Jacobians give the Gram matrices (below 1,000,000).
    num_real, num_edited, num_calibration : int
        Images in the real set, per cell, for calibration.
    calibration_tolerance : float
        Relative tolerance of the matched change on the calibration images.
    target_change : float, mapping or None
        Matched RMS pixel change inside the region (images in [-1, 1]): one number, a mapping
        region label -> number, or None: the domain's reference edit where it has one (built-in
        domain: mouth, nose, eyes), else :data:`TARGET_CHANGE`.
    truncation_psi : float
        Truncation of every latent (discovery, calibration, samples).
    jacobian_size : int
        Jacobians are taken at ``min(jacobian_size, resolution)`` (the paper: 256).
    layers : sequence of int or None
        W+ layers that receive the edit and the Jacobian's perturbation (None: all).
    num_candidates : int
        A region method's direction is the best (largest region ratio) of its top
        ``num_candidates``; 1 = its own top direction.
    global_candidates : int
        The same for methods that ignore the region (SeFa, GANSpace).
    real : str or path
        ``"auto"`` (the domain's real images, else unedited generator samples), ``"generator"``, or
        a folder of image files (PNG/JPEG, the first ``num_real`` in name order).
    features : str or nn.Module
        ``"auto"`` (the domain's extractor, else Inception when ``inception_weights`` is given,
        else none: FID/KID n/a), ``"domain"``, ``"inception"``, ``"none"`` or an ``nn.Module``
        (uint8 images ``[N, 3, H, W]`` -> ``[N, F]``).
    inception_weights : path or None
        Local path of the FID Inception-v3 weights (never downloaded).
    image_size : int
        Larger images are area-downsampled to this for every metric (the paper: 256).
    kid_subset_size, kid_subsets : int or None
        KID subset size (None: ``min(1000, num_real, num_edited)``) and number of subsets.
    batch_size : int
        Generator batch.
    device : str or None
        Where the generator and networks run.
    jacobian_cache : bool or path
        ``True`` (the default cache folder), a folder, or ``False``.
    progress : bool
        tqdm progress bars.
    """

    out: str | os.PathLike = "benchmark"
    generator: "str | os.PathLike | Generator" = "synthfaces"
    quick: bool = False
    domain: "str | Domain" = "auto"
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
    features: "str | nn.Module" = "auto"
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
        try:
            return dataclass_from_dict(cls, values)
        except ValueError as error:
            raise ValueError(f"unknown benchmark setting: {error}") from None


@dataclass(frozen=True)
class RegionEntry:
    """One region of the benchmark: its label, and either a domain name (per image) or a fixed spec."""

    label: str
    spec: Any
    per_image: bool = False


@dataclass
class Plan:
    """A validated configuration with the presets filled in."""

    config: BenchmarkConfig
    out: Path
    methods: list[MethodSpec]
    regions: list[RegionEntry]
    signs: tuple[int, ...]
    seeds: tuple[int, ...]
    discovery_seeds: tuple[int, ...]
    num_real: int
    num_edited: int
    num_calibration: int
    calibration_tolerance: float
    kid_subsets: int
    kid_subset_size: int


def _preset(config: BenchmarkConfig, name: str) -> Any:
    value = getattr(config, name)
    return (QUICK if config.quick else FULL)[name] if value is None else value


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
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


def make_plan(config: BenchmarkConfig) -> Plan:
    """Check every setting before any work starts; raise ``ValueError`` naming the bad one."""
    from torch import nn

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
    if not isinstance(config.domain, str) or config.domain not in ("auto", "synthfaces", "generic"):
        from otresefa.domains import Domain

        if not isinstance(config.domain, Domain):
            raise ValueError(f"domain must be 'auto', 'synthfaces', 'generic' or a Domain, got {config.domain!r}")
    return Plan(config, Path(config.out), methods, regions, signs, seeds, discovery_seeds, num_real, num_edited,
                num_calibration, float(calibration_tolerance), kid_subsets, kid_subset_size)


def _region_entries(config: BenchmarkConfig) -> list[RegionEntry]:
    from otresefa.regions import Region

    specs = list(config.regions) if not isinstance(config.regions, (str, Region)) else [config.regions]
    if not specs:
        raise ValueError("no regions to benchmark")
    entries = []
    for spec in specs:
        if isinstance(spec, Region):
            entries.append(RegionEntry(spec.name, spec))
        elif isinstance(spec, (str, os.PathLike)):
            text = str(spec)
            is_file = Path(text).suffix.lower() in IMAGE_SUFFIXES or Path(text).is_file()
            entries.append(RegionEntry(Path(text).stem if is_file else text, text))
        elif isinstance(spec, (list, tuple)):
            entries.append(RegionEntry("box:" + ",".join(f"{v:g}" for v in spec), list(spec)))
        else:
            raise ValueError(f"a region is a name, 'box:r,c,h,w', a mask file, a box or a Region; got {spec!r}")
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise ValueError(f"regions are repeated: {labels}")
    return entries
