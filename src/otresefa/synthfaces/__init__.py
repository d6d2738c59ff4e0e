"""Synthetic face domain: attribute specification, sampling and a procedural renderer.

The project cannot download FFHQ or pretrained models, so it trains on renders of
aligned, frontal, cartoon-like faces whose attributes and part maps are exact
ground truth.
"""

from .attributes import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    NUM_ATTRIBUTES,
    AttributeSpec,
    attribute_index,
    attribute_visibility,
    sample_attributes,
    validate_attributes,
)
from .renderer import MIN_SIZE, PART_NAMES, RenderResult, gallery, part_index, render, render_seed, sweep

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_NAMES",
    "NUM_ATTRIBUTES",
    "AttributeSpec",
    "attribute_index",
    "attribute_visibility",
    "sample_attributes",
    "validate_attributes",
    "MIN_SIZE",
    "PART_NAMES",
    "RenderResult",
    "gallery",
    "part_index",
    "render",
    "render_seed",
    "sweep",
]
