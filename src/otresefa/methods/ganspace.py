"""GANSpace: principal components of sampled latents (Harkonen et al., NeurIPS 2020).

``w = mapping(z)`` for ``z ~ N(0, I)``; the directions are the principal axes of the sampled
``w``, i.e. the eigenvectors of their covariance, ranked by explained variance. GANSpace's release
uses ``N = 10^6`` samples; the default here is ``10^4`` so the CPU run takes seconds (the top
components of a 512-d covariance are already well estimated). The region is ignored: GANSpace is a
global baseline.
"""

from __future__ import annotations

import torch

from otresefa.methods.base import MethodResult, RegionProblem, finish

__all__ = ["sample_covariance", "discover", "PUBLISHED_NUM_SAMPLES"]

PUBLISHED_NUM_SAMPLES = 1_000_000


@torch.no_grad()
def sample_covariance(generator, num_samples: int, seed: int,
                      chunk_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [w_dim] and covariance [w_dim, w_dim] (float64) of ``num_samples`` mapped latents.

    ``z`` comes from a ``torch.Generator`` seeded with ``seed``; sums are accumulated chunk by chunk
    so memory does not grow with ``num_samples``.
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    rng = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    w_sum = torch.zeros(generator.w_dim, dtype=torch.float64)  # [d]
    w_outer = torch.zeros(generator.w_dim, generator.w_dim, dtype=torch.float64)  # [d, d]
    for start in range(0, num_samples, chunk_size):
        count = min(chunk_size, num_samples - start)
        z = torch.randn(count, generator.z_dim, generator=rng)  # [N, z_dim]
        w = generator.mapping(z.to(device), None)[:, 0].to("cpu", torch.float64)  # [N, d]
        w_sum += w.sum(dim=0)
        w_outer += w.T @ w
    mean = w_sum / num_samples
    covariance = (w_outer - num_samples * torch.outer(mean, mean)) / (num_samples - 1)
    return mean, covariance


def discover(problem: RegionProblem, num_directions: int, seed: int, *,
             num_samples: int, chunk_size: int) -> MethodResult:
    """Top principal axes of ``num_samples`` sampled ``w``; scores are their variances."""
    generator = problem.generator
    if generator.w_dim != problem.dim:
        raise ValueError(f"the generator's w_dim is {generator.w_dim} but the Grams are "
                         f"{problem.dim} x {problem.dim}")
    _, covariance = sample_covariance(generator, num_samples, seed, chunk_size)
    variances, axes = torch.linalg.eigh(covariance)  # [d], [d, d] ascending
    variances, axes = variances.flip(0), axes.flip(1)
    total = float(variances.clamp_min(0).sum())
    info = {
        "num_samples": num_samples,
        "explained_variance_ratio": (variances[:num_directions] / total).tolist(),
    }
    return finish(axes[:, :num_directions].T, variances[:num_directions], info)
