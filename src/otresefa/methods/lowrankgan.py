"""LowRankGAN: low-rank subspaces for local editing (Zhu et al., NeurIPS 2021).

Both Gram matrices are split by robust PCA (principal component pursuit, Candes et al. 2011)::

    min_{L, S} ||L||_* + sparsity * ||S||_1      s.t.  L + S = A

into a low-rank part (the directions that really move the region) and a sparse part (isolated
outliers). The attribute subspace is the principal subspace of ``L_F`` (its dimension is the
number of directions asked for); the directions to avoid are those of ``L_B``'s column space,
minus ``relax`` of its weakest ones. The returned directions are ``L_F``'s principal directions
projected onto the null space of ``L_B`` (the orthogonal complement of that column space) and
normalised, ranked (scored) by their ``L_F`` eigenvalue, as in LowRankGAN.

LowRankGAN's release solves the program by ADMM with a fixed penalty ``mu``; :func:`rpca` uses the
inexact augmented Lagrangian method (ADMM with a growing penalty), which solves the same convex
program in tens instead of thousands of iterations.
"""

from __future__ import annotations

import math

import torch

from otresefa.methods.base import MethodResult, RegionProblem, finish

__all__ = ["rpca", "scaled_sparsity", "discover", "DEFAULT_SPARSITY"]

#: LowRankGAN's sparsity weight (for 512 x 512 Grams). Principal component pursuit's own default is
#: ``1/sqrt(max(m, n))`` (1/22.6 for 512 x 512); ``rpca(sparsity=None)`` uses that.
DEFAULT_SPARSITY = 1.0 / 60.0


def _shrink(matrix: torch.Tensor, threshold: float) -> torch.Tensor:
    """Entry-wise soft threshold, the proximal map of ``threshold * ||.||_1``."""
    return torch.sign(matrix) * torch.clamp(matrix.abs() - threshold, min=0.0)


def _singular_value_threshold(matrix: torch.Tensor, threshold: float) -> torch.Tensor:
    """Proximal map of ``threshold * ||.||_*``: soft-threshold the singular values."""
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)  # [m, r], [r], [r, n]
    keep = s > threshold
    return (u[:, keep] * (s[keep] - threshold)) @ vh[keep]  # [m, n]


def rpca(M: torch.Tensor, sparsity: float | None = DEFAULT_SPARSITY, max_iter: int = 10000,
         tol: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal component pursuit ``M = L + S`` by the inexact augmented Lagrangian method (ADMM).

    Alternates, for the augmented Lagrangian with multiplier ``Y`` and penalty ``mu``,
    ``L <- SVT_{1/mu}(M - S + Y/mu)``, ``S <- shrink_{sparsity/mu}(M - L + Y/mu)``,
    ``Y <- Y + mu (M - L - S)``, and grows ``mu`` geometrically (Lin, Chen & Ma 2010: start
    ``mu = 1.25 / ||M||_2``, factor 1.5, capped at ``1e7 mu``; ``Y`` starts at
    ``M / max(||M||_2, ||M||_max / sparsity)``). Stops when ``||M - L - S||_F <= tol ||M||_F``.

    Parameters
    ----------
    M : Tensor [m, n]
    sparsity : float or None
        Weight of ``||S||_1``; ``None`` means ``1 / sqrt(max(m, n))``.
    """
    matrix = torch.as_tensor(M, dtype=torch.float64)
    if matrix.ndim != 2 or not bool(torch.isfinite(matrix).all()):
        raise ValueError("rpca needs a finite 2-D matrix")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    if sparsity is None:
        sparsity = 1.0 / math.sqrt(max(matrix.shape))
    norm_fro = float(torch.linalg.matrix_norm(matrix))
    if norm_fro == 0:
        return matrix.clone(), torch.zeros_like(matrix)
    norm_two = float(torch.linalg.matrix_norm(matrix, ord=2))
    multiplier = matrix / max(norm_two, float(matrix.abs().max()) / sparsity)  # [m, n], Y
    mu = 1.25 / norm_two
    mu_max = mu * 1e7
    sparse = torch.zeros_like(matrix)  # [m, n]
    for _ in range(max_iter):
        low_rank = _singular_value_threshold(matrix - sparse + multiplier / mu, 1.0 / mu)
        sparse = _shrink(matrix - low_rank + multiplier / mu, sparsity / mu)
        residual = matrix - low_rank - sparse  # [m, n]
        multiplier = multiplier + mu * residual
        mu = min(mu * 1.5, mu_max)
        if float(torch.linalg.matrix_norm(residual)) <= tol * norm_fro:
            break
    return low_rank, sparse


def _eigh_descending(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)  # [d], [d, d] columns
    return values.flip(0), vectors.flip(1)


def _rank(values: torch.Tensor, rank_tol: float) -> int:
    """Number of ``values`` (descending eigenvalues) above ``rank_tol`` times the largest."""
    largest = float(values[0])
    return int((values > rank_tol * largest).sum()) if largest > 0 else 0


def scaled_sparsity(dim: int) -> float:
    """LowRankGAN's sparsity weight 1/60 (tuned for ``w_dim = 512``) rescaled to ``dim`` like the
    PCP weight ``1/sqrt(dim)``: ``sqrt(512 / dim) / 60``."""
    return math.sqrt(512 / dim) / 60


def discover(problem: RegionProblem, num_directions: int, seed: int, *,
             sparsity: float | None, max_iter: int, tol: float, relax: int, rank_tol: float) -> MethodResult:
    """LowRankGAN directions for a region (deterministic: ``seed`` is unused).

    ``sparsity``: RPCA weight, default :func:`scaled_sparsity` (exactly 1/60 at ``d = 512``).
    ``rank_tol``: ranks count eigenvalues above ``rank_tol`` times the largest. ``relax``: how many
    of ``L_B``'s weakest eigen-directions are released into the null space; as in LowRankGAN, the
    avoided span keeps between 1 and ``d - 1`` directions (none when ``L_B = 0``).
    """
    if relax < 0:
        raise ValueError(f"relax must be >= 0, got {relax}")
    dim = problem.dim
    if sparsity is None:
        sparsity = scaled_sparsity(dim)
    low_rank_fg, _ = rpca(problem.gram_fg, sparsity, max_iter, tol)  # [d, d]
    low_rank_bg, _ = rpca(problem.gram_bg, sparsity, max_iter, tol)  # [d, d]
    values_fg, vectors_fg = _eigh_descending(low_rank_fg)
    values_bg, vectors_bg = _eigh_descending(low_rank_bg)
    rank_fg, rank_bg = _rank(values_fg, rank_tol), _rank(values_bg, rank_tol)
    if num_directions > rank_fg:
        raise ValueError(f"the low-rank foreground part L_F has rank {rank_fg}, so LowRankGAN has "
                         f"only {rank_fg} direction(s); asked for {num_directions} (a larger "
                         "sparsity weight keeps more in L_F)")
    # LowRankGAN keeps at least one direction of L_B out of the result (and leaves at least one
    # free); a zero L_B has no direction to avoid.
    avoided = min(max(1, rank_bg - relax), dim - 1) if rank_bg > 0 else 0
    avoid = vectors_bg[:, :avoided]  # [d, a], column space of L_B to stay out of
    principal = vectors_fg[:, :num_directions]  # [d, k]
    projected = principal - avoid @ (avoid.T @ principal)  # [d, k], onto null(L_B)
    norms = projected.norm(dim=0)  # [k]
    if bool((norms <= 1e-8).any()):
        raise ValueError(f"{int((norms <= 1e-8).sum())} of the {num_directions} principal "
                         "directions of L_F lie inside the span of L_B and vanish when projected "
                         "onto its null space; increase relax or ask for fewer directions")
    info = {
        "sparsity": sparsity,
        "rank_fg": rank_fg,
        "rank_bg": rank_bg,
        "null_space_dim": dim - avoided,
        "retained_norm": norms.tolist(),
    }
    return finish((projected / norms).T, values_fg[:num_directions], info)
