"""What every discovery method takes and returns: a region's Gram matrices, ranked unit directions.

A method is a function ``discover(problem, num_directions, seed, *, <options>) -> MethodResult``
in a module of :mod:`otresefa.methods`, whose facts (options, needs, title) the registry in
:mod:`otresefa.methods` holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from otresefa.models import Generator

__all__ = ["RegionProblem", "MethodResult", "check_result", "finish", "orient_signs"]


def _as_gram(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, (torch.Tensor, np.ndarray)):
        raise ValueError(f"{name} must be a torch.Tensor or numpy array, got {type(value).__name__}")
    gram = torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float64)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"{name} must be a square [d, d] matrix, got shape {tuple(gram.shape)}")
    if gram.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not bool(torch.isfinite(gram).all()):
        bad = int((~torch.isfinite(gram)).sum())
        raise ValueError(f"{name} contains {bad} non-finite (NaN or inf) entries")
    scale = float(gram.abs().max())
    if float((gram - gram.T).abs().max()) > 1e-5 * max(scale, 1e-300):
        raise ValueError(f"{name} is not symmetric; expected a Gram matrix J^T J / N")
    return (gram + gram.T) / 2  # exact symmetry for the eigen-solvers


@dataclass(frozen=True)
class RegionProblem:
    """Foreground / background Gram matrices of one region (paper sec. 3.1).

    ``gram_fg = A_F = J_f^T J_f / N_f`` and ``gram_bg = A_B = J_b^T J_b / N_b`` (eqs. 5-8, normalised
    by the pixel counts as in ReSeFa's code), both ``[d, d]``; they are converted to float64 and
    symmetrised. ``generator`` is only used by the methods that need it (``sefa``, ``ganspace``).
    """

    gram_fg: torch.Tensor  # [d, d]
    gram_bg: torch.Tensor  # [d, d]
    generator: "Generator | None" = None

    def __post_init__(self) -> None:
        gram_fg = _as_gram(self.gram_fg, "gram_fg (A_F)")
        gram_bg = _as_gram(self.gram_bg, "gram_bg (A_B)")
        if gram_fg.shape != gram_bg.shape:
            raise ValueError(f"gram_fg (A_F) has shape {tuple(gram_fg.shape)} but gram_bg (A_B) "
                             f"has shape {tuple(gram_bg.shape)}; they must match")
        object.__setattr__(self, "gram_fg", gram_fg)
        object.__setattr__(self, "gram_bg", gram_bg)

    @property
    def dim(self) -> int:
        return self.gram_fg.shape[0]


@dataclass(frozen=True)
class MethodResult:
    """Directions found by one method, ranked by the method's own score (descending)."""

    vectors: torch.Tensor  # [k, d] float32, unit rows
    scores: torch.Tensor  # [k] float64
    info: dict = field(default_factory=dict)  # JSON-serialisable extras


def check_result(method: str, result: MethodResult, num_directions: int, dim: int) -> None:
    """Raise ``RuntimeError`` when a method returned other than ``[num_directions, dim]`` float32 rows."""
    vectors = result.vectors
    if vectors.shape != (num_directions, dim) or vectors.dtype != torch.float32:
        raise RuntimeError(f"method {method!r} returned vectors {tuple(vectors.shape)} {vectors.dtype}, "
                           f"expected ({num_directions}, {dim}) float32")


def orient_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Flip rows so that each row's largest-magnitude component is positive.

    Every method here finds directions only up to sign (objectives are even in ``n``); this makes
    the returned sign deterministic and independent of the solver's internals.
    """
    largest = vectors.gather(1, vectors.abs().argmax(dim=1, keepdim=True))  # [k, 1]
    return vectors * torch.where(largest < 0, -1.0, 1.0).to(vectors.dtype)


def finish(vectors: torch.Tensor, scores: torch.Tensor, info: dict) -> MethodResult:
    """Normalise, orient and sort ``vectors`` [k, d] by ``scores`` [k] (descending)."""
    vectors = vectors.to(torch.float64)
    vectors = orient_signs(vectors / vectors.norm(dim=1, keepdim=True))
    scores = torch.as_tensor(scores, dtype=torch.float64)
    order = torch.argsort(scores, descending=True, stable=True)
    return MethodResult(vectors[order].to(torch.float32).contiguous(), scores[order].contiguous(), info)
