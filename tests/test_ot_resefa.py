"""OT-ReSeFa (paper eq. 13, Algorithm 1): objective, gradient, optimiser, reference against POT's WDA."""

import contextlib
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from otresefa.methods import run_method
from otresefa.methods.base import RegionProblem, orient_signs
from otresefa.methods.ot_resefa import LINE_SEARCH, objective, objective_gradient, solve
from otresefa.methods.resefa import generalized_eigenvectors
from otresefa.methods.sinkhorn import EXP_DOMAIN_MAX_RANGE, sinkhorn


@pytest.fixture(autouse=True)
def single_thread():
    """These problems are tiny: thread hand-offs would cost more than the arithmetic."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def gram_pair(dim, seed=0, scale=1.0):
    """Random SPD pair with different spectra, rows rescaled to unit mean norm times ``scale``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * dim, dim, generator=generator, dtype=torch.float64)
    y = torch.randn(2 * dim, dim, generator=generator, dtype=torch.float64)
    y = y * torch.linspace(0.2, 2.0, dim, dtype=torch.float64)
    gram_fg, gram_bg = x.T @ x / (2 * dim), y.T @ y / (2 * dim)
    norm = torch.cat([gram_fg, gram_bg]).norm(dim=1).mean()
    return scale * gram_fg / norm, scale * gram_bg / norm


def unit(vector):
    return vector / vector.norm()


def random_unit(dim, seed):
    return unit(torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))


def test_objective_equals_eq13_with_outer_products():
    """<n n^T, C> with C = sum_ij T_ij (s_i - s'_j)(s_i - s'_j)^T formed explicitly (tiny sizes)."""
    generator = torch.Generator().manual_seed(1)
    samples_fg = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    samples_bg = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    n = random_unit(4, 2)

    def correlation(first, second):
        cost = ((first @ n)[:, None] - (second @ n)[None, :]) ** 2
        plan = sinkhorn(cost, 2.0, 10)
        diffs = first[:, None, :] - second[None, :, :]  # [p, q, d]
        return torch.einsum("ij,ijk,ijl->kl", plan, diffs, diffs)  # [d, d]

    between = n @ correlation(samples_fg, samples_bg) @ n
    within_fg = n @ correlation(samples_fg, samples_fg) @ n
    within_bg = n @ correlation(samples_bg, samples_bg) @ n
    torch.testing.assert_close(objective(n, samples_fg, samples_bg), between / (within_fg + within_bg))
    torch.testing.assert_close(objective(n, samples_fg, samples_bg, within="foreground"), between / within_fg)


@pytest.mark.parametrize("normalize", ["none", "mean_cost", "unit_rows"])
@pytest.mark.parametrize("within", ["both", "foreground"])
def test_gradient_matches_central_differences(normalize, within):
    gram_fg, gram_bg = gram_pair(12, seed=3, scale=3.0)
    n = random_unit(12, 4)
    kwargs = dict(lam=2.0, sinkhorn_iter=10, within=within, normalize=normalize)
    _, grad = objective_gradient(n, gram_fg, gram_bg, **kwargs)
    assert abs(float(grad @ n)) < 1e-12  # tangent to the sphere
    step = 1e-5
    for seed in range(3):
        tangent = torch.randn(12, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        tangent = unit(tangent - (tangent @ n) * n)
        forward = objective(unit(n + step * tangent), gram_fg, gram_bg, **kwargs)
        backward = objective(unit(n - step * tangent), gram_fg, gram_bg, **kwargs)
        numeric = float(forward - backward) / (2 * step)
        assert float(grad @ tangent) == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_scale_free_normalisations():
    gram_fg, gram_bg = gram_pair(10, seed=5)
    n = random_unit(10, 6)
    for normalize in ("mean_cost", "unit_rows"):
        reference = objective(n, gram_fg, gram_bg, normalize=normalize)
        for factor in (1e-6, 1e6):
            scaled = objective(n, factor * gram_fg, factor * gram_bg, normalize=normalize)
            assert float(scaled) == pytest.approx(float(reference), rel=1e-9)


def test_ascent_is_monotone_and_returns_unit_directions():
    gram_fg, gram_bg = gram_pair(16, seed=7)
    result = solve(gram_fg, gram_bg, max_iter=40)
    history = result.history[0]
    assert all(b >= a for a, b in zip(history, history[1:]))
    assert history[-1] > history[0]
    assert result.directions.shape == (1, 16)
    torch.testing.assert_close(result.directions.norm(dim=1), torch.ones(1, dtype=torch.float64))
    assert float(result.objective[0]) == pytest.approx(float(objective(result.directions[0], gram_fg, gram_bg)))


def test_at_least_as_good_as_pot_wda():
    """POT's ot.dr.wda minimises within/between on Stiefel(d, 1) = the sphere with its own
    (exp-domain, float32) Sinkhorn, reg = 1/lam, k iterations, no normalisation: the inverse of
    our objective with normalize="none". Both directions are scored by both definitions."""
    ot_dr = pytest.importorskip("ot.dr", reason="POT's WDA needs autograd, pymanopt, scikit-learn",
                                exc_type=ImportError)

    lam, dim = 2.0, 16
    gram_fg, gram_bg = gram_pair(dim, seed=0)
    samples = torch.cat([gram_fg, gram_bg]).numpy()
    labels = np.r_[np.zeros(dim), np.ones(dim)]
    np.random.seed(0)  # pymanopt draws its start from numpy's global generator
    with contextlib.redirect_stdout(io.StringIO()):
        projection, _ = ot_dr.wda(samples.copy(), labels, p=1, reg=1 / lam, k=10, maxiter=100)
    pot_direction = unit(torch.as_tensor(projection[:, 0], dtype=torch.float64))
    ours = solve(gram_fg, gram_bg, lam=lam, sinkhorn_iter=10, max_iter=100, restarts=2)

    def pot_objective(direction):
        classes = [gram_fg.numpy().astype(np.float32), gram_bg.numpy().astype(np.float32)]
        weights = np.ones(dim, dtype=np.float32) / dim
        terms = {}
        for i in range(2):
            for j in range(i, 2):
                xi, xj = classes[i] @ direction[:, None], classes[j] @ direction[:, None]
                cost = ot_dr.dist(xi, xj)
                terms[i, j] = np.sum(ot_dr.sinkhorn(weights, weights, cost, 1 / lam, 10) * cost)
        return terms[0, 1] / (terms[0, 0] + terms[1, 1])

    # "at least as good" up to the solvers' stopping tolerances (ours: tol=1e-9 relative; POT:
    # float32 data, gradient norm 1e-6)
    ours_by_ours = float(ours.objective[0])
    pot_by_ours = float(objective(pot_direction, gram_fg, gram_bg, lam=lam))
    assert ours_by_ours >= pot_by_ours * (1 - 1e-7)
    ours_by_pot = pot_objective(ours.directions[0].numpy())
    pot_by_pot = pot_objective(pot_direction.numpy())
    assert ours_by_pot == pytest.approx(ours_by_ours, rel=1e-4)  # same objective, float32 inside
    assert pot_by_pot == pytest.approx(pot_by_ours, rel=1e-4)
    assert ours_by_pot >= pot_by_pot * (1 - 1e-5)  # float32 evaluation


def test_deflation_gives_orthonormal_ranked_directions():
    gram_fg, gram_bg = gram_pair(12, seed=8)
    result = solve(gram_fg, gram_bg, num_directions=3, max_iter=30)
    torch.testing.assert_close(result.directions @ result.directions.T,
                               torch.eye(3, dtype=torch.float64), atol=1e-10, rtol=0)
    assert result.objective.tolist() == sorted(result.objective.tolist(), reverse=True)
    assert len(result.history) == 3


def test_seeded_and_restarts_keep_the_best():
    gram_fg, gram_bg = gram_pair(10, seed=9)
    first = solve(gram_fg, gram_bg, max_iter=20, seed=3)
    again = solve(gram_fg, gram_bg, max_iter=20, seed=3)
    torch.testing.assert_close(first.directions, again.directions)
    other = solve(gram_fg, gram_bg, max_iter=20, seed=4)
    assert not torch.allclose(first.directions, other.directions)
    best = solve(gram_fg, gram_bg, max_iter=20, seed=3, restarts=3)
    assert float(best.objective[0]) >= float(first.objective[0])


def test_resefa_and_explicit_initialisation():
    gram_fg, gram_bg = gram_pair(10, seed=10)
    _, eigenvectors, _ = generalized_eigenvectors(gram_fg, gram_bg)
    start = solve(gram_fg, gram_bg, init="resefa", max_iter=0)
    assert abs(float(start.directions[0] @ eigenvectors[0])) == pytest.approx(1.0)
    given = random_unit(10, 11)
    explicit = solve(gram_fg, gram_bg, init=given, max_iter=0)
    torch.testing.assert_close(explicit.directions[0], given)
    with pytest.raises(ValueError, match="needs square Gram matrices"):
        solve(gram_fg[:7], gram_bg, init="resefa")


@pytest.mark.parametrize("scale", [1e-8, 1e8])
def test_extreme_scales_stay_finite(scale):
    gram_fg, gram_bg = gram_pair(8, seed=12, scale=scale)
    for normalize in ("mean_cost", "unit_rows") + (("none",) if scale < 1 else ()):
        result = solve(gram_fg, gram_bg, max_iter=5, normalize=normalize)
        assert bool(torch.isfinite(result.directions).all())
        assert np.isfinite(float(result.objective[0]))


def test_overflowing_objective_is_reported():
    """Unnormalised costs of 1e16: the within-class plans are exactly diagonal, O(n) = inf."""
    gram_fg, gram_bg = gram_pair(8, seed=12, scale=1e8)
    with pytest.raises(ValueError, match='objective is inf at the start.*normalize="unit_rows"'):
        solve(gram_fg, gram_bg, normalize="none")


def test_registry_entry():
    gram_fg, gram_bg = gram_pair(10, seed=13, scale=1e-3)
    result = run_method("ot-resefa", RegionProblem(gram_fg, gram_bg), num_directions=2, seed=1,
                        max_iter=15)
    assert result.vectors.dtype == torch.float32 and result.vectors.shape == (2, 10)
    torch.testing.assert_close(result.vectors, orient_signs(result.vectors))
    assert result.scores.tolist() == sorted(result.scores.tolist(), reverse=True)
    # the default normalisation makes the Gram scale irrelevant
    direct = solve(gram_fg, gram_bg, num_directions=2, seed=1, max_iter=15, normalize="unit_rows")
    torch.testing.assert_close(result.scores, direct.objective)
    json.dumps(result.info)
    assert len(result.info["history"][0]) - 1 == result.info["iterations"][0] <= 15


def test_line_search_constants_are_documented():
    assert LINE_SEARCH["shrink"] < 1 < LINE_SEARCH["grow"] and 0 < LINE_SEARCH["armijo"] < 1


def test_bad_inputs():
    gram_fg, gram_bg = gram_pair(6)
    n = random_unit(6, 0)
    with pytest.raises(ValueError, match="must share d"):
        objective(n, gram_fg, gram_bg[:, :5])
    with pytest.raises(ValueError, match="F contains non-finite"):
        solve(gram_fg * float("nan"), gram_bg)
    with pytest.raises(ValueError, match="within must be one of"):
        objective(n, gram_fg, gram_bg, within="background")
    with pytest.raises(ValueError, match="normalize must be one of"):
        solve(gram_fg, gram_bg, normalize="max")
    with pytest.raises(ValueError, match="init must be one of"):
        solve(gram_fg, gram_bg, init="sefa")
    with pytest.raises(ValueError, match=r"num_directions must be in \[1, 6\]"):
        solve(gram_fg, gram_bg, num_directions=7)
    with pytest.raises(ValueError, match=r"init must be \[d\] or \[m, d\] with d = 6"):
        solve(gram_fg, gram_bg, init=torch.ones(5))
    with pytest.raises(ValueError, match="start of direction 1 lies in the span"):
        solve(gram_fg, gram_bg, num_directions=2, init=torch.stack([n, n]), max_iter=0)


# -- the hand-written gradient (reverse pass of eqs. 24-27 and the chain rule to n) ---------------


def autograd_objective(n, samples_fg, samples_bg, lam=2.0, sinkhorn_iter=10, within="both",
                       normalize="none"):
    """O(n) as plain autograd operations through the literal Sinkhorn iterations (the formulation
    before the hand-written backward), the reference for the fast path."""
    x, y = samples_fg @ n, samples_bg @ n
    cost_fb = (x[:, None] - y[None, :]) ** 2
    costs = [cost_fb, (x[:, None] - x[None, :]) ** 2]
    if within == "both":
        costs.append((y[:, None] - y[None, :]) ** 2)
    if normalize == "mean_cost":
        scale = cost_fb.mean()
    elif normalize == "unit_rows":
        scale = float(torch.cat([samples_fg, samples_bg]).norm(dim=1).mean()) ** 2
    else:
        scale = 1.0
    transported = [(sinkhorn(cost / scale, lam, sinkhorn_iter) * cost).sum() for cost in costs]
    return transported[0] / sum(transported[1:])


def autograd_gradient(n, *args, **kwargs):
    n = n.clone().requires_grad_(True)
    value = autograd_objective(n, *args, **kwargs)
    (grad,) = torch.autograd.grad(value, n)
    return value.item(), grad


@pytest.mark.parametrize("normalize", ["none", "mean_cost", "unit_rows"])
@pytest.mark.parametrize("within", ["both", "foreground"])
@pytest.mark.parametrize("shape", [(12, 12), (9, 13)])
def test_hand_written_gradient_matches_autograd(normalize, within, shape):
    generator = torch.Generator().manual_seed(21)
    samples_fg = torch.randn(shape[0], 12, generator=generator, dtype=torch.float64)
    samples_bg = torch.randn(shape[1], 12, generator=generator, dtype=torch.float64) * 0.7
    n = random_unit(12, 22)
    kwargs = dict(lam=2.0, sinkhorn_iter=10, within=within, normalize=normalize)
    value, expected = autograd_gradient(n, samples_fg, samples_bg, **kwargs)
    variable = n.clone().requires_grad_(True)
    fast = objective(variable, samples_fg, samples_bg, **kwargs)
    (grad,) = torch.autograd.grad(fast, variable)
    assert fast.item() == pytest.approx(value, rel=1e-13)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12 * float(expected.abs().max()))
    _, tangent = objective_gradient(n, samples_fg, samples_bg, **kwargs)
    torch.testing.assert_close(tangent, expected - (expected @ n) * n, rtol=1e-10,
                               atol=1e-12 * float(expected.abs().max()))


def test_hand_written_gradient_with_a_log_domain_problem():
    """FF needs the log domain (lam * spread > EXP_DOMAIN_MAX_RANGE), FB and BB do not: the mixed
    evaluation (autograd for FF only) agrees with autograd everywhere."""
    generator = torch.Generator().manual_seed(5)
    samples_fg = torch.randn(10, 6, generator=generator, dtype=torch.float64) * 5.0
    samples_bg = torch.randn(10, 6, generator=generator, dtype=torch.float64) * 0.5
    n = random_unit(6, 7)
    x, y = samples_fg @ n, samples_bg @ n
    spread_fg, spread_bg = float((x.max() - x.min()) ** 2), float((y.max() - y.min()) ** 2)
    assert 2.0 * spread_fg > EXP_DOMAIN_MAX_RANGE > 2.0 * spread_bg
    value, expected = autograd_gradient(n, samples_fg, samples_bg)
    variable = n.clone().requires_grad_(True)
    fast = objective(variable, samples_fg, samples_bg)
    (grad,) = torch.autograd.grad(fast, variable)
    assert fast.item() == pytest.approx(value, rel=1e-12)
    torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12 * float(expected.abs().max()))


def test_hand_written_gradient_at_512():
    gram_fg, gram_bg = gram_pair(512, seed=1)
    n = random_unit(512, 2)
    value, expected = autograd_gradient(n, gram_fg, gram_bg, normalize="unit_rows")
    variable = n.clone().requires_grad_(True)
    fast = objective(variable, gram_fg, gram_bg, normalize="unit_rows")
    (grad,) = torch.autograd.grad(fast, variable)
    assert fast.item() == pytest.approx(value, rel=1e-12)
    assert float((grad - expected).norm() / expected.norm()) < 1e-10


def test_cost_range_is_the_exact_extremes_of_the_cost_matrix():
    from otresefa.methods.ot_resefa import _cost_range

    generator = torch.Generator().manual_seed(8)
    first = torch.randn(2, 40, generator=generator, dtype=torch.float64)
    second = torch.cat([torch.randn(1, 30, generator=generator, dtype=torch.float64) + 3.0,
                        first[1:, :30]])  # disjoint classes; identical samples
    low, high = _cost_range(first, second)
    costs = (first[:, :, None] - second[:, None, :]).square()
    assert torch.equal(low, costs.amin(dim=(1, 2))) and torch.equal(high, costs.amax(dim=(1, 2)))


class AutogradEvaluator:
    """The evaluator interface of `_ascend` on `autograd_objective` (the previous implementation)."""

    def __init__(self, samples_fg, samples_bg, **kwargs):
        self.args, self.kwargs = (samples_fg, samples_bg), kwargs

    def evaluate(self, n):
        with torch.no_grad():
            return SimpleNamespace(n=n, value=autograd_objective(n, *self.args, **self.kwargs))

    def gradient(self, point):
        return autograd_gradient(point.n, *self.args, **self.kwargs)[1]

    def release(self, point):
        pass


@pytest.mark.parametrize("normalize", ["none", "unit_rows", "mean_cost"])
def test_iterates_equal_those_of_autograd(normalize):
    """Same start, same line search: Algorithm 1 on the fast path and on autograd through the plain
    iterations produce the same objective history to round-off."""
    from otresefa.methods.ot_resefa import _ascend, _Evaluator

    gram_fg, gram_bg = gram_pair(24, seed=13)
    start = random_unit(24, 14)
    basis = torch.zeros(0, 24, dtype=torch.float64)
    fast = _ascend(_Evaluator(gram_fg, gram_bg, 2.0, 10, "both", normalize), start, basis, 30, 1e-9)
    slow = _ascend(AutogradEvaluator(gram_fg, gram_bg, normalize=normalize), start, basis, 30, 1e-9)
    assert len(fast[2]) == len(slow[2])
    np.testing.assert_allclose(fast[2], slow[2], rtol=1e-11)
    assert float(fast[0] @ slow[0]) == pytest.approx(1.0, abs=1e-12)


def test_released_points_cannot_be_differentiated():
    from otresefa.methods.ot_resefa import _Evaluator

    gram_fg, gram_bg = gram_pair(6)
    evaluator = _Evaluator(gram_fg, gram_bg, 2.0, 10, "both", "none")
    point = evaluator.evaluate(random_unit(6, 1))
    evaluator.release(point)
    with pytest.raises(RuntimeError, match="released"):
        evaluator.gradient(point)
