"""What the benchmark's cells read: the generator, its domain, the image sets and the discovery Grams.

:class:`Inputs` loads the generator and its domain (:func:`otresefa.domains.domain_of`), picks the
FID/KID features, and computes each shared input once: the held-out sample and calibration images
of a replicate (with their part maps, regions and attributes), the real set's features (cached on
disk), and per region the Gram matrices averaged over the discovery seeds.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from otresefa.benchmark.config import (CALIBRATION_SEED_BASE, IMAGE_SUFFIXES, REAL_SEED, SAMPLE_SEED_BASE,
                                       SEEDS_PER_REPLICATE, TARGET_CHANGE, Plan, RegionEntry)
from otresefa.domains import Domain, domain_of, generic_domain
from otresefa.editing import render_ws
from otresefa.grams import RegionGrams
from otresefa.io import atomic_path, json_ready, settings_fingerprint, tensors_fingerprint
from otresefa.jacobian import generator_fingerprint, jacobian
from otresefa.latents import z_from_seed
from otresefa.metrics.fid import image_features, inception_features
from otresefa.models import Generator, GeneratorBase, check_layer_indices
from otresefa.regions import Region, resolve_region

__all__ = ["Inputs", "Samples", "downsample", "load_image_folder", "render", "ws_of_seeds"]


def downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, 3, R, R] -> [N, 3, size, size]`` by area averaging when ``R > size``."""
    return F.interpolate(images, size=(size, size), mode="area") if images.shape[-1] > size else images


def ws_of_seeds(G: Generator, seeds: Sequence[int], psi: float) -> torch.Tensor:
    """The truncated W+ latents ``[N, num_ws, w_dim]`` of ``seeds`` (NVIDIA's seed convention)."""
    z = torch.stack([z_from_seed(G, s) for s in seeds]).to(G.device)  # [N, z_dim]
    with torch.no_grad():
        return G.mapping(z, None, truncation_psi=psi).cpu()  # [N, num_ws, w_dim]


def render(G: Generator, ws: torch.Tensor, size: int, batch_size: int) -> torch.Tensor:
    """Images of ``ws [N, num_ws, w_dim]`` at ``size`` ``[N, 3, size, size]``, rendered in batches
    (the full-resolution images of a large model never all sit in memory)."""
    return torch.cat([downsample(render_ws(G, chunk, batch_size=batch_size), size) for chunk in ws.split(batch_size)])


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


@dataclass
class Samples:
    """The unedited images of a set of seeds, and what every cell reads from them."""

    ws: torch.Tensor  # [N, num_ws, w_dim]
    images: torch.Tensor  # [N, 3, S, S]
    parts: torch.Tensor | None  # Long[N, S, S]
    attributes: torch.Tensor | None  # [N, A]
    valid: torch.Tensor | None  # bool [N, A]
    regions: dict[str, list[Region | None]]  # region label -> per-image region (None: not found)


class Inputs:
    """The generator, its domain and the shared inputs of one benchmark run (each computed once).

    ``plan.regions`` are marked per image here, once the domain is known: a domain's named parts are
    segmented on every image, anything else is one fixed region for all.
    """

    def __init__(self, plan: Plan):
        from otresefa.checkpoints import load_generator

        self.plan = plan
        config = plan.config
        source = config.generator
        self.G = source if isinstance(source, GeneratorBase) else load_generator(source, device=config.device)
        self.generator_name = "Generator object" if isinstance(source, GeneratorBase) else str(source)
        self.fingerprint = generator_fingerprint(self.G)
        self.domain = self._domain()
        plan.regions = [dataclasses.replace(e, per_image=self.domain.is_per_image(e.spec) and self.domain.segment
                                            is not None) for e in plan.regions]
        self.size = min(config.image_size, self.G.img_resolution)
        self.jacobian_size = min(config.jacobian_size, self.G.img_resolution)
        self.layers = None if config.layers is None else list(config.layers)
        if self.layers is not None:
            check_layer_indices(self.layers, self.G.num_ws)
        for entry in plan.regions:
            if not entry.per_image:
                resolve_region(entry.spec, self.size, presets=dict(self.domain.presets))  # unknown or empty
        self.extractor, self.features_name = self._features()
        self.references = {e.label: self.domain.reference_edit(e.spec, self.size) for e in plan.regions
                           if e.per_image and self.domain.reference_edit is not None
                           and e.spec in self.domain.main_attributes}
        self.targets = {e.label: self._target(e) for e in plan.regions}
        self._grams: dict[str, RegionGrams | None] | None = None
        self._real_features: torch.Tensor | None = None
        self._samples: dict[tuple[str, int], Samples] = {}

    # -- setup -----------------------------------------------------------------------------------

    def _domain(self) -> Domain:
        choice = self.plan.config.domain
        if isinstance(choice, Domain):
            return choice
        if choice == "synthfaces":
            from otresefa.synthfaces.domain import synthfaces_domain

            return synthfaces_domain(self.plan.config.device)
        return generic_domain() if choice == "generic" else domain_of(self.G, self.plan.config.device)

    def _features(self) -> tuple[nn.Module | None, str]:
        config = self.plan.config
        choice = config.features
        if isinstance(choice, nn.Module):
            return choice.eval(), f"custom ({type(choice).__name__} {tensors_fingerprint(choice.state_dict())[:12]})"
        if choice == "inception" or (choice == "auto" and self.domain.features is None and config.inception_weights):
            return inception_features(config.inception_weights).to(self.G.device), "Inception-v3 pool features (2048-d)"
        if choice in ("domain", "auto") and self.domain.features is not None:
            return self.domain.features(), f"{self.domain.name} attribute estimator's penultimate layer"
        if choice == "domain":
            raise ValueError(f"the {self.domain.name} domain has no feature extractor; use features='inception' "
                             "with inception_weights, or pass an nn.Module")
        return None, "none"

    def _target(self, entry: RegionEntry) -> float:
        """The matched RMS change inside ``entry``: given, else the reference edit's, else the default."""
        given = self.plan.config.target_change
        if isinstance(given, dict):
            given = given.get(entry.label)
        if given is not None:
            return float(given)
        return self.references[entry.label][0] if entry.label in self.references else TARGET_CHANGE

    @functools.cached_property
    def settings(self) -> dict:
        """The resolved settings of the run (``config.json``)."""
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
        """Fingerprint of everything a cell's numbers depend on: a stored cell is reused only if it
        matches.  Settings that list the benchmark's parts (methods, regions, their targets, ...) are
        left out, so adding a part keeps the other cells; each cell passes its own part in ``cell``."""
        per_part = ("methods", "method_labels", "regions", "region_kind", "signs", "seeds", "quick", "target_change",
                    "reference_edit")
        setup = {k: v for k, v in self.settings.items() if k not in per_part}
        return settings_fingerprint({**setup, **cell})

    # -- images and their regions ----------------------------------------------------------------

    def regions_of(self, entry: RegionEntry, parts: torch.Tensor | None, count: int, size: int) -> list[Region | None]:
        """The region of each of ``count`` images at ``size`` (None where the part is missing)."""
        if not entry.per_image:
            return [resolve_region(entry.spec, size, presets=dict(self.domain.presets))] * count
        regions: list[Region | None] = []
        for part_map in parts:
            try:
                regions.append(self.domain.named_region(part_map, entry.spec).resized(size).check_usable())
            except ValueError:
                regions.append(None)
        return regions

    def samples(self, kind: str, seed: int) -> Samples:
        """Held-out ``"sample"`` or ``"calibration"`` images of replicate ``seed`` (computed once)."""
        key = (kind, seed)
        if key not in self._samples:
            plan = self.plan
            base, count = ((SAMPLE_SEED_BASE, plan.num_edited) if kind == "sample"
                           else (CALIBRATION_SEED_BASE, plan.num_calibration))
            start = base + seed * SEEDS_PER_REPLICATE
            ws = ws_of_seeds(self.G, range(start, start + count), plan.config.truncation_psi)
            images = render(self.G, ws, self.size, plan.config.batch_size)  # [N, 3, S, S]
            parts = self.domain.segment(images) if self.domain.segment is not None else None
            attributes = valid = None
            if self.domain.estimate_attributes is not None:
                attributes = self.domain.estimate_attributes(images).double()  # [N, A]
                valid = self.domain.attribute_valid(attributes) if self.domain.attribute_valid else None
            regions = {entry.label: self.regions_of(entry, parts, count, self.size) for entry in plan.regions}
            self._samples[key] = Samples(ws, images, parts, attributes, valid, regions)
        return self._samples[key]

    def grams(self, entry: RegionEntry) -> RegionGrams:
        """``(A_F, A_B)`` of one region averaged over the discovery seeds where it was found.

        Each discovery Jacobian is computed (or read from the cache) once for all regions, reduced
        to their Grams at once and dropped.

        Raises
        ------
        ValueError
            When the region is in none of the discovery images.
        """
        if self._grams is None:
            plan, config = self.plan, self.plan.config
            found: dict[str, RegionGrams | None] = {e.label: None for e in plan.regions}
            ws = ws_of_seeds(self.G, plan.discovery_seeds, config.truncation_psi)  # [D, num_ws, w_dim]
            images = render(self.G, ws, self.G.img_resolution, config.batch_size)  # [D, 3, R, R]
            parts = self.domain.segment(images) if self.domain.segment is not None else None
            for index in tqdm(range(len(plan.discovery_seeds)), desc="Jacobians (discovery seeds)", unit="seed",
                              disable=not config.progress):
                J = jacobian(self.G, ws[index, 0], size=self.jacobian_size, layers=self.layers,
                             cache=config.jacobian_cache)  # [S, S, w_dim]
                for other in plan.regions:
                    region = self.regions_of(other, None if parts is None else parts[index:index + 1], 1,
                                             self.jacobian_size)[0]
                    if region is not None:
                        grams = RegionGrams.of(J, region)
                        found[other.label] = grams if found[other.label] is None else found[other.label] + grams
            self._grams = found
        grams = self._grams[entry.label]
        if grams is None:
            raise ValueError(f"region {entry.label!r} was found in none of the discovery seeds' images "
                             f"(seeds {', '.join(map(str, self.plan.discovery_seeds))})")
        return grams

    # -- the real set ----------------------------------------------------------------------------

    def real_features(self) -> torch.Tensor:
        """Features ``[num_real, F]`` of the real set, cached in ``OUT/cache``."""
        if self._real_features is None:
            plan, config = self.plan, self.plan.config
            path = plan.out / "cache" / f"real_features_{self.cell_key(kind='real')}.pt"
            if path.is_file():
                self._real_features = torch.load(path, weights_only=True)
            else:
                self._real_features = image_features(self._real_images(), self.extractor, config.batch_size)
                with atomic_path(path) as temporary:
                    torch.save(self._real_features, temporary)
        return self._real_features

    def _real_images(self) -> torch.Tensor:
        plan, config = self.plan, self.plan.config
        if config.real == "auto" and self.domain.real_images is not None:
            return downsample(self.domain.real_images(plan.num_real, REAL_SEED, self.G.img_resolution), self.size)
        if config.real in ("auto", "generator"):
            ws = ws_of_seeds(self.G, range(REAL_SEED, REAL_SEED + plan.num_real), config.truncation_psi)
            return render(self.G, ws, self.size, config.batch_size)
        return load_image_folder(config.real, plan.num_real, self.size)
