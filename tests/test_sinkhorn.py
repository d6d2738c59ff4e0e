"""Log-domain Sinkhorn (paper eqs. 21-23): marginals, agreement with the plain iterations and with
POT, numerical safety at extreme scales, differentiability."""

import numpy as np
import ot
import pytest
import torch

from otresefa.methods.sinkhorn import (EXP_DOMAIN_MAX_RANGE, ExpTransportCost, _sinkhorn_exp,
                                      entropic_transport_cost, sinkhorn, sinkhorn_log)


def random_cost(p, q, seed=0, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(p, generator=generator, dtype=torch.float64)
    y = torch.randn(q, generator=generator, dtype=torch.float64) + 0.5
    return scale * (x[:, None] - y[None, :]) ** 2  # [p, q]


def random_marginal(size, seed):
    weights = torch.rand(size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.1
    return weights / weights.sum()


def plain_sinkhorn(cost, lam, num_iter, a, b):
    """The paper's iterations (eqs. 21-23) written literally, with K = exp(-lam M)."""
    kernel = torch.exp(-lam * cost)
    u = torch.ones(cost.shape[0], dtype=cost.dtype)
    for _ in range(num_iter):
        v = b / (kernel.T @ u)
        u = a / (kernel @ v)
    return u[:, None] * kernel * v[None, :]


@pytest.mark.parametrize("num_iter", [1, 3, 10])
def test_row_marginal_exact_column_marginal_approximate(num_iter):
    cost = random_cost(7, 5)
    a, b = random_marginal(7, 1), random_marginal(5, 2)
    plan = sinkhorn_log(cost, 5.0, num_iter, a, b)
    torch.testing.assert_close(plan.sum(dim=1), a, rtol=1e-12, atol=1e-15)
    assert float((plan.sum(dim=0) - b).abs().max()) > 1e-8  # not converged yet: columns are off


def test_column_error_shrinks_and_vanishes_at_convergence():
    cost = random_cost(6, 9, seed=3)
    errors = [float((sinkhorn_log(cost, 2.0, k).sum(dim=0) - 1 / 9).abs().max()) for k in (1, 5, 20, 500)]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1e-12


def test_uniform_marginals_by_default():
    cost = random_cost(4, 6)
    torch.testing.assert_close(sinkhorn_log(cost, 2.0, 10),
                               sinkhorn_log(cost, 2.0, 10, torch.full((4,), 0.25), torch.full((6,), 1 / 6)))


@pytest.mark.parametrize("lam", [0.5, 2.0, 10.0])
def test_matches_plain_iterations_at_moderate_scale(lam):
    cost = random_cost(8, 6, seed=4)
    a, b = random_marginal(8, 5), random_marginal(6, 6)
    for num_iter in (1, 10):
        reference = plain_sinkhorn(cost, lam, num_iter, a, b)
        torch.testing.assert_close(sinkhorn_log(cost, lam, num_iter, a, b), reference, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(sinkhorn(cost, lam, num_iter, a, b), reference, rtol=1e-10, atol=1e-14)


def test_matches_pot_at_convergence():
    cost = random_cost(10, 12, seed=7)
    a, b = random_marginal(10, 8), random_marginal(12, 9)
    lam = 3.0
    reference = ot.sinkhorn(a.numpy(), b.numpy(), cost.numpy(), reg=1 / lam, numItermax=100000,
                            stopThr=1e-14)
    np.testing.assert_allclose(sinkhorn_log(cost, lam, 1000, a, b).numpy(), reference,
                               rtol=1e-7, atol=1e-12)


def test_batched_costs_are_independent_problems():
    costs = torch.stack([random_cost(5, 5, seed=s) for s in range(3)])  # [3, 5, 5]
    batched = sinkhorn_log(costs, 2.0, 10)
    for index in range(3):
        torch.testing.assert_close(batched[index], sinkhorn_log(costs[index], 2.0, 10))
    torch.testing.assert_close(sinkhorn(costs, 2.0, 10), batched)
    torch.testing.assert_close(entropic_transport_cost(costs, 2.0), (batched * costs).sum(dim=(1, 2)))


@pytest.mark.parametrize("solver", [sinkhorn_log, sinkhorn])
@pytest.mark.parametrize("scale", [1e-8, 1e-4, 1.0, 1e4, 1e8])
@pytest.mark.parametrize("lam", [1e-2, 2.0, 1e4])
def test_safe_at_extreme_scales_including_gradient(solver, scale, lam):
    cost = random_cost(9, 7, seed=11, scale=scale).requires_grad_(True)
    plan = solver(cost, lam, 10)
    assert bool(torch.isfinite(plan).all()) and bool((plan >= 0).all())
    torch.testing.assert_close(plan.sum(dim=1), torch.full((9,), 1 / 9, dtype=torch.float64))
    transport = (plan * cost).sum()
    (grad,) = torch.autograd.grad(transport, cost)
    assert bool(torch.isfinite(transport)) and bool(torch.isfinite(grad).all())


@pytest.mark.parametrize("spread", [1.0, 0.99 * EXP_DOMAIN_MAX_RANGE, 1.01 * EXP_DOMAIN_MAX_RANGE, 1e3])
def test_exp_domain_dispatch_matches_log_domain(spread):
    """`sinkhorn` switches between the exp and the log domain at EXP_DOMAIN_MAX_RANGE; plans and
    gradients agree with the log domain on both sides (and near-deterministic plans are fine)."""
    cost = random_cost(8, 9, seed=5)
    cost = (spread * (cost - cost.min()) / (cost.max() - cost.min()) + 3.0).requires_grad_(True)
    a, b = random_marginal(8, 1), random_marginal(9, 2)
    plans = [solver(cost, 1.0, 10, a, b) for solver in (sinkhorn, sinkhorn_log)]
    torch.testing.assert_close(plans[0], plans[1], rtol=1e-9, atol=1e-15)
    grads = [torch.autograd.grad((plan * cost).sum(), cost)[0] for plan in plans]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-7, atol=1e-12)


def test_differentiable_through_iterations():
    cost = random_cost(4, 3, seed=2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: entropic_transport_cost(m, 2.0, 10), (cost,))
    assert torch.autograd.gradcheck(lambda m: sinkhorn_log(m, 2.0, 5), (cost,))
    assert torch.autograd.gradcheck(lambda m: sinkhorn(m, 2.0, 5), (cost,))


def test_invalid_arguments():
    cost = random_cost(3, 4)
    with pytest.raises(ValueError, match="lam must be positive"):
        sinkhorn_log(cost, 0.0)
    with pytest.raises(ValueError, match="num_iter must be at least 1"):
        sinkhorn_log(cost, 1.0, 0)
    with pytest.raises(ValueError, match="lam must be positive"):
        sinkhorn(cost, -1.0)
    with pytest.raises(ValueError, match=r"marginal has shape \(2,\), expected \(3,\)"):
        sinkhorn_log(cost, 1.0, 10, a=torch.ones(2) / 2)
    with pytest.raises(ValueError, match="strictly positive"):
        sinkhorn_log(cost, 1.0, 10, b=torch.tensor([0.5, 0.5, 0.0, 0.0]))


# -- hand-written reverse pass of the exp-domain iterations (ExpTransportCost) ----------------------


def autograd_transport_cost(cost, lam, num_iter, a=None, b=None):
    """<T^k, M> with T^k from the literal exp-domain iterations, differentiated by autograd."""
    return (_sinkhorn_exp(cost, lam, num_iter, a, b) * cost).sum(dim=(-2, -1))


@pytest.mark.parametrize("num_iter", [1, 2, 10])
@pytest.mark.parametrize("marginals", [False, True])
def test_hand_written_backward_matches_autograd_through_the_iterations(num_iter, marginals):
    costs = torch.stack([random_cost(7, 5, seed=s) for s in range(3)]).requires_grad_(True)  # [3, 7, 5]
    a, b = (random_marginal(7, 1), random_marginal(5, 2)) if marginals else (None, None)
    weights = torch.tensor([0.7, -1.3, 2.0], dtype=torch.float64)
    reference = autograd_transport_cost(costs, 2.0, num_iter, a, b)
    (expected,) = torch.autograd.grad(reference, costs, weights)
    transport = ExpTransportCost(costs, 2.0, num_iter, a, b)
    torch.testing.assert_close(transport.value, reference.detach(), rtol=1e-13, atol=0)
    torch.testing.assert_close(transport.cost_grad(weights), expected, rtol=1e-11, atol=1e-14)
    # the same derivative with M = L^T R folded into the matrix product (squared differences)
    x = torch.randn(3, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = torch.randn(3, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    squared = (x[:, :, None] - y[:, None, :]) ** 2  # [3, 7, 5]
    left = torch.stack([x ** 2, -2 * x, torch.ones_like(x)], dim=1)  # [3, 3, 7]
    right = torch.stack([torch.ones_like(y), y, y ** 2], dim=1)  # [3, 3, 5]
    squared_var = squared.clone().requires_grad_(True)
    reference = autograd_transport_cost(squared_var, 2.0, num_iter, a, b)
    (expected,) = torch.autograd.grad(reference, squared_var, weights)
    folded = ExpTransportCost(squared, 2.0, num_iter, a, b).cost_grad(weights, (left, right))
    torch.testing.assert_close(folded, expected, rtol=1e-10, atol=1e-13)


def test_entropic_transport_cost_gradcheck_batched_with_marginals():
    costs = torch.stack([random_cost(4, 3, seed=s) for s in range(2)]).requires_grad_(True)
    a, b = random_marginal(4, 3), random_marginal(3, 4)
    assert torch.autograd.gradcheck(lambda m: entropic_transport_cost(m, 1.5, 4, a, b), (costs,))
    assert torch.autograd.gradcheck(lambda m: entropic_transport_cost(m, 3.0, 10), (costs,))


def test_hand_written_backward_at_512():
    """The OT-ReSeFa size: three 512 x 512 costs, k = 10, against autograd through the loop."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 512, generator=generator, dtype=torch.float64)
    y = torch.randn(3, 512, generator=generator, dtype=torch.float64) + 0.5
    costs = ((x[:, :, None] - y[:, None, :]) ** 2 / 4).requires_grad_(True)  # spread ~ 25
    weights = torch.tensor([1.0, -0.5, -0.25], dtype=torch.float64)
    reference = autograd_transport_cost(costs, 2.0, 10)
    (expected,) = torch.autograd.grad(reference, costs, weights)
    transport = ExpTransportCost(costs, 2.0, 10)
    torch.testing.assert_close(transport.value, reference.detach(), rtol=1e-12, atol=0)
    grad = transport.cost_grad(weights)
    assert float((grad - expected).abs().max() / expected.abs().max()) < 1e-10


def test_workspace_reuse_and_vector_backends_agree(monkeypatch):
    """Buffers reused across evaluations, the cost overwritten in place, and the torch fallback
    for the vector work (used off-CPU) all give the same numbers."""
    import otresefa.methods.sinkhorn as module

    costs = torch.stack([random_cost(6, 6, seed=s) for s in range(3)])
    fresh = ExpTransportCost(costs, 2.0, 10)
    expected_value, expected_grad = fresh.value, fresh.cost_grad(torch.tensor([1.0, 2.0, 3.0]))
    workspace = {}
    for _ in range(2):
        scratch = costs.clone()
        reused = ExpTransportCost(scratch, 2.0, 10, workspace=workspace, overwrite_cost=True)
        torch.testing.assert_close(reused.value, expected_value, rtol=0, atol=0)
        reused_grad = reused.cost_grad(torch.tensor([1.0, 2.0, 3.0]))
        torch.testing.assert_close(reused_grad, expected_grad, rtol=0, atol=0)
    assert set(workspace) == {"kernel", "grad"}  # K o M went into the cost's memory
    monkeypatch.setattr(module, "_vector_backend", lambda tensor: ((lambda v: v), (lambda v: v), torch))
    on_torch = ExpTransportCost(costs, 2.0, 10)
    torch.testing.assert_close(on_torch.value, expected_value, rtol=1e-13, atol=0)
    on_torch_grad = on_torch.cost_grad(torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(on_torch_grad, expected_grad, rtol=1e-12, atol=1e-15)
