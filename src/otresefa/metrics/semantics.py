"""Semantics of an edit: did it change the intended attribute, and only it?

These metrics read attributes and parts off images with a domain's perception networks (on the
built-in face domain: ``otresefa.synthfaces.perception.estimate_attributes`` and ``segment``); they
take the estimates or part maps as tensors, so any estimator or segmenter can be used.

With ``a(x)`` the estimated attributes ``[A]`` of image ``x`` and ``x'`` its edit by strength ``alpha``:

- :func:`attribute_shift`  ``a(x') - a(x)`` per image ``[N, A]``;
- :func:`target_change_per_alpha`  mean over images and over the target attributes ``T`` of
  ``(a_t(x') - a_t(x)) / alpha``: signed, so it is positive when the edit moves the targets the
  way ``alpha``'s sign asks;
- :func:`attribute_leakage`  mean over images of ``|a_j(x') - a_j(x)|`` for every attribute ``j``
  outside ``T`` (``[A]``, NaN for the targets), and its mean over those attributes;
- :func:`part_area_change`  ``(|P(x')| - |P(x)|) / (H W)``: the change of the image share covered
  by the parts ``P`` (for opening a mouth: the teeth, tongue and cavity that appear).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["attribute_shift", "target_change_per_alpha", "attribute_leakage", "leakage_summary",
           "part_area", "part_area_change", "attribute_columns"]


def attribute_columns(names: Sequence[str], attribute_names: Sequence[str]) -> list[int]:
    """Columns of ``names`` in attribute tensors whose columns are ``attribute_names``."""
    columns = []
    for name in names:
        if name not in attribute_names:
            raise ValueError(f"unknown attribute {name!r}; known attributes: {', '.join(attribute_names)}")
        columns.append(list(attribute_names).index(name))
    if not columns:
        raise ValueError("no target attribute given")
    return columns


def attribute_shift(original: torch.Tensor, edited: torch.Tensor) -> torch.Tensor:
    """``edited - original`` of attribute estimates ``[N, A]`` (float64)."""
    original = torch.as_tensor(original, dtype=torch.float64)
    edited = torch.as_tensor(edited, dtype=torch.float64)
    if original.ndim != 2 or original.shape != edited.shape:
        raise ValueError(f"expected two attribute tensors [N, A] of one shape, got {list(original.shape)} "
                         f"and {list(edited.shape)}")
    return edited - original


def target_change_per_alpha(shift: torch.Tensor, alpha: float, targets: Sequence[int]) -> float:
    """``mean_{n, t in T} shift[n, t] / alpha``: the targets' change per unit of signed strength.

    ``shift`` is :func:`attribute_shift` ``[N, A]``; ``targets`` are columns.
    """
    if not alpha or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a non-zero finite number, got {alpha!r}")
    return float(shift[:, list(targets)].mean()) / alpha


def attribute_leakage(shift: torch.Tensor, targets: Sequence[int], valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean ``|shift|`` per attribute over the images ``[A]``; NaN for the target columns.

    ``valid`` (bool ``[N, A]``, optional) leaves out entries whose attribute cannot be read in that
    image (on the built-in domain: ``glasses_frame`` of a face without glasses); an attribute valid
    in no image is NaN.
    """
    magnitude = shift.abs()  # [N, A]
    weight = torch.ones_like(magnitude) if valid is None else valid.to(magnitude)  # [N, A]
    counts = weight.sum(0)  # [A]
    leakage = (magnitude * weight).sum(0) / counts  # [A], NaN where counts == 0
    leakage[list(targets)] = float("nan")
    return leakage


def leakage_summary(leakage: torch.Tensor, attribute_names: Sequence[str]) -> dict:
    """``{"mean": mean over the non-target attributes, "max": largest, "max_attribute": its name}``."""
    known = ~torch.isnan(leakage)  # [A]
    if not known.any():
        return {"mean": float("nan"), "max": float("nan"), "max_attribute": None}
    values = torch.where(known, leakage, torch.full_like(leakage, -1.0))
    worst = int(values.argmax())
    return {"mean": float(leakage[known].mean()), "max": float(leakage[worst]), "max_attribute": attribute_names[worst]}


def part_area(part_maps: torch.Tensor, labels: Sequence[int]) -> torch.Tensor:
    """Share of each image ``[N]`` covered by the parts ``labels`` of ``part_maps`` ``Long[N, H, W]``."""
    part_maps = torch.as_tensor(part_maps)
    if part_maps.ndim != 3:
        raise ValueError(f"expected part maps [N, H, W], got shape {list(part_maps.shape)}")
    inside = torch.isin(part_maps, torch.as_tensor(list(labels), dtype=part_maps.dtype))  # [N, H, W]
    return inside.double().mean((-2, -1))


def part_area_change(original_parts: torch.Tensor, edited_parts: torch.Tensor, labels: Sequence[int]) -> torch.Tensor:
    """``(|P(x')| - |P(x)|) / (H W)`` per image ``[N]``: the image share the parts ``labels`` gain."""
    if tuple(original_parts.shape) != tuple(edited_parts.shape):
        raise ValueError(f"part maps differ in shape: {list(original_parts.shape)} and {list(edited_parts.shape)}")
    return part_area(edited_parts, labels) - part_area(original_parts, labels)
