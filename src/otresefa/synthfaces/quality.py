"""How well a generator reproduces the synthetic-face domain, measured with the domain's ground truth.

- Per attribute, the 1-D Wasserstein distance between the attribute estimator's outputs on
  generated images and on rendered images (attributes live in [0, 1], so the distance is already
  a fraction of the attribute's range; the target is < 0.1).  The renders go through the same
  estimator, so its own error cancels to first order.
- For the parts a region method needs (mouth, eyes, nose), the share of generated samples in which
  the segmenter finds the part.
- FID between generated and rendered images on the domain's features (the estimator's penultimate
  layer, :class:`~otresefa.synthfaces.perception.SynthfacesFeatureExtractor`), through
  :func:`otresefa.metrics.fid.frechet_distance`: one number for the whole distribution, including what
  the attributes do not name (textures, outlines, artefacts).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from scipy.stats import wasserstein_distance

from otresefa.editing import render_ws
from otresefa.metrics.fid import frechet_distance
from otresefa.models import Generator
from otresefa.render.images import atomic_path
from otresefa.synthfaces.attributes import ATTRIBUTE_NAMES, attribute_visibility, sample_attributes
from otresefa.synthfaces.perception import SynthfacesFeatureExtractor, estimate_attributes, load_estimator, segment
from otresefa.synthfaces.regions import MIN_SEGMENTED_FRACTION
from otresefa.synthfaces.renderer import part_index, render

REQUIRED_PARTS = ("mouth", "eyes", "nose")
"""Parts that must be found for the mouth, eyes and nose regions to exist."""

ATTRIBUTE_W1_TARGET = 0.1
"""A generator reproduces an attribute when its W1 to the renders is below this (a tenth of the range)."""

PART_PRESENCE_TARGET = 0.95
"""A generator draws a part when the segmenter finds it in at least this share of samples."""


def generated_images(G: Generator, num: int, seed: int, truncation_psi: float = 1.0, batch: int = 64) -> torch.Tensor:
    """``num`` samples ``[num, 3, R, R]`` of ``G`` from z drawn with ``seed`` (no truncation by default)."""
    z = torch.randn(num, G.z_dim, generator=torch.Generator().manual_seed(seed))  # [num, z_dim]
    with torch.no_grad():
        ws = torch.cat([G.mapping(chunk.to(G.device), None, truncation_psi=truncation_psi).cpu()
                        for chunk in z.split(batch)])  # [num, num_ws, w_dim]
    return render_ws(G, ws, noise_mode="const", batch_size=batch)


def rendered_images(num: int, seed: int, size: int = 64, batch: int = 256) -> torch.Tensor:
    """``num`` renders ``[num, 3, size, size]`` of attributes sampled with ``seed``."""
    attrs = sample_attributes(num, seed)  # [num, A]
    return torch.cat([render(chunk, size=size).images for chunk in attrs.split(batch)])


def attribute_distances(generated: torch.Tensor, rendered: torch.Tensor) -> dict[str, float]:
    """1-D Wasserstein distance per attribute between estimates on the two image sets.

    ``glasses_frame`` is compared only among faces estimated to wear glasses (it is undefined
    without them).
    """
    est_gen, est_ren = estimate_attributes(generated), estimate_attributes(rendered)  # [N, A], [M, A]
    visible_gen, visible_ren = attribute_visibility(est_gen), attribute_visibility(est_ren)  # bool [N, A], [M, A]
    distances = {}
    for index, name in enumerate(ATTRIBUTE_NAMES):
        a, b = est_gen[visible_gen[:, index], index], est_ren[visible_ren[:, index], index]
        distances[name] = float(wasserstein_distance(a.numpy(), b.numpy())) if len(a) and len(b) else float("nan")
    return distances


def part_presence(images: torch.Tensor, parts: tuple[str, ...] = REQUIRED_PARTS) -> dict[str, float]:
    """Share of ``images [N, 3, H, W]`` in which the segmenter finds each part, with the same pixel
    threshold as the domain's regions (``MIN_SEGMENTED_FRACTION`` of the image)."""
    labels = segment(images)  # [N, H, W]
    min_pixels = max(1, round(labels[0].numel() * MIN_SEGMENTED_FRACTION))
    return {part: float(((labels == part_index(part)).flatten(1).sum(1) >= min_pixels).float().mean())
            for part in parts}


def domain_fid(generated: torch.Tensor, rendered: torch.Tensor) -> float:
    """FID of ``generated`` against ``rendered`` images on the estimator's penultimate features.

    Both sets go through :func:`otresefa.metrics.fid.frechet_distance` (quantised to uint8 as an image
    file would be). The covariances are ``F x F`` (``F`` = the estimator's ``num_features``), so a
    stable value needs several times ``F`` images per set.
    """
    return frechet_distance(rendered, generated, SynthfacesFeatureExtractor(load_estimator()))


@dataclass
class ModelQuality:
    """The numbers ``docs/synthfaces.md`` reports for a generator of the domain."""

    num_generated: int
    num_rendered: int
    attribute_w1: dict[str, float]
    part_presence: dict[str, float]
    fid: float

    @property
    def worst_attribute(self) -> tuple[str, float]:
        name = max(self.attribute_w1, key=lambda k: self.attribute_w1[k])
        return name, self.attribute_w1[name]

    def to_dict(self) -> dict:
        return {**asdict(self), "worst_attribute": list(self.worst_attribute)}

    def to_markdown(self) -> str:
        """The figures as Markdown tables, each attribute and part against its target."""

        def verdict(value: float, target: float, below: bool) -> str:
            met = value < target if below else value >= target
            return "met" if met else f"missed by {abs(value - target):.3f}"

        lines = [f"{self.num_generated:,} generated images, {self.num_rendered:,} renders.", "",
                 f"**FID** (estimator features, generated vs rendered): {self.fid:.2f}", "",
                 f"| attribute | W1 | target < {ATTRIBUTE_W1_TARGET} |", "|---|---|---|"]
        lines += [f"| {name} | {value:.3f} | {verdict(value, ATTRIBUTE_W1_TARGET, True)} |"
                  for name, value in self.attribute_w1.items()]
        lines += ["", f"| part | found in | target >= {PART_PRESENCE_TARGET:.0%} |", "|---|---|---|"]
        lines += [f"| {name} | {share:.2%} | {verdict(share, PART_PRESENCE_TARGET, False)} |"
                  for name, share in self.part_presence.items()]
        return "\n".join(lines) + "\n"


def model_quality(G: Generator, num: int = 2000, seed: int = 0) -> ModelQuality:
    """Attribute distances, part presence and FID on ``num`` generated and ``num`` rendered images.

    Generated samples use z seeds from ``seed``; renders use attribute seed ``seed + 1`` (a draw
    independent of any training batch, whose seeds are hashed from the run seed).

    Raises:
        ValueError: when ``num`` is below 2 (FID needs two samples per set for a covariance).
    """
    if num < 2:
        raise ValueError(f"num must be at least 2 (FID estimates covariances), got {num}")
    generated = generated_images(G, num, seed)
    rendered = rendered_images(num, seed + 1, size=G.img_resolution)
    return ModelQuality(num, num, attribute_distances(generated, rendered), part_presence(generated),
                        domain_fid(generated, rendered))


def write_quality(quality: ModelQuality, out: str | Path) -> dict[str, Path]:
    """Write ``quality.json`` and ``quality.md`` into the folder ``out`` (atomically); returns their paths."""
    out = Path(out)
    paths = {"json": out / "quality.json", "markdown": out / "quality.md"}
    with atomic_path(paths["json"]) as temporary:
        temporary.write_text(json.dumps(quality.to_dict(), indent=1) + "\n", encoding="utf-8")
    with atomic_path(paths["markdown"]) as temporary:
        temporary.write_text(quality.to_markdown(), encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> None:
    """``python -m otresefa.synthfaces.quality CHECKPOINT [--num N] [--seed S] [--out DIR]``: print the
    numbers as JSON, and with ``--out`` also write them to ``DIR/quality.json`` and ``DIR/quality.md``."""
    import argparse

    from otresefa.checkpoints import load_generator

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("checkpoint", help="a generator of the synthetic-face domain (path, or 'synthfaces')")
    parser.add_argument("--num", type=int, default=2000, help="generated and rendered images (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="folder for quality.json and quality.md")
    args = parser.parse_args(argv)
    try:
        quality = model_quality(load_generator(args.checkpoint), args.num, args.seed)
    except (ValueError, FileNotFoundError) as error:  # bad input: one line, exit code 2
        parser.exit(2, f"error: {error}\n")
    print(json.dumps(quality.to_dict(), indent=1))
    if args.out is not None:
        write_quality(quality, args.out)


if __name__ == "__main__":
    main()
