"""``discover``: from Jacobians and a region to ranked editing directions, with their provenance.

This is the library's one entry point to every discovery method (``otresefa.methods``): it turns
the region into a mask at the Jacobians' size, forms the normalised Gram matrices
``A_F = J_f^T J_f / N_f`` and ``A_B = J_b^T J_b / N_b`` (eqs. 5-8), averages them over several
Jacobians when given (directions that hold for many samples, not one), runs the method and records
everything that produced the result in ``Directions.metadata``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from otresefa import __version__
from otresefa.directions import Directions
from otresefa.jacobian import as_jacobian_list, generator_fingerprint, region_grams
from otresefa.methods import RegionProblem, method_needs, method_options, run_method
from otresefa.models import Generator
from otresefa.regions import Region, resolve_region


def average_grams(jacobians: Sequence[torch.Tensor], region: Region) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the per-sample ``(A_F, A_B)`` over ``jacobians`` (each ``[S, S, dim]``) -> ``[dim, dim]`` x 2."""
    pairs = [region_grams(J, region.mask) for J in jacobians]
    return torch.stack([p[0] for p in pairs]).mean(0), torch.stack([p[1] for p in pairs]).mean(0)


def discover(
    jacobians: torch.Tensor | Sequence[torch.Tensor] | None,
    region: Any,
    method: str = "ot-resefa",
    num_directions: int = 1,
    seed: int = 0,
    *,
    generator: Generator | None = None,
    metadata: dict | None = None,
    **options: Any,
) -> Directions:
    """Find ``num_directions`` latent directions that change ``region`` and keep the rest.

    Args:
        jacobians: one ``[S, S, dim]`` Jacobian (:func:`otresefa.jacobian`) or several (their Gram
            matrices are averaged): a list, or a stacked ``[N, S, S, dim]``; numpy or torch (see
            :func:`~otresefa.jacobian.as_jacobian_list`).  May be ``None`` for the global baselines
            (``sefa``, ``ganspace``), which read the generator instead and ignore the region.
        region: a :class:`~otresefa.regions.Region` or anything :func:`~otresefa.regions.resolve_region`
            accepts (preset name, ``"box:r,c,h,w"``, mask file, a numpy/torch mask ``[H, W]``, ...),
            resized to the Jacobians' size.
        method: a registered method name (``otresefa.methods.available_methods()``).
        seed: seeds every random choice of the method.
        generator: needed by ``sefa`` and ``ganspace``; otherwise recorded as the checkpoint id.
        metadata: extra provenance (e.g. the latent's seed and truncation) stored with the result.
        **options: the method's options (``otresefa.methods.method_options(method)``).
    Returns:
        :class:`~otresefa.directions.Directions` ``[k, dim]`` with scores and full metadata.
    """
    needs = method_needs(method)
    known = method_options(method)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for method {method!r}; valid options: {', '.join(sorted(known)) or '(none)'}")
    if needs == "generator" and generator is None:
        raise ValueError(f"method {method!r} needs the generator: pass generator=G")
    items = None if jacobians is None else as_jacobian_list(jacobians)
    if items is None and needs == "grams":
        raise ValueError(f"method {method!r} needs Jacobians: compute them with otresefa.jacobian(G, w)")
    if items is not None:
        region = resolve_region(region, items[0].shape[0])
        gram_fg, gram_bg = average_grams(items, region)
    else:
        # The global baselines ignore the Grams; zero matrices of the right size keep one problem type.
        region = resolve_region(region, 64) if region is not None else None
        gram_fg = gram_bg = torch.zeros(generator.w_dim, generator.w_dim, dtype=torch.float64)
    problem = RegionProblem(gram_fg, gram_bg, generator=generator)
    result = run_method(method, problem, num_directions=num_directions, seed=seed, **options)
    provenance = {
        "method": method,
        "options": {**known, **options},
        "num_directions": num_directions,
        "seed": seed,
        "region": None if region is None else region.to_json(),
        "checkpoint": None if generator is None else generator_fingerprint(generator),
        "num_jacobians": 0 if items is None else len(items),
        "jacobian_size": None if items is None else list(items[0].shape),
        "library_version": __version__,
        **(metadata or {}),
    }
    return Directions.from_result(result, **provenance)
