"""ReSeFa: region-based semantic factorisation (Zhu et al., ICML 2022).

ReSeFa finds the direction that changes the region most while changing the rest least, to first
order (paper eqs. 5-6)::

    max_n  (n^T A_F n) / (n^T A_B n),      A_F = J_f^T J_f / N_f,  A_B = J_b^T J_b / N_b

a generalised Rayleigh quotient, solved in closed form by the symmetric-definite generalised
eigenproblem ``A_F v = mu A_B v``: the eigenvectors ranked by ``mu`` (descending) are the
directions, ``mu`` their quotient. ``A_B`` must be positive definite; when the region's own
changes leave the background untouched ``A_B`` is singular (the quotient is unbounded) and
``A_B`` is regularised to ``A_B + tau * trace(A_B) * I`` (the notes' form; note the shift is
``tau * d`` times the mean eigenvalue of ``A_B``, 0.5x for ``tau=1e-3, d=512``).
"""

from __future__ import annotations

import torch

from otresefa.methods.base import MethodResult, RegionProblem, finish

__all__ = ["generalized_eigenvectors", "discover", "AUTO_TAU", "SINGULAR_RCOND"]

#: ``tau`` used when ``tau=None`` and ``A_B`` is singular (the notes' value, sec. 4).
AUTO_TAU = 1e-3
#: ``A_B`` counts as singular when its smallest eigenvalue is below this fraction of its largest.
SINGULAR_RCOND = 1e-10


def _regularised(gram_bg: torch.Tensor, tau: float | None) -> tuple[torch.Tensor, float]:
    """``A_B + tau * trace(A_B) * I`` [d, d] and the ``tau`` actually used."""
    eigenvalues = torch.linalg.eigvalsh(gram_bg)  # [d], ascending
    largest = float(eigenvalues[-1])
    singular = largest <= 0 or float(eigenvalues[0]) <= SINGULAR_RCOND * largest
    if tau is None:
        tau = AUTO_TAU if singular else 0.0
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    if tau == 0 and singular:
        raise ValueError(
            "A_B (background Gram) is rank-deficient or not positive definite (smallest/largest "
            f"eigenvalue {float(eigenvalues[0]):.3g}/{largest:.3g}), so the generalised Rayleigh "
            f"quotient is unbounded; use tau > 0 (e.g. tau={AUTO_TAU}) or tau=None")
    dim = gram_bg.shape[0]
    shift = tau * float(torch.diagonal(gram_bg).sum())
    if tau > 0 and shift <= 0:
        raise ValueError("A_B has zero trace: the background does not change at all; "
                         "ReSeFa is undefined")
    return gram_bg + shift * torch.eye(dim, dtype=gram_bg.dtype), tau


def generalized_eigenvectors(gram_fg: torch.Tensor, gram_bg: torch.Tensor,
                             tau: float | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Solve ``A_F v = mu (A_B + tau * trace(A_B) * I) v``.

    Returns ``(mu [d] descending, vectors [d, d] unit rows, tau_used)``. ``tau=None`` uses 0 when
    ``A_B`` is positive definite and :data:`AUTO_TAU` when it is singular; ``tau=0`` on a singular
    ``A_B`` raises ``ValueError``. Solved by Cholesky whitening: with ``A_B = L L^T``,
    ``C = L^{-1} A_F L^{-T}`` is symmetric, ``C y = mu y`` and ``v = L^{-T} y``.
    """
    gram_fg = gram_fg.to(torch.float64)
    gram_bg_reg, tau_used = _regularised(gram_bg.to(torch.float64), tau)
    chol, info = torch.linalg.cholesky_ex(gram_bg_reg)  # [d, d] lower
    if int(info) != 0:
        raise ValueError("A_B is not positive definite even after regularisation; increase tau")
    half = torch.linalg.solve_triangular(chol, gram_fg, upper=False)  # [d, d], L^{-1} A_F
    whitened = torch.linalg.solve_triangular(chol, half.T, upper=False)  # [d, d], L^{-1} A_F L^{-T}
    mu, eigvecs = torch.linalg.eigh((whitened + whitened.T) / 2)  # [d], [d, d] ascending
    vectors = torch.linalg.solve_triangular(chol.T, eigvecs, upper=True).T  # [d, d] rows v_i
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    return mu.flip(0), vectors.flip(0), tau_used


def discover(problem: RegionProblem, num_directions: int, seed: int, *, tau: float | None) -> MethodResult:
    """Top ``num_directions`` generalised eigenvectors of ``(A_F, A_B)``; scores are the quotients.

    Deterministic (``seed`` is unused). ``tau``: see :func:`generalized_eigenvectors`.
    """
    mu, vectors, tau_used = generalized_eigenvectors(problem.gram_fg, problem.gram_bg, tau)
    info = {"tau": tau_used, "eigenvalues": mu.tolist()}
    return finish(vectors[:num_directions], mu[:num_directions], info)
