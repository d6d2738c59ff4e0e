"""Attributes of the synthetic faces: their specification, sampling and visibility.

Every attribute is a float in [0, 1]. The renderer maps each one to a single,
distinct visual effect (see ``description``), so the attribute vector of a face
is the exact ground truth of what the image shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

CONTINUOUS = "continuous"
BINARY = "binary"

GLASSES_PRESENT_THRESHOLD = 0.5
"""A face wears glasses when its ``glasses`` value is at least this."""

GLASSES_PROBABILITY = 0.25
"""Fraction of sampled faces that wear glasses."""

MOUTH_CLOSED_PROBABILITY = 0.4
"""Fraction of sampled faces whose mouth is closed or barely open."""

MOUTH_CLOSED_MAX_OPEN = 0.05
"""The ``mouth_open`` values of the closed fraction are uniform on [0, this]."""


@dataclass(frozen=True)
class AttributeSpec:
    """One normalised face attribute.

    Attributes:
        name: unique identifier, also the column name in attribute tensors.
        group: the face region or aspect it belongs to (global, hair, eyes, ...).
        description: what the value changes in the image, from 0 to 1.
        kind: ``"continuous"`` (uniform on [0, 1]) or ``"binary"`` (exactly 0 or 1).
    """

    name: str
    group: str
    description: str
    kind: str = CONTINUOUS


ATTRIBUTES: tuple[AttributeSpec, ...] = (
    AttributeSpec("bg_hue", "global", "background hue, red -> yellow -> green -> blue -> violet (not circular)"),
    AttributeSpec("bg_brightness", "global", "mean background brightness, dark -> light"),
    AttributeSpec("bg_gradient", "global", "strength of a diagonal light-to-dark background ramp, flat -> strong"),
    AttributeSpec("skin_tone", "global", "skin colour, very light -> dark"),
    AttributeSpec("face_width", "global", "half-width of the face and neck, narrow -> wide"),
    AttributeSpec("head_shift_x", "global", "horizontal position of the whole person, left -> right"),
    AttributeSpec("head_shift_y", "global", "vertical position of the whole person, up -> down"),
    AttributeSpec("head_roll", "global", "in-plane head tilt about the neck, counter-clockwise -> clockwise"),
    AttributeSpec("light_direction", "global", "side of the face that is lit, left -> right"),
    AttributeSpec("hair_color", "hair", "hair and brow colour, black-brown -> brown -> blond -> platinum grey"),
    AttributeSpec("hair_length", "hair", "how far the hair falls, short crop at ear level -> shoulder length"),
    AttributeSpec("hair_volume", "hair", "size of the hair mass around and above the head, flat -> voluminous"),
    AttributeSpec("eye_size", "eyes", "width and opening of both eyes, small -> large (never shut)"),
    AttributeSpec("gaze_x", "eyes", "horizontal iris/pupil offset, looking left -> right"),
    AttributeSpec("gaze_y", "eyes", "vertical iris/pupil offset, looking up -> down"),
    AttributeSpec("iris_color", "eyes", "iris colour, dark brown -> hazel -> green -> blue"),
    AttributeSpec("brow_height", "brows", "height of the eyebrows above the eyes, low -> high"),
    AttributeSpec("brow_thickness", "brows", "thickness of the eyebrow strokes, thin -> thick"),
    AttributeSpec("nose_length", "nose", "vertical position of the nose tip and nostrils, short -> long"),
    AttributeSpec("nose_width", "nose", "width of the nose tip, wings and nostrils, narrow -> wide"),
    AttributeSpec("mouth_width", "mouth", "distance between the mouth corners, narrow -> wide"),
    AttributeSpec("smile", "mouth", "mouth curvature, 0 = frown, 0.5 = neutral, 1 = smile"),
    AttributeSpec("lip_color", "mouth", "lip colour, pale pink -> deep red"),
    AttributeSpec(
        "mouth_open",
        "mouth",
        "mouth openness: 0 = closed lips; growing values open a dark cavity with upper teeth and a "
        "tongue, and lower the lower lip and the chin",
    ),
    AttributeSpec("glasses", "glasses", "presence of glasses (two rounded rims, bridge and arms)", BINARY),
    AttributeSpec("glasses_frame", "glasses", "thickness of the glasses frame, thin -> thick (only with glasses)"),
    AttributeSpec(
        "wrinkles", "age", "intensity of forehead lines, nasolabial folds and eye-corner lines, none -> strong"
    ),
)

ATTRIBUTE_NAMES: tuple[str, ...] = tuple(spec.name for spec in ATTRIBUTES)
NUM_ATTRIBUTES = len(ATTRIBUTES)
_INDEX_BY_NAME = {name: index for index, name in enumerate(ATTRIBUTE_NAMES)}


def attribute_index(name: str) -> int:
    """Column of attribute ``name`` in attribute tensors; ``ValueError`` if unknown."""
    if name not in _INDEX_BY_NAME:
        raise ValueError(f"unknown attribute {name!r}; expected one of {ATTRIBUTE_NAMES}")
    return _INDEX_BY_NAME[name]


def validate_attributes(attrs: Tensor) -> Tensor:
    """Check an attribute batch and return it as a contiguous float32 tensor ``[n, A]``.

    Raises:
        ValueError: if the tensor is not 2-D with ``NUM_ATTRIBUTES`` columns, or holds
            NaN/inf or values outside [0, 1].
    """
    attrs = torch.as_tensor(attrs)
    if attrs.dim() != 2 or attrs.shape[1] != NUM_ATTRIBUTES:
        raise ValueError(
            f"expected attributes of shape [n, {NUM_ATTRIBUTES}], got {tuple(attrs.shape)}"
        )
    attrs = attrs.to(torch.float32).contiguous()  # [n, A]
    if not torch.isfinite(attrs).all():
        raise ValueError("attributes contain NaN or infinite values")
    if attrs.numel() and (attrs.min() < 0 or attrs.max() > 1):
        raise ValueError(
            f"attribute values must lie in [0, 1], got range "
            f"[{attrs.min().item():.4g}, {attrs.max().item():.4g}]"
        )
    return attrs


def sample_attributes(n: int, seed: int) -> Tensor:
    """Draw ``n`` independent attribute vectors, deterministically from ``seed``.

    Continuous attributes are uniform on [0, 1], except ``mouth_open``: a fraction
    ``MOUTH_CLOSED_PROBABILITY`` of the faces is closed-ish (uniform on
    [0, ``MOUTH_CLOSED_MAX_OPEN``]), the rest uniform on [0, 1]. ``glasses`` is
    Bernoulli(``GLASSES_PROBABILITY``) as exactly 0.0 or 1.0.

    Row ``i`` depends only on ``(seed, i)``, so ``sample_attributes(m, s)`` is a
    prefix of ``sample_attributes(n, s)`` for ``m <= n``.

    Returns:
        float32 tensor ``[n, NUM_ATTRIBUTES]``.
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = np.random.default_rng(seed)
    # One extra uniform per row decides whether the mouth is closed; drawing all
    # numbers of a row together keeps rows independent of n.
    uniforms = rng.random((n, NUM_ATTRIBUTES + 1))  # [n, A + 1]
    values = uniforms[:, :NUM_ATTRIBUTES].copy()  # [n, A]

    glasses = attribute_index("glasses")
    values[:, glasses] = (values[:, glasses] < GLASSES_PROBABILITY).astype(np.float64)

    mouth_open = attribute_index("mouth_open")
    closed = uniforms[:, NUM_ATTRIBUTES] < MOUTH_CLOSED_PROBABILITY  # [n]
    values[closed, mouth_open] *= MOUTH_CLOSED_MAX_OPEN
    return torch.from_numpy(values).to(torch.float32)


def attribute_visibility(attrs: Tensor) -> Tensor:
    """Whether each attribute can be read off the rendered image.

    Only ``glasses_frame`` can be hidden: it is visible exactly when the face wears
    glasses. Every other attribute has a visible effect over its whole range.

    Returns:
        bool tensor ``[n, NUM_ATTRIBUTES]``.
    """
    attrs = validate_attributes(attrs)  # [n, A]
    visible = torch.ones_like(attrs, dtype=torch.bool)  # [n, A]
    wears_glasses = attrs[:, attribute_index("glasses")] >= GLASSES_PRESENT_THRESHOLD  # [n]
    visible[:, attribute_index("glasses_frame")] = wears_glasses
    return visible
