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

maximised over the unit sphere by Algorithm 1: projected gradient ascent with the exact gradient
through the ``k`` Sinkhorn iterations (eq. 17, chain rule of eqs. 18-27) and an Armijo
backtracking line search.

Implementation of the gradient (see :class:`_Evaluator`). The paper differentiates through the
iterations by automatic differentiation; here the reverse pass is written by hand, which is the
same derivative (reverse mode is the chain rule applied in reverse order) without autograd's
per-iteration ``[p, q]`` intermediates:

1. ``dO/d<T, M>`` of the three transport terms from the ratio (eqs. 17-20);
2. ``dO/dM`` of each term by the reverse pass through the ``k`` Sinkhorn iterations of
   :class:`~otresefa.methods.sinkhorn.ExpTransportCost` (eqs. 24-26, vector adjoints, all rank-1
   contributions in one matrix product; FB, FF and BB batched as one ``[3, p, p]`` problem);
3. ``dO/dn`` from ``dM_ij/dn = 2 (z_i - z'_j)(s_i - s'_j)`` (eq. 27 with ``z = S n`` the
   projections): two products of ``dO/dM`` with pairs of vectors, then ``F^T``, ``B^T``.

Problems whose costs need the log domain (``lam * spread > EXP_DOMAIN_MAX_RANGE``) get step 2
from autograd through :func:`~otresefa.methods.sinkhorn.sinkhorn_log`. A line-search candidate
keeps its forward pass, so the accepted one only adds the reverse pass. The iterates are those of
autograd through the plain iterations to round-off (tested); timings are in ``docs/methods.md``.

Cost normalisation (``normalize``): all three costs are divided by one scalar ``c`` before the
plans are computed, which changes only how sharp the plans are (the ratio is invariant to a common
scale of the costs once the plans are fixed):

- ``"none"``: ``c = 1``, the samples as given (the paper);
- ``"mean_cost"``: ``c = mean_ij M^{FB}_ij`` at the current ``n``, so ``lam`` is relative to the
  typical between-class cost and the objective no longer depends on the scale of ``A_F, A_B``.
  ``c`` is *not* detached: it is part of the function being maximised, so the gradient (which
  includes ``dc/dn``) is the exact gradient of the objective the line search evaluates. Caveat:
  the objective then only depends on the *direction* of ``(F n, B n)``, so it is flat along
  directions that move neither class (the common null space of ``A_F`` and ``A_B``): whatever part
  of the random start lies there is never removed;
- ``"unit_rows"``: the samples are rescaled by one common scalar so that the mean row norm of
  ``F`` and ``B`` together is 1 (``c`` = that mean norm squared, independent of ``n``). ``lam``
  is then scale-free too, and the objective still grows with the projected spread, so mass in
  directions that move nothing is pushed out. This is the default of the registry entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from otresefa.methods.base import MethodResult, RegionProblem, finish
from otresefa.methods.resefa import generalized_eigenvectors
from otresefa.methods.sinkhorn import (EXP_DOMAIN_MAX_RANGE, ExpTransportCost, _buffer, _vector_backend,
                                      sinkhorn_log)

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


def _cost_range(first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``min`` and ``max`` over ``i, j`` of ``(first_i - second_j)^2`` per row [m] of ``first``
    [m, p], ``second`` [m, q], in O((p + q) log q) instead of O(p q). Rounding is monotone, so
    these are exactly the extreme entries of the cost matrix computed entrywise with the same
    operations: the largest ``|first_i - second_j|`` is at the extremes of the two sets, the
    smallest at a neighbour of ``first_i`` in the sorted ``second``."""
    ordered = second.sort(dim=-1).values  # [m, q]
    index = torch.searchsorted(ordered, first)  # [m, p]
    last = ordered.shape[-1] - 1
    below = ordered.gather(-1, (index - 1).clamp(0, last))  # [m, p]
    above = ordered.gather(-1, index.clamp(0, last))  # [m, p]
    nearest = torch.minimum((first - below).abs(), (first - above).abs()).amin(dim=-1)  # [m]
    widest = torch.maximum((first.amax(dim=-1) - ordered[:, 0]).abs(),
                           (ordered[:, -1] - first.amin(dim=-1)).abs())  # [m]
    return nearest.square(), widest.square()


@dataclass
class _Point:
    """One evaluation of ``O`` at ``n``: the value and what its gradient needs."""

    n: torch.Tensor  # [d]
    value: torch.Tensor  # float64 scalar
    x: torch.Tensor  # [p], F n
    y: torch.Tensor  # [q], B n
    scale: torch.Tensor | float  # c: the plans see the costs M / c
    transported: torch.Tensor  # [P], <T^k, M / c> of FB, FF[, BB]
    # (problems, firsts [m, p], seconds [m, q], solved): problem indices (0 = FB, 1 = FF, 2 = BB),
    # their samples divided by sqrt(c), and an ExpTransportCost (exp domain, batched) or the cost
    # matrix M / c [p, q] of one log-domain problem
    groups: list = field(default_factory=list)
    workspace: dict | None = None  # large buffers, by group


class _Evaluator:
    """``O(n)`` and its gradient for fixed samples and options.

    Exp domain (``lam * spread <= EXP_DOMAIN_MAX_RANGE``, the usual case): the FB, FF and BB
    problems are stacked into one ``[P, p, p]`` batch (when ``p = q``; else one batch each) and
    solved by :class:`~otresefa.methods.sinkhorn.ExpTransportCost`, which keeps only the Sinkhorn
    vectors and computes ``<T^k, M>`` without forming ``T^k``. :meth:`gradient` runs its
    hand-written reverse pass (eqs. 24-26) for ``Mbar = dO/dM`` and finishes the chain rule to
    ``n`` by hand (eq. 27): with ``M_ij = (z_i - z'_j)^2``, ``dO/dz_i = 2 sum_j Mbar_ij (z_i - z'_j)``,
    ``dO/dz'_j = -2 sum_i Mbar_ij (z_i - z'_j)`` (two products of ``Mbar`` with pairs of vectors)
    and ``dO/dn = F^T dO/dx + B^T dO/dy``. A problem whose costs need the log domain is solved by
    :func:`~otresefa.methods.sinkhorn.sinkhorn_log` and its ``Mbar`` taken by plain autograd
    through those iterations; the rest of the chain rule is shared.

    The forward pass of a point is kept, so the line search's accepted candidate is never
    evaluated twice, and its large buffers are recycled by :meth:`release`.
    """

    def __init__(self, F, B, lam: float, sinkhorn_iter: int, within: str, normalize: str) -> None:
        _check_choice("within", within, WITHIN)
        _check_choice("normalize", normalize, NORMALIZE)
        self.samples_fg, self.samples_bg = _check_samples(F, B)
        self.lam, self.sinkhorn_iter, self.within, self.normalize = lam, sinkhorn_iter, within, normalize
        self.fixed_scale = 1.0
        if normalize == "unit_rows":  # squared mean row norm of F and B together
            self.fixed_scale = float(torch.cat([self.samples_fg, self.samples_bg]).norm(dim=1).mean()) ** 2
        self.num_problems = 3 if within == "both" else 2  # FB, FF[, BB]
        self.batched = self.samples_fg.shape[0] == self.samples_bg.shape[0]  # all costs [p, p]
        self._free_workspaces: list[dict] = []  # kernel and cost buffers of released points
        self._gradient_buffers: dict = {}  # dO/dM, by group; one gradient at a time
        stacked = torch.cat([self.samples_fg, self.samples_bg])  # [p + q, d]
        as_array, as_tensor, _ = _vector_backend(stacked)
        stacked = as_array(stacked)
        self._project = lambda n: as_tensor(stacked @ as_array(n))  # n [d] -> (F n, B n) [p + q]
        self._pull_back = lambda g: as_tensor(as_array(g) @ stacked)  # [p + q] -> F^T g_x + B^T g_y [d]

    def release(self, point: _Point) -> None:
        """Recycle the buffers of a point that will not be used again."""
        if point.workspace is not None:
            self._free_workspaces.append(point.workspace)
            point.workspace, point.groups = None, []

    def evaluate(self, n: torch.Tensor) -> _Point:
        """Forward pass at ``n`` [d] (no autograd graph)."""
        n = n.detach()
        x, y = self._project(n).split([self.samples_fg.shape[0], self.samples_bg.shape[0]])
        if self.normalize == "mean_cost":  # mean_ij (x_i - y_j)^2 in O(p + q)
            mean_x, mean_y = x.mean(), y.mean()
            scale = (x - mean_x).square().mean() + (y - mean_y).square().mean() + (mean_x - mean_y) ** 2
        else:
            scale = self.fixed_scale
        root = scale ** 0.5
        x_scaled, y_scaled = x / root, y / root  # samples such that the costs are M / c
        pairs = [(x_scaled, y_scaled), (x_scaled, x_scaled), (y_scaled, y_scaled)]  # FB, FF, BB
        exp_domain, log_domain, lows = [], [], {}
        for problem in range(self.num_problems):
            first, second = pairs[problem]
            if problem == 0:
                low, high = _cost_range(first[None], second[None])  # [1], [1]
            else:  # within a class the cheapest pair is a sample with itself
                low, high = torch.zeros(1, dtype=first.dtype), (first.amax() - first.amin()).square()[None]
            if float(high - low) * self.lam <= EXP_DOMAIN_MAX_RANGE:
                exp_domain.append(problem)
                lows[problem] = low
            else:
                log_domain.append(problem)
        batches = [exp_domain] if self.batched and exp_domain else [[problem] for problem in exp_domain]
        workspace = self._free_workspaces.pop() if self._free_workspaces else {}
        transported = torch.zeros(self.num_problems, dtype=torch.float64)
        groups = []
        for problems in batches:
            firsts = torch.stack([pairs[i][0] for i in problems])  # [m, p]
            seconds = torch.stack([pairs[i][1] for i in problems])  # [m, q]
            buffers = workspace.setdefault(tuple(problems), {})
            shape = torch.Size((firsts.shape[0], firsts.shape[1], seconds.shape[1]))
            costs = torch.sub(firsts[:, :, None], seconds[:, None, :],
                              out=_buffer(buffers, "cost", shape, firsts)).square_()  # [m, p, q], M / c
            transport = ExpTransportCost(costs, self.lam, self.sinkhorn_iter, workspace=buffers,
                                         shift=torch.cat([lows[i] for i in problems]), overwrite_cost=True)
            transported[problems] = transport.value
            groups.append((problems, firsts, seconds, transport))
        for problem in log_domain:
            first, second = pairs[problem]
            cost = (first[:, None] - second[None, :]) ** 2  # [p, q], M / c
            transported[problem] = (sinkhorn_log(cost, self.lam, self.sinkhorn_iter) * cost).sum()
            groups.append(([problem], first[None], second[None], cost))
        value = transported[0] / transported[1:].sum()  # eq. 13 / eq. 16
        return _Point(n, value, x, y, scale, transported, groups, workspace)

    def gradient(self, point: _Point) -> torch.Tensor:
        """Euclidean gradient ``dO/dn`` [d] at an evaluated point."""
        if point.workspace is None:
            raise RuntimeError("this point was released")
        transported, scale = point.transported, point.scale
        root = scale ** 0.5
        between, within = transported[0], transported[1:].sum()
        weights = torch.full_like(transported, float(-between / within ** 2))  # dO/dh of FF, BB
        weights[0] = 1.0 / within  # dO/dh of FB
        grad_x, grad_y = torch.zeros_like(point.x), torch.zeros_like(point.y)
        grad_scale = torch.zeros((), dtype=torch.float64)
        for problems, firsts, seconds, solved in point.groups:
            # sum_j Mbar_ij (z_i - z'_j) with a common centre removed from z and z' (an exact
            # identity that keeps the two terms below small)
            centre = (firsts.mean(dim=-1, keepdim=True) + seconds.mean(dim=-1, keepdim=True)) / 2
            firsts, seconds = firsts - centre, seconds - centre  # [m, p], [m, q]
            ones_first, ones_second = torch.ones_like(firsts), torch.ones_like(seconds)
            # M / c = L^T R: (z_i - z'_j)^2 = z_i^2 - 2 z_i z'_j + z'_j^2
            cost_left = torch.stack([firsts.square(), -2 * firsts, ones_first], dim=1)  # [m, 3, p]
            cost_right = torch.stack([ones_second, seconds, seconds.square()], dim=1)  # [m, 3, q]
            if isinstance(solved, ExpTransportCost):
                # hand-written reverse pass; the factors fold its -lam (K o M) o (u v^T) term into
                # its one matrix product
                out = _buffer(self._gradient_buffers.setdefault(tuple(problems), {}), "grad",
                              solved.kernel.shape, solved.kernel)
                grad_cost = solved.cost_grad(weights[problems], (cost_left, cost_right), out=out)
            else:  # log domain: autograd through the iterations
                cost = solved.detach().requires_grad_(True)
                with torch.enable_grad():
                    transport = (sinkhorn_log(cost, self.lam, self.sinkhorn_iter) * cost).sum()
                    (grad_cost,) = torch.autograd.grad(transport, cost)
                grad_cost = (weights[problems[0]] * grad_cost)[None]  # [1, p, q]
            # grad_cost = dO/d(M / c) [m, p, q]
            if self.normalize == "mean_cost":
                rows = cost_right @ grad_cost.transpose(-2, -1)  # [m, 3, p]: Mbar (1, z', z'^2) (times c)
                # dO/dc = -<dO/d(M / c), M / c> / c
                grad_scale = grad_scale - (cost_left * rows).sum() / scale
            else:
                rows = cost_right[:, :2] @ grad_cost.transpose(-2, -1)  # [m, 2, p]: Mbar 1, Mbar z' (times c)
            cols = torch.stack([ones_first, firsts], dim=1) @ grad_cost  # [m, 2, q]: Mbar^T 1, Mbar^T z
            # z and z' are divided by sqrt(c), Mbar = dO/d(M / c) / c
            grad_firsts = 2 * (firsts * rows[:, 0] - rows[:, 1]) / root  # [m, p]
            grad_seconds = 2 * (seconds * cols[:, 0] - cols[:, 1]) / root  # [m, q]
            for row, problem in enumerate(problems):  # FB: (x, y), FF: (x, x), BB: (y, y)
                if problem in (0, 1):
                    grad_x = grad_x + grad_firsts[row]
                else:
                    grad_y = grad_y + grad_firsts[row]
                if problem in (0, 2):
                    grad_y = grad_y + grad_seconds[row]
                else:
                    grad_x = grad_x + grad_seconds[row]
        if self.normalize == "mean_cost":  # c = mean_ij (x_i - y_j)^2
            p, q = point.x.shape[0], point.y.shape[0]
            grad_x = grad_x + grad_scale * 2 * (point.x - point.y.mean()) / p
            grad_y = grad_y + grad_scale * 2 * (point.y - point.x.mean()) / q
        return self._pull_back(torch.cat([grad_x, grad_y]))  # [d], F^T g_x + B^T g_y


class _Objective(torch.autograd.Function):
    """``O(n)`` as an autograd node whose backward is :meth:`_Evaluator.gradient`."""

    @staticmethod
    def forward(ctx, n, evaluator, point):
        ctx.evaluator, ctx.point = evaluator, point
        return point.value.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_value):
        return grad_value * ctx.evaluator.gradient(ctx.point), None, None


def objective(n: torch.Tensor, F: torch.Tensor, B: torch.Tensor, lam: float = 2.0,
              sinkhorn_iter: int = 10, within: str = "both", normalize: str = "none") -> torch.Tensor:
    """OT-ReSeFa objective ``O(n)`` of eq. 13 (``within="both"``) or eq. 16 (``"foreground"``).

    ``n`` [d] (used as given: pass a unit vector), ``F`` [p, d], ``B`` [q, d]. Returns a float64
    scalar tensor, differentiable with respect to ``n`` through the Sinkhorn iterations (by the
    hand-written reverse pass of eqs. 24-27 in the exp domain, by autograd in the log domain).
    """
    evaluator = _Evaluator(F, B, lam, sinkhorn_iter, within, normalize)
    n = torch.as_tensor(n, dtype=torch.float64)
    point = evaluator.evaluate(n)
    if not n.requires_grad:
        return point.value
    return _Objective.apply(n, evaluator, point)


def _tangent(grad: torch.Tensor, n: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``grad`` [d] projected on the tangent space of the sphere at ``n`` [d] and orthogonally to
    the rows of ``basis`` [m, d] (previous directions, see :func:`solve`)."""
    grad = grad - (grad @ n) * n
    return grad - basis.T @ (basis @ grad)


def objective_gradient(n: torch.Tensor, F: torch.Tensor, B: torch.Tensor, lam: float = 2.0,
                       sinkhorn_iter: int = 10, within: str = "both",
                       normalize: str = "none") -> tuple[float, torch.Tensor]:
    """``(O(n), grad)`` with ``grad`` [d] the Riemannian gradient of ``O`` on the unit sphere.

    ``grad`` is the exact gradient through the ``k`` Sinkhorn iterations (eq. 17, chain rule of
    eqs. 24-27, hand-written reverse pass; autograd in the log domain) projected on the tangent
    space ``{t : t^T n = 0}``; ``n`` [d] must be a unit vector.
    """
    evaluator = _Evaluator(F, B, lam, sinkhorn_iter, within, normalize)
    n = torch.as_tensor(n, dtype=torch.float64).detach()
    point = evaluator.evaluate(n)
    no_basis = torch.zeros(0, n.shape[0], dtype=torch.float64)  # [0, d]
    return point.value.item(), _tangent(evaluator.gradient(point), n, no_basis)


def _ascend(evaluator: _Evaluator, n: torch.Tensor, basis: torch.Tensor, max_iter: int, tol: float):
    """Algorithm 1 from the unit start ``n`` [d] (orthogonal to ``basis``): projected gradient ascent.

    Each iteration: ``G`` = tangent gradient, ``D = Pi(n + G) - n`` (the paper's step 11 written
    for ascent, ``Pi`` = normalisation), then backtracking: the first trial step is twice the
    previous accepted one (1 at the first iteration; steps above 1 go past ``Pi(n + G)``, which
    matters when ``|G|`` is small), and it is halved until
    ``O(Pi(n + step D)) >= O(n) + armijo * step * <G, D>`` (``<G, D>`` is the slope of that curve
    at ``step = 0``). Stops after ``max_iter`` steps, when the last :data:`STALL_WINDOW` steps
    together increased ``O`` by at most ``tol * |O|``, or when no step passes the test.
    The accepted candidate's forward pass is reused: only its reverse pass is added.
    """
    point = evaluator.evaluate(n)
    value = point.value.item()
    if not math.isfinite(value):
        raise ValueError(
            f"the objective is {value} at the start: with these costs and lam the within-class "
            "plans are exactly diagonal in float64 (or the start moves no sample); use "
            'normalize="unit_rows" or "mean_cost", or a smaller lam')
    grad = _tangent(evaluator.gradient(point), n, basis)
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
            candidate_point = evaluator.evaluate(candidate)
            candidate_value = candidate_point.value.item()
            if math.isfinite(candidate_value) and \
                    candidate_value >= value + LINE_SEARCH["armijo"] * step * slope:
                break
            evaluator.release(candidate_point)
            step *= LINE_SEARCH["shrink"]
        else:
            break
        evaluator.release(point)
        n, point, value = candidate, candidate_point, candidate_value
        grad = _tangent(evaluator.gradient(point), n, basis)
        history.append(value)
        # over a window: gradient ascent zig-zags, single steps can be tiny long before the end
        if len(history) > STALL_WINDOW and value - history[-1 - STALL_WINDOW] <= tol * abs(value):
            break
    evaluator.release(point)
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


def solve(F: torch.Tensor, B: torch.Tensor, lam: float = 2.0, sinkhorn_iter: int = 10,
          max_iter: int = 100, within: str = "both", num_directions: int = 1,
          init: "str | torch.Tensor" = "random", restarts: int = 1, normalize: str = "none",
          seed: int = 0, tol: float = 1e-9) -> SolveResult:
    """Maximise the OT-ReSeFa objective (eq. 13) over unit ``n`` by Algorithm 1.

    Parameters
    ----------
    F, B : Tensor [p, d], [q, d]
        Foreground and background samples, used as given (rows of ``A_F`` and ``A_B``).
    lam, sinkhorn_iter, within, normalize
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
    evaluator = _Evaluator(F, B, lam, sinkhorn_iter, within, normalize)
    samples_fg, samples_bg = evaluator.samples_fg, evaluator.samples_bg
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
            n, value, history = _ascend(evaluator, start / start.norm(), basis, max_iter, tol)
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


def discover(problem: RegionProblem, num_directions: int, seed: int, *, lam: float, within: str,
             normalize: str, init: str, restarts: int, sinkhorn_iter: int, max_iter: int,
             tol: float) -> MethodResult:
    """OT-ReSeFa on ``F = A_F``, ``B = A_B`` (see :func:`solve`); scores are the objectives ``O(n)``.

    Defaults are the paper's (``lam=2``, ``k=10``, ``L=100``, random start) except
    ``normalize="unit_rows"``: with pixel-normalised Grams the raw projected costs are ~1e-4, the
    plans are uniform and the OT structure vanishes; rescaling the rows to unit mean norm makes
    ``lam=2`` mean the same on every model (``"mean_cost"`` does too, but leaves the part of the
    start in the Grams' common null space untouched; see the module docstring).
    """
    result = solve(problem.gram_fg, problem.gram_bg, lam=lam, sinkhorn_iter=sinkhorn_iter,
                   max_iter=max_iter, within=within, num_directions=num_directions, init=init,
                   restarts=restarts, normalize=normalize, seed=seed, tol=tol)
    info = {
        "objective": result.objective.tolist(),
        "history": result.history,
        "iterations": [len(h) - 1 for h in result.history],
        "deflation": True,
    }
    return finish(result.directions, result.objective, info)
