"""Entropic optimal transport by a fixed number of Sinkhorn iterations, in the log domain.

The paper (sec. 3.3, eqs. 21-23) obtains the entropic plan of eq. 12,

    T_lam = argmin_{T in U(a, b)} lam <T, M> - Omega(T),      Omega(T) = -sum_ij T_ij log T_ij,

by ``k`` Sinkhorn fixed-point iterations started from ``u^0 = 1``::

    K   = exp(-lam M)
    v^k = b / (K^T u^{k-1})                                    (eq. 22)
    u^k = a / (K v^k)                                          (eq. 23)
    T^k = diag(u^k) K diag(v^k)                                (eq. 21)

and differentiates ``T^k`` with respect to the cost through the ``k`` iterations (eqs. 24-27).
:func:`sinkhorn_log` runs exactly these iterations on ``log u`` and ``log v`` with log-sum-exp
reductions, so ``K`` itself is never formed: no overflow, underflow or NaN at any cost scale or
``lam`` (``lam * M`` of 1e12 is fine), and the result stays differentiable by autograd.
:func:`sinkhorn` runs the same iterations and returns the same plan, but in the exp domain
(matrix-vector products with ``K``, about 5x faster with its gradient) whenever that is exactly
safe, i.e. when the costs span at most :data:`EXP_DOMAIN_MAX_RANGE` after scaling by ``lam``, and
falls back to :func:`sinkhorn_log` otherwise.

Because ``u`` is updated last, after any number of iterations the **row marginal is exact**,
``T^k 1 = a``, while the column marginal ``(T^k)^T 1`` only approaches ``b`` as ``k`` grows.
"""

from __future__ import annotations

import math

import torch

__all__ = ["sinkhorn", "sinkhorn_log", "entropic_transport_cost", "EXP_DOMAIN_MAX_RANGE"]

#: Largest ``lam * (max M - min M)`` for which :func:`sinkhorn` uses the exp domain: the shifted
#: kernel then lies in ``[e^-100, 1]`` and the scalings ``u``, ``v`` stay far from over/underflow.
EXP_DOMAIN_MAX_RANGE = 100.0


def _check(lam: float, num_iters: int) -> None:
    if lam <= 0:
        raise ValueError(f"lam must be positive, got {lam}")
    if num_iters < 1:
        raise ValueError(f"num_iters must be at least 1, got {num_iters}")


def _log_marginal(weights: torch.Tensor | None, size: int, like: torch.Tensor) -> torch.Tensor:
    if weights is None:
        return torch.full((size,), -math.log(size), dtype=like.dtype, device=like.device)  # [size]
    weights = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    if weights.shape != (size,):
        raise ValueError(f"marginal has shape {tuple(weights.shape)}, expected ({size},)")
    if not bool(torch.all(weights > 0)):
        raise ValueError("marginal weights must be strictly positive")
    return torch.log(weights)


def sinkhorn_log(cost: torch.Tensor, lam: float, num_iters: int = 10,
                 a: torch.Tensor | None = None, b: torch.Tensor | None = None) -> torch.Tensor:
    """Entropic transport plan after ``num_iters`` Sinkhorn iterations (paper eqs. 21-23).

    Parameters
    ----------
    cost : Tensor [..., p, q]
        Cost matrix ``M`` (leading dimensions are independent problems sharing ``a`` and ``b``).
    lam : float
        Inverse entropic regularisation ``lam > 0`` of eq. 12 (POT's ``reg`` is ``1 / lam``).
    num_iters : int
        Number ``k >= 1`` of (v, u) update pairs; the paper uses ``k = 10``.
    a, b : Tensor [p], [q], optional
        Row and column marginals; uniform ``1/p`` and ``1/q`` (eq. 11) when omitted.

    Returns
    -------
    Tensor [..., p, q]
        ``T^k = diag(u^k) exp(-lam M) diag(v^k)``, computed as ``a_i softmax_j(log v^k_j - lam M_ij)``
        (the same matrix, since ``u^k = a / (K v^k)``). Its rows sum exactly to ``a``; its columns
        sum to ``b`` only at convergence.
    """
    _check(lam, num_iters)
    p, q = cost.shape[-2], cost.shape[-1]
    log_a = _log_marginal(a, p, cost)  # [p]
    log_b = _log_marginal(b, q, cost)  # [q]
    log_kernel = -lam * cost  # [..., p, q], log K
    # eq. 22 with u^0 = 1
    log_v = log_b - torch.logsumexp(log_kernel, dim=-2)  # [..., q]
    for _ in range(num_iters - 1):
        log_u = log_a - torch.logsumexp(log_kernel + log_v.unsqueeze(-2), dim=-1)  # [..., p], eq. 23
        log_v = log_b - torch.logsumexp(log_kernel + log_u.unsqueeze(-1), dim=-2)  # [..., q], eq. 22
    # Final eq. 23 and eq. 21 together: diag(a / (K v)) K diag(v) is `a` times a row-wise softmax,
    # which keeps the rows exact even when log u, log K and log v are ~1e12 and cancel.
    return log_a.exp().unsqueeze(-1) * torch.softmax(log_kernel + log_v.unsqueeze(-2), dim=-1)  # [..., p, q]


def _sinkhorn_exp(cost: torch.Tensor, lam: float, num_iters: int, a: torch.Tensor | None,
                  b: torch.Tensor | None) -> torch.Tensor:
    """Eqs. 21-23 literally, with the kernel of the cost shifted by its minimum (the plan does not
    change when ``K`` is multiplied by a constant, so the detached shift is exact)."""
    p, q = cost.shape[-2], cost.shape[-1]
    weights_a = _log_marginal(a, p, cost).exp()  # [p]
    weights_b = _log_marginal(b, q, cost).exp()  # [q]
    shift = cost.detach().amin(dim=(-2, -1), keepdim=True)  # [..., 1, 1]
    kernel = torch.exp(-lam * (cost - shift))  # [..., p, q], K up to a constant
    u = torch.ones(cost.shape[:-1], dtype=cost.dtype, device=cost.device)  # [..., p], u^0 = 1
    for _ in range(num_iters):
        v = weights_b / (kernel.transpose(-2, -1) @ u.unsqueeze(-1)).squeeze(-1)  # [..., q], eq. 22
        u = weights_a / (kernel @ v.unsqueeze(-1)).squeeze(-1)  # [..., p], eq. 23
    return u.unsqueeze(-1) * kernel * v.unsqueeze(-2)  # [..., p, q], eq. 21


def sinkhorn(cost: torch.Tensor, lam: float, num_iters: int = 10, a: torch.Tensor | None = None,
             b: torch.Tensor | None = None) -> torch.Tensor:
    """Same plan as :func:`sinkhorn_log` (same arguments), computed in the exp domain when
    ``lam * (max M - min M) <= EXP_DOMAIN_MAX_RANGE`` (for every problem of the batch) and in the
    log domain otherwise."""
    _check(lam, num_iters)
    flat = cost.detach().flatten(-2)  # [..., p*q]
    spread = float((flat.amax(dim=-1) - flat.amin(dim=-1)).max()) * lam
    if spread <= EXP_DOMAIN_MAX_RANGE:
        return _sinkhorn_exp(cost, lam, num_iters, a, b)
    return sinkhorn_log(cost, lam, num_iters, a, b)


def entropic_transport_cost(cost: torch.Tensor, lam: float, num_iters: int = 10,
                            a: torch.Tensor | None = None,
                            b: torch.Tensor | None = None) -> torch.Tensor:
    """Regularised transport cost ``<T^k, M> = sum_ij T^k_ij M_ij`` (paper eq. 10).

    ``T^k`` is :func:`sinkhorn`'s plan for the same arguments; the result has the cost's
    leading batch shape ``[...]`` and is differentiable with respect to ``cost`` through all
    Sinkhorn iterations.
    """
    plan = sinkhorn(cost, lam, num_iters, a, b)  # [..., p, q]
    return (plan * cost).sum(dim=(-2, -1))  # [...]
