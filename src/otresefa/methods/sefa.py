"""SeFa: closed-form factorisation of latent semantics (Shen & Zhou, CVPR 2021).

A direction ``n`` in W changes the styles of the selected layers by ``A n``, ``A`` the stacked
style-affine weight matrices ``[sum_l C_l, w_dim]``. SeFa takes the directions that change the
styles most::

    max_n ||A n||^2 = n^T A^T A n     s.t.  n^T n = 1

i.e. the eigenvectors of ``A^T A`` ranked by eigenvalue (descending). As in SeFa's release, each
row of ``A`` (one output feature's weights) is first normalised to unit length, so every style
channel counts equally; this also makes the equalised-learning-rate ``weight_gain`` irrelevant.
The region is ignored: SeFa is a global baseline.
"""

from __future__ import annotations

from typing import Sequence

import torch

from otresefa.methods.base import MethodResult, RegionProblem, finish

__all__ = ["style_weights", "discover"]


def style_weights(generator, layers: Sequence[int] | None = None) -> tuple[torch.Tensor, list[str]]:
    """Stacked effective style-affine weights ``A`` [sum C_l, w_dim] (float64) and the layer names.

    ``layers`` are ws indices; ``None`` means every modulated convolution (toRGB excluded).
    """
    found = generator.synthesis.affine_layers(layers)
    if not found:
        raise ValueError(f"no style-affine layer matches layers={layers}")
    weights = [layer.weight.detach().to(torch.float64) * layer.weight_gain for _, _, layer in found]
    return torch.cat(weights, dim=0), [name for _, name, _ in found]  # [sum C_l, w_dim]


def discover(problem: RegionProblem, num_directions: int, seed: int, *, layers: list[int] | None) -> MethodResult:
    """Top eigenvectors of ``A^T A`` (rows of ``A`` unit-normalised); deterministic."""
    weights, names = style_weights(problem.generator, layers)
    if weights.shape[1] != problem.dim:
        raise ValueError(f"the generator's w_dim is {weights.shape[1]} but the Grams are "
                         f"{problem.dim} x {problem.dim}")
    weights = weights / weights.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    eigenvalues, eigenvectors = torch.linalg.eigh(weights.T @ weights)  # [d], [d, d] ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    info = {"layers": names, "eigenvalues": eigenvalues[:num_directions].tolist()}
    return finish(eigenvectors[:, :num_directions].T, eigenvalues[:num_directions], info)
