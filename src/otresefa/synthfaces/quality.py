"""How well a generator reproduces the synthetic-face domain, measured with the domain's ground truth.

- Per attribute, the 1-D Wasserstein distance between the attribute estimator's outputs on
  generated images and on rendered images (attributes live in [0, 1], so the distance is already
  a fraction of the attribute's range; the target is < 0.1).  The renders go through the same
  estimator, so its own error cancels to first order.
- For the parts a region method needs (mouth, eyes, nose), the share of generated samples in which
  the segmenter finds the part.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from scipy.stats import wasserstein_distance

from otresefa.editing import render_ws
from otresefa.models import Generator
from otresefa.synthfaces.attributes import ATTRIBUTE_NAMES, attribute_visibility, sample_attributes
from otresefa.synthfaces.perception import estimate_attributes, segment
from otresefa.synthfaces.regions import MIN_SEGMENTED_FRACTION
from otresefa.synthfaces.renderer import part_index, render

REQUIRED_PARTS = ("mouth", "eyes", "nose")
"""Parts that must be found for the mouth, eyes and nose regions to exist."""


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


@dataclass
class ModelQuality:
    """The numbers ``docs/synthfaces.md`` reports for a generator of the domain."""

    num_generated: int
    num_rendered: int
    attribute_w1: dict[str, float]
    part_presence: dict[str, float]

    @property
    def worst_attribute(self) -> tuple[str, float]:
        name = max(self.attribute_w1, key=lambda k: self.attribute_w1[k])
        return name, self.attribute_w1[name]

    def to_dict(self) -> dict:
        return asdict(self)


def model_quality(G: Generator, num: int = 2000, seed: int = 0) -> ModelQuality:
    """Attribute distances and part presence on ``num`` generated and ``num`` rendered images.

    Generated samples use z seeds from ``seed``; renders use attribute seed ``seed + 1`` (a draw
    independent of any training batch, whose seeds are hashed from the run seed).
    """
    generated = generated_images(G, num, seed)
    rendered = rendered_images(num, seed + 1, size=G.img_resolution)
    return ModelQuality(num, num, attribute_distances(generated, rendered), part_presence(generated))


def main(argv: list[str] | None = None) -> None:
    """``python -m otresefa.synthfaces.quality CHECKPOINT [--num N] [--seed S]``: print the numbers as JSON."""
    import argparse
    import json

    from otresefa.checkpoints import load_generator

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("checkpoint", help="a generator of the synthetic-face domain (path, or 'synthfaces')")
    parser.add_argument("--num", type=int, default=2000, help="generated and rendered images (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    quality = model_quality(load_generator(args.checkpoint), args.num, args.seed)
    print(json.dumps({**quality.to_dict(), "worst_attribute": quality.worst_attribute}, indent=1))


if __name__ == "__main__":
    main()
