"""What a region name means for a given generator.

On aligned FFHQ/MetFaces models a region name is one of ReSeFa's fixed boxes
(:data:`otresefa.regions.FFHQ_PRESETS`).  On the built-in synthetic-face model it means the
segmented parts of the image at hand (:func:`otresefa.synthfaces.regions.synthface_region`): faces
there move, widen and tilt, and the shipped segmenter finds the mouth, eyes, nose, ... of each one.
"""

from __future__ import annotations

from typing import Any

import torch

from otresefa.models import Generator
from otresefa.regions import FFHQ_PRESETS, Region, resolve_region


def is_synthfaces(G: Generator) -> bool:
    """Whether ``G`` was trained on the built-in synthetic-face renderer (its metadata says so)."""
    return (getattr(G, "training_metadata", None) or {}).get("domain") == "synthfaces"


def region_names(G: Generator) -> list[str]:
    """The region names that :func:`region_for` understands for ``G``."""
    if is_synthfaces(G):
        from otresefa.synthfaces.regions import SYNTHFACE_REGIONS

        return list(SYNTHFACE_REGIONS)
    return list(FFHQ_PRESETS)


def region_for(G: Generator, w: torch.Tensor, spec: Any, size: int | None = None) -> Region:
    """The region ``spec`` on the image of ``w [w_dim]``, at ``size`` (default: the image size).

    Names of the built-in domain's parts are segmented on ``G``'s image of ``w``; anything else
    (presets, ``"box:..."``, mask files, :class:`Region`) goes to :func:`resolve_region`.
    """
    size = G.img_resolution if size is None else size
    if is_synthfaces(G) and isinstance(spec, str) and spec in region_names(G):
        from otresefa.synthfaces.regions import synthface_region

        with torch.no_grad():
            ws = torch.as_tensor(w, dtype=torch.float32).reshape(1, 1, -1).repeat(1, G.num_ws, 1).to(G.device)
            image = G.synthesis(ws, noise_mode="const")[0].cpu()  # [3, R, R]
        return synthface_region(image, spec).resized(size).check_usable()
    return resolve_region(spec, size)
