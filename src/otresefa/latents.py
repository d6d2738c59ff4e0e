"""Latent codes from seeds, and seed lists from text.

Seeds follow NVIDIA's ``generate.py`` convention, ``z = RandomState(seed).randn(1, z_dim)``, so that
seed 4 of an FFHQ checkpoint is the same face here as in NVIDIA's tools and papers' figures.
"""

from __future__ import annotations

import numpy as np
import torch

from otresefa.models import Generator


def z_from_seed(G: Generator, seed: int) -> torch.Tensor:
    """``[z_dim]`` standard normal latent of ``seed`` (NVIDIA's convention)."""
    if seed < 0 or seed >= 2**32:
        raise ValueError(f"seeds are integers in [0, 2**32), got {seed}")
    return torch.from_numpy(np.random.RandomState(seed).randn(G.z_dim)).to(torch.float32)


def w_from_seed(G: Generator, seed: int, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> torch.Tensor:
    """``[w_dim]`` w of ``seed`` after the mapping network and truncation."""
    if truncation_cutoff is not None and truncation_cutoff < G.num_ws:
        raise ValueError("a truncation cutoff makes the layers' w differ; use ws_from_seed for a W+ latent")
    return ws_from_seed(G, seed, truncation_psi)[0]


def ws_from_seed(G: Generator, seed: int, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> torch.Tensor:
    """``[num_ws, w_dim]`` W+ latent of ``seed``."""
    z = z_from_seed(G, seed).to(G.device)
    with torch.no_grad():
        return G.mapping(z[None], None, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)[0].cpu()


def parse_seeds(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                start, end = part.split("-", 1)
                first, last = int(start), int(end)
                if last < first:
                    raise ValueError
                seeds.extend(range(first, last + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ValueError(f"cannot read seeds from {text!r}; write e.g. '0-3,7'") from None
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    if any(s < 0 for s in seeds):
        raise ValueError(f"seeds must be non-negative, got {text!r}")
    return seeds
