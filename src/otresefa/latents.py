"""Latent codes: from seeds, and as the shapes the generator takes.

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


def _finite_latent(latent) -> torch.Tensor:
    latent = torch.as_tensor(latent, dtype=torch.float32)
    if not torch.isfinite(latent).all():
        raise ValueError("the latent contains NaN or inf")
    return latent


def as_ws(G: Generator, latent) -> torch.Tensor:
    """A W latent as W+ ``[N, num_ws, w_dim]``: ``[w_dim]`` and ``[N, w_dim]`` are broadcast to all
    layers, W+ codes ``[N, num_ws, w_dim]`` are kept (numpy or torch).

    Raises
    ------
    ValueError
        For another shape, or NaN/inf values.
    """
    latent = _finite_latent(latent)
    if latent.ndim == 1:
        latent = latent[None]
    if latent.ndim == 2:
        if latent.shape[1] != G.w_dim:
            raise ValueError(f"a w latent has shape [{G.w_dim}], [N, {G.w_dim}] or W+ [N, {G.num_ws}, {G.w_dim}], "
                             f"got {list(latent.shape)}")
        latent = latent[:, None].repeat(1, G.num_ws, 1)
    if latent.ndim != 3 or latent.shape[1:] != (G.num_ws, G.w_dim):
        raise ValueError(f"a W+ latent has shape [N, {G.num_ws}, {G.w_dim}], got {list(latent.shape)}")
    return latent


def one_ws(G: Generator, latent) -> torch.Tensor:
    """One sample's latent as W+ ``[1, num_ws, w_dim]``: from ``[w_dim]`` (broadcast), a W+ code
    ``[num_ws, w_dim]`` or ``[1, num_ws, w_dim]`` (numpy or torch).

    Raises
    ------
    ValueError
        For another shape (e.g. a batch), or NaN/inf values.
    """
    latent = _finite_latent(latent)
    if latent.ndim == 2 and latent.shape == (G.num_ws, G.w_dim):
        latent = latent[None]
    if latent.ndim == 1 or (latent.ndim == 3 and latent.shape[0] == 1):
        return as_ws(G, latent)
    raise ValueError(f"one latent is [{G.w_dim}] or W+ [{G.num_ws}, {G.w_dim}], got {list(latent.shape)}")


def as_z(G: Generator, latent) -> torch.Tensor:
    """A Z latent as ``[N, z_dim]`` (``[z_dim]`` is one; numpy or torch)."""
    latent = _finite_latent(latent)
    latent = latent[None] if latent.ndim == 1 else latent
    if latent.ndim != 2 or latent.shape[1] != G.z_dim:
        raise ValueError(f"a z latent has shape [{G.z_dim}] or [N, {G.z_dim}], got {list(latent.shape)}")
    return latent
