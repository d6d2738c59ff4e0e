"""Locality of an edit: how much of the change stays inside the region, and how strong it is there.

All functions take images ``[..., C, H, W]`` (any range; the generator's is about [-1, 1]) and a
region (a :class:`~otresefa.regions.Region` or a bool mask ``[h, w]``, resized to ``H x W`` by
nearest neighbour), and return one value per leading index (a 0-dim tensor for one image pair).
With ``dx = edited - original`` and ``M`` the region's 0/1 mask:

- :func:`change_outside_fraction`  ``||dx * (1 - M)||^2 / ||dx||^2``  (0 = confined to the region,
  1 = entirely outside it);
- :func:`rms_change_inside`  ``sqrt(||dx * M||^2 / (C * |M|))``, the RMS pixel change inside the region;
- :func:`rms_change_inside_per_alpha`  the same divided by ``|alpha|``.

Comparing outside fractions of two methods means something only at the same amount of change
inside the region (a weaker edit changes less everywhere): :func:`matched_strength` finds the
strength at which an edit reaches a target RMS change inside the region.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from otresefa.regions import Region

__all__ = ["change_outside_fraction", "rms_change_inside", "rms_change_inside_per_alpha", "matched_strength",
           "region_mask"]


def region_mask(region: Region | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``region`` (a Region or a bool mask) as a bool mask ``[H, W]`` of ``size`` (nearest resize)."""
    if not isinstance(region, Region):
        region = Region(torch.as_tensor(region))
    return region.resized(size).mask


def _change(original: torch.Tensor, edited: torch.Tensor) -> torch.Tensor:
    original = torch.as_tensor(original, dtype=torch.float64)
    edited = torch.as_tensor(edited, dtype=torch.float64)
    if original.ndim < 3 or edited.shape[-3:] != original.shape[-3:]:
        raise ValueError(f"expected images [..., C, H, W] of one size, got {list(original.shape)} and {list(edited.shape)}")
    return edited - original  # broadcast: one original may serve a batch of edits


def change_outside_fraction(original: torch.Tensor, edited: torch.Tensor, mask: Region | torch.Tensor) -> torch.Tensor:
    """Share of an edit's change that falls outside the region: ``||dx * (1 - M)||^2 / ||dx||^2``.

    ``original``/``edited`` are ``[..., C, H, W]``; ``mask`` a Region or bool ``[h, w]`` (resized to
    ``H x W`` by nearest neighbour).  Returns the leading dims (a 0-dim tensor for one image), 0 for
    an edit confined to the region, 1 for one entirely outside it, NaN when nothing changed.
    """
    dx = _change(original, edited)  # [..., C, H, W]
    outside = (~region_mask(mask, tuple(dx.shape[-2:]))).to(dx)  # [H, W]
    total = dx.square().sum((-3, -2, -1))
    return (dx * outside).square().sum((-3, -2, -1)) / total


def rms_change_inside(original: torch.Tensor, edited: torch.Tensor, mask: Region | torch.Tensor) -> torch.Tensor:
    """RMS pixel change inside the region: ``sqrt(||dx * M||^2 / (C * |M|))``, in image units.

    The normalisation by the region's size (``|M|`` pixels, ``C`` channels) makes the value
    comparable across regions of different sizes and across image resolutions.
    """
    dx = _change(original, edited)  # [..., C, H, W]
    inside = region_mask(mask, tuple(dx.shape[-2:])).to(dx)  # [H, W]
    count = float(inside.sum()) * dx.shape[-3]
    if count == 0:
        raise ValueError("the region is empty: the mask selects no pixel")
    return ((dx * inside).square().sum((-3, -2, -1)) / count).sqrt()


def rms_change_inside_per_alpha(original: torch.Tensor, edited: torch.Tensor, mask: Region | torch.Tensor,
                                alpha: float) -> torch.Tensor:
    """:func:`rms_change_inside` ``/ |alpha|``: how much the region changes per unit of edit strength."""
    if not alpha or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a non-zero finite number, got {alpha!r}")
    return rms_change_inside(original, edited, mask) / abs(alpha)


def matched_strength(change_at: Callable[[float], float], target: float, first_guess: float = 1.0,
                     rel_tol: float = 0.02, max_evaluations: int = 24, max_strength: float = 1e3) -> tuple[float, float]:
    """The strength ``a > 0`` at which ``change_at(a)`` (e.g. the mean :func:`rms_change_inside` of
    edits by ``a``) equals ``target``, within ``rel_tol``.

    ``change_at`` is assumed to grow with ``a`` (it does for an edit's change near the original).
    The root is bracketed by doubling or halving from ``first_guess``, then found by the secant rule
    on ``log a`` against ``log change`` (exact for a power law ``c a^p``, so linear and mildly curved
    responses converge in 2-4 evaluations), safeguarded by bisection inside the bracket.

    Returns:
        ``(a, change_at(a))`` of the best evaluation.
    Raises:
        ValueError: when ``target`` is not reached for any ``a <= max_strength`` (the direction does
        not change the region, e.g. a direction that only moves the background).
    """
    if not target > 0 or not math.isfinite(target):
        raise ValueError(f"the target change must be a positive number, got {target!r}")
    if not first_guess > 0:
        raise ValueError(f"first_guess must be positive, got {first_guess!r}")
    seen: dict[float, float] = {}

    def evaluate(strength: float) -> float:
        value = float(change_at(strength))
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"the change at strength {strength:g} is {value}; expected a non-negative number")
        seen[strength] = value
        return value

    def best() -> tuple[float, float]:
        strength = min(seen, key=lambda a: abs(math.log(max(seen[a], 1e-300) / target)))
        return strength, seen[strength]

    def close_enough(value: float) -> bool:
        return abs(value - target) <= rel_tol * target

    low, high = None, None  # strengths whose change is below / above the target
    strength = first_guess
    while len(seen) < max_evaluations:
        value = evaluate(strength)
        if close_enough(value):
            return strength, value
        if value < target:
            low = strength if low is None else max(low, strength)
        else:
            high = strength if high is None else min(high, strength)
        if low is not None and high is not None:
            break
        if high is None and strength >= max_strength:
            raise ValueError(f"the edit never reaches the target change {target:g} inside the region: at strength "
                             f"{strength:g} it is {value:.3g} (the direction barely changes the region)")
        strength = min(strength * 2, max_strength) if high is None else strength / 2
    while len(seen) < max_evaluations and low is not None and high is not None:
        f_low, f_high = math.log(max(seen[low], 1e-300) / target), math.log(seen[high] / target)
        log_low, log_high = math.log(low), math.log(high)
        guess = log_low - f_low * (log_high - log_low) / (f_high - f_low) if f_high != f_low else None
        middle = (log_low + log_high) / 2
        # the secant step is kept only where it lands well inside the bracket
        log_next = guess if guess is not None and abs(guess - middle) < 0.45 * (log_high - log_low) else middle
        strength = math.exp(log_next)
        value = evaluate(strength)
        if close_enough(value):
            return strength, value
        if value < target:
            low = strength
        else:
            high = strength
    return best()
