"""Region semantic-discovery methods and their registry.

Every method is a function ``fn(problem, num_directions, seed, *, <options>) -> MethodResult``
registered under a name with :func:`register`; :func:`run_method` validates the call and runs it.

=============  =========  ==========================================================
name           needs      what it maximises
=============  =========  ==========================================================
``ot-resefa``  grams      OT (WDA) ratio between region and background (paper eq. 13)
``resefa``     grams      generalised Rayleigh quotient n^T A_F n / n^T A_B n
``lowrankgan`` grams      RPCA subspaces: principal in A_F, null in A_B
``sefa``       generator  spread of the style-affine weights (ignores the region)
``ganspace``   generator  variance of sampled w (ignores the region)
=============  =========  ==========================================================
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

if TYPE_CHECKING:
    from otresefa.models import Generator

__all__ = [
    "RegionProblem", "MethodResult", "register", "available_methods", "method_options",
    "method_needs", "run_method", "orient_signs",
]


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
    symmetrised. ``generator`` is only used by the global baselines (``sefa``, ``ganspace``).
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


@dataclass(frozen=True)
class _Entry:
    function: Callable[..., MethodResult]
    needs: str
    options: dict[str, Any]
    optional_numbers: frozenset[str]  # options annotated ``float | None`` / ``int | None``


_REGISTRY: dict[str, _Entry] = {}
_NEEDS = ("grams", "generator")


def register(name: str, *, needs: str = "grams") -> Callable:
    """Decorator adding ``fn(problem, num_directions, seed, *, options...)`` to the registry.

    ``needs="generator"`` marks methods that read ``problem.generator`` instead of the Grams.
    The options and their defaults are read from the function's keyword-only parameters.
    """
    if needs not in _NEEDS:
        raise ValueError(f"needs must be one of {_NEEDS}, got {needs!r}")

    def decorator(function: Callable[..., MethodResult]) -> Callable[..., MethodResult]:
        parameters = inspect.signature(function).parameters.values()
        options = {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
        numeric = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY
                   and str(p.annotation).replace(" ", "") in ("float|None", "int|None")}
        missing = [n for n, d in options.items() if d is inspect.Parameter.empty]
        if missing:
            raise TypeError(f"method {name!r}: options {missing} need defaults")
        _REGISTRY[name] = _Entry(function, needs, options, frozenset(numeric))
        return function

    return decorator


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(available_methods())}")
    return _REGISTRY[name]


def available_methods() -> list[str]:
    return sorted(_REGISTRY)


def method_options(name: str) -> dict[str, Any]:
    """Option names of method ``name`` mapped to their defaults."""
    return dict(_entry(name).options)


def method_needs(name: str) -> str:
    """``"grams"`` or ``"generator"``: what the method reads from the :class:`RegionProblem`."""
    return _entry(name).needs


def run_method(name: str, problem: RegionProblem, num_directions: int = 1, seed: int = 0,
               **options: Any) -> MethodResult:
    """Run method ``name`` on ``problem``; returns ``num_directions`` ranked unit directions."""
    entry = _entry(name)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for method {name!r}; valid options: "
                         f"{', '.join(sorted(entry.options)) or '(none)'}")
    if not isinstance(problem, RegionProblem):
        raise ValueError(f"problem must be a RegionProblem, got {type(problem).__name__}")
    dim = problem.dim
    if isinstance(num_directions, bool) or not isinstance(num_directions, (int, np.integer)) \
            or not 1 <= num_directions <= dim:
        raise ValueError(f"num_directions must be an integer in [1, {dim}], got {num_directions!r}")
    for option, value in options.items():
        default = 0.0 if option in entry.optional_numbers and value is not None else entry.options[option]
        _check_option_type(name, option, value, default)
    if entry.needs == "generator" and problem.generator is None:
        raise ValueError(f"method {name!r} needs a generator: RegionProblem(generator=G)")
    result = entry.function(problem, int(num_directions), int(seed), **options)
    vectors = result.vectors
    if vectors.shape != (num_directions, dim) or vectors.dtype != torch.float32:
        raise RuntimeError(f"method {name!r} returned vectors {tuple(vectors.shape)} {vectors.dtype}")
    return result


def _check_option_type(method: str, option: str, value: Any, default: Any) -> None:
    """Reject a value whose type cannot stand for the option's default (a number for a number,
    text for text, True/False for a flag); options that default to None accept anything."""
    if default is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        ok = ok and (isinstance(default, float) or float(value).is_integer())
    elif isinstance(default, str):
        ok = isinstance(value, str) or isinstance(value, (torch.Tensor, np.ndarray))  # init may be a tensor
    else:
        ok = True
    if not ok:
        raise ValueError(f"option {option!r} of method {method!r} expects a value like {default!r}, got {value!r}")


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


# Importing the method modules registers them.
from otresefa.methods import ganspace, lowrankgan, ot_resefa, resefa, sefa  # noqa: E402,F401
