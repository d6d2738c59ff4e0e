"""``discover``: from Jacobians (or their region Grams) and a region to ranked editing directions.

This is the library's one entry point to every discovery method (:mod:`otresefa.methods`): it turns
the region into a mask at the Jacobians' size, forms the normalised Gram matrices
``A_F = J_f^T J_f / N_f`` and ``A_B = J_b^T J_b / N_b`` (eqs. 5-8, :mod:`otresefa.grams`), averages
them over several Jacobians when given (directions that hold for many samples, not one), runs the
method and records everything that produced the result in ``Directions.metadata``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from otresefa._version import __version__
from otresefa.directions import Directions
from otresefa.grams import RegionGrams, average_grams
from otresefa.jacobian import as_jacobian_list, generator_fingerprint
from otresefa.methods import DEFAULT_METHOD, method_info, run_method
from otresefa.methods.base import RegionProblem
from otresefa.models import Generator
from otresefa.regions import Region, resolve_region


def _regions_at(region: Any, count: int, size: int) -> Region | list[Region]:
    """One region for all Jacobians, or a list of one :class:`Region` per Jacobian, at ``size``."""
    if region is None:
        raise ValueError("discover needs a region: a preset name, 'box:row,col,height,width', a mask or a Region")
    if isinstance(region, (list, tuple)) and len(region) == count > 1 and all(isinstance(r, Region) for r in region):
        return [r.resized(size).check_usable() for r in region]
    return resolve_region(region, size)


def discover(
    jacobians: torch.Tensor | Sequence[torch.Tensor] | RegionGrams | None,
    region: Any = None,
    method: str = DEFAULT_METHOD,
    num_directions: int = 1,
    seed: int = 0,
    *,
    generator: Generator | None = None,
    metadata: dict | None = None,
    **options: Any,
) -> Directions:
    """Find ``num_directions`` latent directions that change ``region`` and keep the rest.

    Parameters
    ----------
    jacobians : Tensor [S, S, d], sequence of them, RegionGrams, or None
        One Jacobian (:func:`otresefa.jacobian`) or several (their Gram matrices are averaged): a
        list, or a stacked ``[N, S, S, d]``, numpy or torch (see
        :func:`~otresefa.jacobian.as_jacobian_list`); or
        Gram matrices already averaged over samples (:class:`~otresefa.grams.RegionGrams`; then
        ``region`` is not needed).  ``None`` for the methods that read the generator instead and
        ignore the region (``sefa``, ``ganspace``).
    region : Region, spec, or list of Region
        A :class:`~otresefa.regions.Region` or anything :func:`~otresefa.regions.resolve_region`
        accepts (preset name, ``"box:r,c,h,w"``, mask file, a numpy/torch mask ``[H, W]``, ...),
        resized to the Jacobians' size;
        or one :class:`Region` per Jacobian (each sample its own mask).
    method : str
        A registered method name (``otresefa.methods.available_methods()``).
    num_directions : int
        How many ranked directions to return.
    seed : int
        Seeds every random choice of the method.
    generator : Generator, optional
        Needed by ``sefa`` and ``ganspace``; otherwise recorded as the checkpoint id.
    metadata : dict, optional
        Extra provenance (e.g. the latent's seed and truncation) stored with the result.
    **options
        The method's options (``otresefa.methods.method_options(method)``), values or text.

    Returns
    -------
    Directions
        ``[k, d]`` unit rows with scores and full metadata.

    Raises
    ------
    ValueError
        For an unknown method or option, a bad value, a region that does not fit, or missing inputs.
    """
    info = method_info(method)
    parsed = info.parse_options(options)  # before any work: a typo fails at once
    if "generator" in info.needs and generator is None:
        raise ValueError(f"method {method!r} needs the generator: pass generator=G")
    if isinstance(jacobians, RegionGrams):
        grams, jacobian_size = jacobians, None
    elif jacobians is not None:
        items = as_jacobian_list(jacobians)
        jacobian_size = list(items[0].shape)
        grams = average_grams(items, _regions_at(region, len(items), items[0].shape[0]))
    elif "jacobians" in info.needs:
        raise ValueError(f"method {method!r} needs Jacobians: compute them with otresefa.jacobian(G, w)")
    else:
        # The global baselines ignore the Grams; zero matrices of the right size keep one problem type.
        zero = torch.zeros(generator.w_dim, generator.w_dim, dtype=torch.float64)
        recorded = None if region is None else resolve_region(region, generator.img_resolution).to_json()
        grams, jacobian_size = RegionGrams(zero, zero, 1, recorded), None
    problem = RegionProblem(grams.gram_fg, grams.gram_bg, generator=generator)
    result = run_method(method, problem, num_directions=num_directions, seed=seed, **parsed)
    provenance = {
        "method": method,
        "options": {**info.defaults, **parsed},
        "num_directions": num_directions,
        "seed": seed,
        "region": grams.region,
        "checkpoint": None if generator is None else generator_fingerprint(generator),
        "num_jacobians": 0 if jacobians is None else grams.count,
        "jacobian_size": jacobian_size,
        "library_version": __version__,
        **(metadata or {}),
    }
    return Directions.from_result(result, **provenance)
