"""OT-ReSeFa: region semantic discovery by optimal transport (the paper, sec. 3.2-3.3).

Samples: class F = the rows ``f_1..f_p`` of ``A_F``, class B = the rows ``b_1..b_q`` of ``A_B``
(``p = q = d``). For a unit direction ``n`` the samples are projected, ``x = F n`` [p],
``y = B n`` [q], and compared by squared distances *after* projection::

    M^{FB}_ij = (x_i - y_j)^2,   M^{FF}_ij = (x_i - x_j)^2,   M^{BB}_ij = (y_i - y_j)^2

(so ``<n n^T, C^{FB}> = <T^{FB}, M^{FB}>`` with ``C^{FB} = sum_ij T_ij (f_i - b_j)(f_i - b_j)^T``,
which is therefore never formed). The plans ``T`` are ``k`` Sinkhorn iterations (eqs. 21-23,
:func:`~otresefa.methods.sinkhorn.sinkhorn`) on the costs, and the objective is the
Wasserstein discriminant ratio of eq. 13 (Flamary, Cuturi, Courty & Rakotomamonjy, "Wasserstein
discriminant analysis", Machine Learning 2018)::

    O(n) = <T^{FB}, M^{FB}> / (<T^{FF}, M^{FF}> + <T^{BB}, M^{BB}>)        within="both" (eq. 13)
    O(n) = <T^{FB}, M^{FB}> / <T^{FF}, M^{FF}>                             within="foreground" (eq. 16)

maximised over the unit sphere by Algorithm 1: projected gradient ascent with the gradient taken
by autograd through the Sinkhorn iterations (eq. 17) and an Armijo backtracking line search.

Cost normalisation (``normalize``): all three costs are divided by one scalar ``c`` before the
plans are computed, which changes only how sharp the plans are (the ratio is invariant to a common
scale of the costs once the plans are fixed):

- ``"none"``: ``c = 1``, the samples as given (the paper);
- ``"mean_cost"``: ``c = mean_ij M^{FB}_ij`` at the current ``n``, so ``lam`` is relative to the
  typical between-class cost and the objective no longer depends on the scale of ``A_F, A_B``.
  ``c`` is *not* detached: it is part of the function being maximised, so the autograd gradient is
  the exact gradient of the objective the line search evaluates. Caveat: the objective then only
  depends on the *direction* of ``(F n, B n)``, so it is flat along directions that move neither
  class (the common null space of ``A_F`` and ``A_B``): whatever part of the random start lies
  there is never removed;
- ``"unit_rows"``: the samples are rescaled by one common scalar so that the mean row norm of
  ``F`` and ``B`` together is 1 (``c`` = that mean norm squared, independent of ``n``). ``lam``
  is then scale-free too, and the objective still grows with the projected spread, so mass in
  directions that move nothing is pushed out. This is the default of the registry entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from otresefa.methods import MethodResult, RegionProblem, finish, register
from otresefa.methods.resefa import generalized_eigenvectors
from otresefa.methods.sinkhorn import sinkhorn

__all__ = ["objective", "objective_gradient", "solve", "SolveResult", "discover",
           "WITHIN", "NORMALIZE", "INIT", "LINE_SEARCH", "STALL_WINDOW"]

WITHIN = ("both", "foreground")
NORMALIZE = ("none", "mean_cost", "unit_rows")
INIT = ("random", "resefa")

#: Armijo backtracking constants: first trial step of the first iteration, growth of the first
#: trial step over the previous accepted one, shrink factor, sufficient-increase constant, number
#: of shrinks before the iterate counts as stationary.
LINE_SEARCH = {"initial_step": 1.0, "grow": 2.0, "shrink": 0.5, "armijo": 1e-4, "max_shrinks": 30}
#: Number of iterations over which the relative increase is compared with ``tol``.
STALL_WINDOW = 5


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_samples(samples_fg: torch.Tensor, samples_bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    samples_fg = torch.as_tensor(samples_fg, dtype=torch.float64)
    samples_bg = torch.as_tensor(samples_bg, dtype=torch.float64)
    if samples_fg.ndim != 2 or samples_bg.ndim != 2 or samples_fg.shape[1] != samples_bg.shape[1]:
        raise ValueError(f"F [p, d] and B [q, d] must share d, got {tuple(samples_fg.shape)} and "
                         f"{tuple(samples_bg.shape)}")
    for name, samples in (("F", samples_fg), ("B", samples_bg)):
        if not bool(torch.isfinite(samples).all()):
            raise ValueError(f"{name} contains non-finite (NaN or inf) values")
    if not bool(samples_fg.any()) and not bool(samples_bg.any()):
        raise ValueError("F and B are both zero: the objective is undefined")
    return samples_fg, samples_bg


def _objective(n: torch.Tensor, samples_fg: torch.Tensor, samples_bg: torch.Tensor, lam: float,
               sinkhorn_iters: int, within: str, normalize: str, fixed_scale: float) -> torch.Tensor:
    x = samples_fg @ n  # [p], projected foreground samples
    y = samples_bg @ n  # [q], projected background samples
    cost_fb = (x[:, None] - y[None, :]) ** 2  # [p, q]
    costs = [cost_fb, (x[:, None] - x[None, :]) ** 2]  # FB, FF [p, p]
    if within == "both":
        costs.append((y[:, None] - y[None, :]) ** 2)  # BB [q, q]
    scale = cost_fb.mean() if normalize == "mean_cost" else fixed_scale
    # costs are divided by `scale` only inside the plans: the ratio itself is scale-free.
    transported = [(sinkhorn(cost / scale, lam, sinkhorn_iters) * cost).sum() for cost in costs]
    return transported[0] / sum(transported[1:])


def _evaluator(F, B, lam: float, sinkhorn_iters: int, within: str, normalize: str):
    """Validated samples and ``n [d] -> O(n)`` for fixed data and options."""
    _check_choice("within", within, WITHIN)
    _check_choice("normalize", normalize, NORMALIZE)
    samples_fg, samples_bg = _check_samples(F, B)
    fixed_scale = 1.0
    if normalize == "unit_rows":  # squared mean row norm of F and B together
        fixed_scale = float(torch.cat([samples_fg, samples_bg]).norm(dim=1).mean()) ** 2

    def evaluate(n: torch.Tensor) -> torch.Tensor:
        return _objective(n, samples_fg, samples_bg, lam, sinkhorn_iters, within, normalize, fixed_scale)

    return evaluate, samples_fg, samples_bg


def objective(n: torch.Tensor, F: torch.Tensor, B: torch.Tensor, lam: float = 2.0,
              sinkhorn_iters: int = 10, within: str = "both", normalize: str = "none") -> torch.Tensor:
    """OT-ReSeFa objective ``O(n)`` of eq. 13 (``within="both"``) or eq. 16 (``"foreground"``).

    ``n`` [d] (used as given: pass a unit vector), ``F`` [p, d], ``B`` [q, d]. Returns a float64
    scalar tensor, differentiable with respect to ``n`` through the Sinkhorn iterations.
    """
    evaluate, _, _ = _evaluator(F, B, lam, sinkhorn_iters, within, normalize)
    return evaluate(torch.as_tensor(n, dtype=torch.float64))


def _value_and_tangent_gradient(evaluate, n: torch.Tensor, basis: torch.Tensor):
    """``O(n)`` and its gradient projected on the tangent space of the sphere at ``n`` [d] and
    orthogonally to the rows of ``basis`` [m, d] (previous directions, see :func:`solve`)."""
    n = n.detach().requires_grad_(True)
    value = evaluate(n)
    (grad,) = torch.autograd.grad(value, n)  # [d], Euclidean gradient (eq. 17)
    grad = grad - (grad @ n.detach()) * n.detach()
    grad = grad - basis.T @ (basis @ grad)
    return value.item(), grad


def objective_gradient(n: torch.Tensor, F: torch.Tensor, B: torch.Tensor, lam: float = 2.0,
                       sinkhorn_iters: int = 10, within: str = "both",
                       normalize: str = "none") -> tuple[float, torch.Tensor]:
    """``(O(n), grad)`` with ``grad`` [d] the Riemannian gradient of ``O`` on the unit sphere.

    ``grad`` is the autograd gradient through the ``k`` Sinkhorn iterations (eq. 17) projected on the
    tangent space ``{t : t^T n = 0}``; ``n`` [d] must be a unit vector.
    """
    evaluate, samples_fg, _ = _evaluator(F, B, lam, sinkhorn_iters, within, normalize)
    no_basis = torch.zeros(0, samples_fg.shape[1], dtype=torch.float64)  # [0, d]
    return _value_and_tangent_gradient(evaluate, torch.as_tensor(n, dtype=torch.float64), no_basis)


def _ascend(evaluate, n: torch.Tensor, basis: torch.Tensor, max_iter: int, tol: float):
    """Algorithm 1 from the unit start ``n`` [d] (orthogonal to ``basis``): projected gradient ascent.

    Each iteration: ``G`` = tangent gradient, ``D = Pi(n + G) - n`` (the paper's step 11 written
    for ascent, ``Pi`` = normalisation), then backtracking: the first trial step is twice the
    previous accepted one (1 at the first iteration; steps above 1 go past ``Pi(n + G)``, which
    matters when ``|G|`` is small), and it is halved until
    ``O(Pi(n + step D)) >= O(n) + armijo * step * <G, D>`` (``<G, D>`` is the slope of that curve
    at ``step = 0``). Stops after ``max_iter`` steps, when the last :data:`STALL_WINDOW` steps
    together increased ``O`` by at most ``tol * |O|``, or when no step passes the test.
    """
    value, grad = _value_and_tangent_gradient(evaluate, n, basis)
    if not math.isfinite(value):
        raise ValueError(
            f"the objective is {value} at the start: with these costs and lam the within-class "
            "plans are exactly diagonal in float64 (or the start moves no sample); use "
            'normalize="unit_rows" or "mean_cost", or a smaller lam')
    history = [value]
    step = LINE_SEARCH["initial_step"] / LINE_SEARCH["grow"]
    for _ in range(max_iter):
        towards = n + grad
        direction = towards / towards.norm() - n  # [d], D
        slope = float(grad @ direction)
        if slope <= 0:
            break
        step *= LINE_SEARCH["grow"]
        for _ in range(LINE_SEARCH["max_shrinks"]):
            candidate = n + step * direction
            candidate = candidate / candidate.norm()
            with torch.no_grad():
                candidate_value = float(evaluate(candidate))
            if math.isfinite(candidate_value) and \
                    candidate_value >= value + LINE_SEARCH["armijo"] * step * slope:
                break
            step *= LINE_SEARCH["shrink"]
        else:
            break
        n = candidate
        value, grad = _value_and_tangent_gradient(evaluate, n, basis)
        history.append(value)
        # over a window: gradient ascent zig-zags, single steps can be tiny long before the end
        if len(history) > STALL_WINDOW and value - history[-1 - STALL_WINDOW] <= tol * abs(value):
            break
    return n, value, history


@dataclass
class SolveResult:
    """Result of :func:`solve`."""

    directions: torch.Tensor  # [k, d] float64, unit rows, ranked by objective (descending)
    objective: torch.Tensor  # [k] float64, O(n) of each direction
    history: list[list[float]] = field(default_factory=list)  # per direction, O after each iteration


def _first_starts(init, samples_fg: torch.Tensor, samples_bg: torch.Tensor) -> torch.Tensor:
    """First start of each direction, [m, d] (m = 0 for random starts)."""
    dim = samples_fg.shape[1]
    if not isinstance(init, str):
        given = torch.as_tensor(init, dtype=torch.float64)
        if given.ndim not in (1, 2) or given.shape[-1] != dim:
            raise ValueError(f"init must be [d] or [m, d] with d = {dim}, got {tuple(given.shape)}")
        return given.reshape(-1, dim)
    _check_choice("init", init, INIT)
    if init == "random":
        return torch.zeros(0, dim, dtype=torch.float64)
    if samples_fg.shape != (dim, dim) or samples_bg.shape != (dim, dim):
        raise ValueError('init="resefa" needs square Gram matrices F = A_F, B = A_B')
    return generalized_eigenvectors(samples_fg, samples_bg)[1]  # [d, d], ranked


def solve(F: torch.Tensor, B: torch.Tensor, lam: float = 2.0, sinkhorn_iters: int = 10,
          max_iter: int = 100, within: str = "both", num_directions: int = 1,
          init: "str | torch.Tensor" = "random", restarts: int = 1, normalize: str = "none",
          seed: int = 0, tol: float = 1e-9) -> SolveResult:
    """Maximise the OT-ReSeFa objective (eq. 13) over unit ``n`` by Algorithm 1.

    Parameters
    ----------
    F, B : Tensor [p, d], [q, d]
        Foreground and background samples, used as given (rows of ``A_F`` and ``A_B``).
    lam, sinkhorn_iters, within, normalize
        As in :func:`objective` (paper: ``lam = 2``, ``k = 10``).
    max_iter : int
        ``L``, iterations of Algorithm 1 per start (paper: 100).
    num_directions : int
        Directions found by deflation: direction ``i`` is optimised on the unit sphere of the
        orthogonal complement of directions ``0..i-1`` (start and gradient are projected onto it).
    init : ``"random"`` | ``"resefa"`` | Tensor [d] or [m, d]
        First start of direction ``i``: a seeded ``N(0, I)`` draw (the paper), ReSeFa's ``i``-th
        generalised eigenvector of ``(F, B)`` (needs square Grams), or row ``i`` of the tensor.
    restarts : int
        Starts per direction; the one with the largest objective is kept. Restarts after the first
        are always random.
    seed : int
        Seeds the ``torch.Generator`` of every random start.
    tol : float
        Stop when the last :data:`STALL_WINDOW` iterations increased ``O`` by at most ``tol * |O|``.

    Returns
    -------
    SolveResult
        ``directions`` [k, d] sorted by objective (descending), ``objective`` [k], ``history``.
        Directions are returned with the sign of the optimiser; see
        :func:`otresefa.methods.orient_signs` for the canonical sign.
    """
    evaluate, samples_fg, samples_bg = _evaluator(F, B, lam, sinkhorn_iters, within, normalize)
    dim = samples_fg.shape[1]
    if not 1 <= num_directions <= dim:
        raise ValueError(f"num_directions must be in [1, {dim}], got {num_directions}")
    if restarts < 1 or max_iter < 0:
        raise ValueError(f"need restarts >= 1 and max_iter >= 0, got {restarts}, {max_iter}")

    first_starts = _first_starts(init, samples_fg, samples_bg)  # [m, d]
    generator = torch.Generator().manual_seed(seed)
    basis = torch.zeros(0, dim, dtype=torch.float64)  # [m, d], directions found so far
    values, histories = [], []
    for index in range(num_directions):
        # one draw per start, so the first start does not depend on how many restarts follow
        starts = torch.stack([torch.randn(dim, generator=generator, dtype=torch.float64)
                              for _ in range(restarts)])  # [r, d], n^0 ~ N(0, I)
        if index < first_starts.shape[0]:
            starts[0] = first_starts[index]
        best = None
        for start in starts:
            start = start - basis.T @ (basis @ start)
            if float(start.norm()) <= 1e-12:
                raise ValueError(f"the start of direction {index} lies in the span of the previous ones")
            n, value, history = _ascend(evaluate, start / start.norm(), basis, max_iter, tol)
            if best is None or value > best[1]:
                best = (n, value, history)
        n, value, history = best
        n = n - basis.T @ (basis @ n)  # remove round-off drift out of the complement
        basis = torch.cat([basis, (n / n.norm())[None]])
        values.append(value)
        histories.append(history)
    objectives = torch.tensor(values, dtype=torch.float64)
    order = torch.argsort(objectives, descending=True, stable=True)
    return SolveResult(basis[order], objectives[order], [histories[i] for i in order.tolist()])


@register("ot-resefa")
def discover(problem: RegionProblem, num_directions: int, seed: int, *, lam: float = 2.0,
             sinkhorn_iters: int = 10, max_iter: int = 100, within: str = "both",
             init: str = "random", restarts: int = 1, normalize: str = "unit_rows",
             tol: float = 1e-9) -> MethodResult:
    """OT-ReSeFa on ``F = A_F``, ``B = A_B`` (see :func:`solve`); scores are the objectives ``O(n)``.

    Defaults are the paper's (``lam=2``, ``k=10``, ``L=100``, random start) except
    ``normalize="unit_rows"``: with pixel-normalised Grams the raw projected costs are ~1e-4, the
    plans are uniform and the OT structure vanishes; rescaling the rows to unit mean norm makes
    ``lam=2`` mean the same on every model (``"mean_cost"`` does too, but leaves the part of the
    start in the Grams' common null space untouched; see the module docstring).
    """
    result = solve(problem.gram_fg, problem.gram_bg, lam=lam, sinkhorn_iters=sinkhorn_iters,
                   max_iter=max_iter, within=within, num_directions=num_directions, init=init,
                   restarts=restarts, normalize=normalize, seed=seed, tol=tol)
    info = {
        "objective": result.objective.tolist(),
        "history": result.history,
        "iterations": [len(h) - 1 for h in result.history],
        "deflation": True,
    }
    return finish(result.directions, result.objective, info)
