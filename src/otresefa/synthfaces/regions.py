"""Named regions of the synthetic face domain, taken from the image at hand.

On FFHQ a region name means a fixed box (``otresefa.regions.FFHQ_PRESETS``); on the built-in face
domain it means the segmented parts of the image being edited (faces move, widen and tilt), grown by
a small margin so that, like ReSeFa's boxes, a region includes its immediate surroundings: a mouth
that opens moves the lips' outline and the chin.

``left_eye`` is the eye on the image's left (the subject's right eye), as in ReSeFa's FFHQ presets;
the two eyes are told apart by the face's vertical centre line at eye height.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from otresefa.regions import Region, parts_region

from .perception import segment
from .renderer import PART_NAMES, part_index

SYNTHFACE_REGIONS: dict[str, tuple[str, ...]] = {
    "mouth": ("mouth", "mouth_cavity", "teeth", "tongue"),
    "eyes": ("eyes",),
    "left_eye": ("eyes",),
    "right_eye": ("eyes",),
    "nose": ("nose",),
    "eyebrow": ("brows",),
    "brows": ("brows",),
    "hair": ("hair",),
    "glasses": ("glasses",),
    "face": ("skin",),
    "neck": ("neck",),
    "clothes": ("clothes",),
}
"""Region name -> the ``PART_NAMES`` it is made of."""

EYE_SIDES = {"left_eye": "left", "right_eye": "right"}
"""Which half of the image, split at the face's centre line, each single eye lies in."""

MIN_SEGMENTED_FRACTION = 1 / 1024
"""A part segmented in an image counts as present only from this fraction of the image's pixels on
(4 px at 64x64): the segmenter scatters the odd stray pixel of a part that is not there (e.g. one
'glasses' pixel on a face without glasses), which must not become a one-pixel region."""

DILATION_FRACTION = 1 / 32
"""Default margin around a region, as a fraction of the image size (2 px at 64x64)."""


def default_dilation(size: int) -> int:
    """The default margin in pixels for an image of side ``size``."""
    return max(1, round(size * DILATION_FRACTION))


def dilate_mask(mask: Tensor, margin: int) -> Tensor:
    """Grow ``mask [H, W]`` by ``margin`` pixels in every direction (a square structuring element)."""
    if margin == 0:
        return mask
    grown = F.max_pool2d(mask[None, None].float(), kernel_size=2 * margin + 1, stride=1, padding=margin)
    return grown[0, 0] > 0.5  # [H, W]


def face_centre_column(eyes: Tensor) -> float:
    """Column (pixel-centre coordinates) of the face's vertical centre line: the mean column of the
    eye pixels ``eyes [H, W]``, which lies midway between the two symmetric eyes."""
    columns = torch.nonzero(eyes, as_tuple=True)[1].double() + 0.5  # [n]
    return float(columns.mean())


def half_plane(size: tuple[int, int], centre: float, side: str) -> Tensor:
    """Pixels ``[H, W]`` whose centre lies left (or right) of the vertical line at column ``centre``."""
    columns = torch.arange(size[1], dtype=torch.float64) + 0.5  # [W]
    on_side = columns < centre if side == "left" else columns >= centre
    return on_side[None, :].expand(size)  # [H, W]


def part_map_of(image_or_parts: Tensor) -> Tensor:
    """The part map ``Long[S, S]`` of an image ``[3, S, S]`` (segmented) or a part map ``[S, S]`` (as is).

    Raises:
        ValueError: for other shapes, or a part map with labels outside ``PART_NAMES``.
    """
    if not isinstance(image_or_parts, Tensor):
        raise ValueError(f"expected an image [3, S, S] or a part map [S, S] tensor, got {type(image_or_parts).__name__}")
    if image_or_parts.dim() == 3:
        return segment(image_or_parts[None])[0]  # [S, S]
    if image_or_parts.dim() == 2:
        if image_or_parts.is_floating_point():
            raise ValueError("a part map [S, S] holds integer labels; got a floating-point tensor")
        if image_or_parts.numel() and (image_or_parts.min() < 0 or image_or_parts.max() >= len(PART_NAMES)):
            raise ValueError(f"part map labels must lie in [0, {len(PART_NAMES) - 1}] (PART_NAMES)")
        return image_or_parts.long()
    raise ValueError(f"expected an image [3, S, S] or a part map [S, S], got shape {list(image_or_parts.shape)}")


def synthface_region(image_or_parts: Tensor, name: str, dilate: int | None = None) -> Region:
    """The region ``name`` (a key of ``SYNTHFACE_REGIONS``) of one face of the built-in domain.

    Args:
        image_or_parts: an image ``[3, S, S]`` in [-1, 1] (or uint8), segmented with the shipped
            segmenter, or a part map ``[S, S]`` of ``PART_NAMES`` labels (e.g. the renderer's).
        name: region name, e.g. ``"mouth"``, ``"left_eye"`` (the eye on the image's left), ``"hair"``.
        dilate: margin in pixels added around the parts; ``None`` = ``default_dilation(S)``
            (2 px at 64x64), 0 = the parts exactly. Single eyes never grow across the centre line.

    Returns:
        a :class:`Region` at ``S x S`` whose spec records the parts, labels and ``dilate``.

    Raises:
        ValueError: for an unknown name, a bad input, or when none of the region's parts is in this image.
    """
    if name not in SYNTHFACE_REGIONS:
        raise ValueError(f"unknown synthetic-face region {name!r}; known regions: {', '.join(SYNTHFACE_REGIONS)}")
    if dilate is not None and (isinstance(dilate, bool) or not isinstance(dilate, int) or dilate < 0):
        raise ValueError(f"dilate is a margin in pixels (an integer >= 0), got {dilate!r}")
    part_map = part_map_of(image_or_parts)  # [S, S]
    min_pixels = 1 if image_or_parts.dim() == 2 else max(1, round(part_map.numel() * MIN_SEGMENTED_FRACTION))
    margin = default_dilation(part_map.shape[-1]) if dilate is None else dilate
    parts = SYNTHFACE_REGIONS[name]
    region = parts_region(part_map, [part_index(p) for p in parts], name, PART_NAMES)
    _require_found(region.mask, name, parts, min_pixels)
    mask = region.mask  # [S, S]
    if name in EYE_SIDES:
        side = half_plane(mask.shape, face_centre_column(mask), EYE_SIDES[name])  # [S, S]
        mask = mask & side
        _require_found(mask, name, parts, min_pixels)
        mask = dilate_mask(mask, margin) & side
    else:
        mask = dilate_mask(mask, margin)
    return Region(mask, {**region.spec, "domain": "synthfaces", "dilate": margin})


def _require_found(mask: Tensor, name: str, parts: tuple[str, ...], min_pixels: int) -> None:
    found = int(mask.sum())
    if found < min_pixels:
        described = " / ".join(parts)
        raise ValueError(f"region {name!r}: the part {described!r} was not found in this image "
                         f"({found} pixel(s) labelled as it, fewer than {min_pixels})")
