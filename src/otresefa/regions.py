"""Image regions (the paper's foreground mask ``M``, eqs. 7-8) and how users name them.

A :class:`Region` is a boolean mask ``[H, W]`` (True = the part to edit) plus a JSON-serialisable
``spec`` saying how it was made, so that results on disk record their region.  Regions come from

- boxes in ReSeFa's ``[center_row, center_col, height, width]`` form, given for a reference image
  size (256 by default) and scaled to the size at hand;
- named presets for aligned FFHQ/MetFaces faces (ReSeFa's boxes, :data:`FFHQ_PRESETS`);
- mask image files (PNG, any size; non-zero = region; resized with nearest neighbour);
- mask arrays (numpy or torch ``[H, W]``, any square size): bool, integers (non-zero = region, as in
  a mask image) or floats (> 0.5 = region: a soft mask or a probability map, thresholded);
- part maps (e.g. the built-in face domain's segmenter output) and a set of part labels;
- union ``a | b``, intersection ``a & b`` and difference ``a - b`` of other regions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from otresefa.parsing import parse_box

# ReSeFa's boxes for aligned FFHQ (also used for MetFaces), [center_row, center_col, height, width]
# in a 256x256 image.
FFHQ_PRESETS: dict[str, tuple[int, int, int, int]] = {
    "left_eye": (120, 95, 20, 38),
    "right_eye": (120, 159, 20, 38),
    "eyes": (120, 128, 20, 115),
    "nose": (142, 131, 40, 46),
    "mouth": (184, 127, 30, 70),
    "chin": (217, 130, 42, 110),
    "eyebrow": (126, 105, 15, 118),
}
REFERENCE_SIZE = 256


def mask_from_array(values: Any) -> torch.Tensor:
    """A numpy array or tensor ``[H, W]`` -> bool mask: bool as is, integers non-zero, floats > 0.5.

    Raises:
        ValueError: not 2-D, empty, not numbers, or NaN.
    """
    try:
        mask = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    except (TypeError, RuntimeError, ValueError):
        raise ValueError(f"cannot make a region mask from {type(values).__name__}") from None
    if mask.ndim != 2 or mask.numel() == 0:
        raise ValueError(f"a region mask is [H, W], got shape {list(mask.shape)}")
    if mask.dtype == torch.bool:
        return mask.cpu()
    if mask.is_floating_point():
        if torch.isnan(mask).any():
            raise ValueError("the region mask contains NaN")
        return (mask > 0.5).cpu()
    if mask.is_complex():
        raise ValueError(f"a region mask holds bool, integer or float values, got {mask.dtype}")
    return (mask != 0).cpu()


@dataclass(frozen=True)
class Region:
    """A foreground mask ``[H, W]`` and the description it was made from.

    ``mask`` may be given as a numpy array or tensor of bool, integers or floats
    (:func:`mask_from_array`); it is stored as a bool tensor on the CPU.
    """

    mask: torch.Tensor
    spec: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "mask", mask_from_array(self.mask))

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.mask.shape)

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or self.spec.get("kind", "region"))

    @property
    def fraction(self) -> float:
        """Share of the image inside the region."""
        return float(self.mask.float().mean())

    def check_usable(self) -> "Region":
        """Raise if the region or its background is empty (no region method can work then)."""
        if not self.mask.any():
            raise ValueError(f"region '{self.name}' is empty at {self.size[0]}x{self.size[1]}: the mask selects no pixel")
        if self.mask.all():
            raise ValueError(f"region '{self.name}' covers the whole image: there is no background to keep unchanged")
        return self

    def resized(self, size: int | Sequence[int]) -> "Region":
        """Nearest-neighbour resize to ``size`` (int or (H, W)).

        Raises
        ------
        ValueError
            When the two shapes have different aspect ratios: the mask would be stretched.
        """
        size = (size, size) if isinstance(size, int) else tuple(size)
        if size == self.size:
            return self
        if self.size[0] * size[1] != self.size[1] * size[0]:
            raise ValueError(f"region '{self.name}' is {self.size[0]}x{self.size[1]} pixels but the frame is "
                             f"{size[0]}x{size[1]}: it would be stretched; give a mask of the frame's shape")
        mask = F.interpolate(self.mask[None, None].float(), size=size, mode="nearest")[0, 0] > 0.5
        return Region(mask, self.spec)

    def _combine(self, other: "Region", op: str) -> "Region":
        if not isinstance(other, Region):
            return NotImplemented
        if other.size != self.size:
            other = other.resized(self.size)
        mask = {"union": self.mask | other.mask, "intersection": self.mask & other.mask,
                "difference": self.mask & ~other.mask}[op]
        symbol = {"union": "+", "intersection": "&", "difference": "-"}[op]
        return Region(mask, {"kind": op, "name": f"{self.name}{symbol}{other.name}", "of": [self.spec, other.spec]})

    def to_json(self) -> dict:
        """``spec`` plus the exact mask, run-length encoded (row-major runs of alternating
        False/True pixels, starting with False), so that results on disk carry their region."""
        flat = self.mask.reshape(-1).to(torch.int8)
        change = torch.nonzero(flat[1:] != flat[:-1]).flatten() + 1  # run starts after the first
        bounds = [0] + change.tolist() + [flat.numel()]
        runs = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
        if flat.numel() and flat[0]:
            runs = [0] + runs
        return {**self.spec, "mask_size": list(self.size), "mask_runs": runs}

    @classmethod
    def from_json(cls, data: dict) -> "Region":
        """Inverse of :meth:`to_json`."""
        try:
            height, width = data["mask_size"]
            runs = data["mask_runs"]
        except (KeyError, TypeError, ValueError):
            raise ValueError("region metadata has no mask ('mask_size' and 'mask_runs')") from None
        if sum(runs) != height * width:
            raise ValueError(f"region mask runs cover {sum(runs)} pixels, expected {height}x{width}")
        values = torch.arange(len(runs)) % 2 == 1  # runs alternate False, True, ...
        mask = torch.repeat_interleave(values, torch.as_tensor(runs, dtype=torch.long))
        spec = {k: v for k, v in data.items() if k not in ("mask_size", "mask_runs")}
        return cls(mask.reshape(height, width), spec)

    def __or__(self, other: "Region") -> "Region":
        return self._combine(other, "union")

    def __and__(self, other: "Region") -> "Region":
        return self._combine(other, "intersection")

    def __sub__(self, other: "Region") -> "Region":
        return self._combine(other, "difference")


def box_region(box: Sequence[float], size: int, reference_size: int = REFERENCE_SIZE, name: str | None = None) -> Region:
    """A box ``[center_row, center_col, height, width]`` given at ``reference_size``, at ``size``.

    A pixel belongs to the box when its centre, in reference coordinates, lies inside
    ``[center - extent / 2, center + extent / 2)``; at the reference size this is ReSeFa's slicing.
    """
    if len(box) != 4:
        raise ValueError(f"a box is [center_row, center_col, height, width], got {list(box)}")
    center_row, center_col, height, width = (float(v) for v in box)
    if height <= 0 or width <= 0:
        raise ValueError(f"box height and width must be positive, got {list(box)}")
    top, bottom = center_row - height / 2, center_row + height / 2
    left, right = center_col - width / 2, center_col + width / 2
    if top < 0 or left < 0 or bottom > reference_size or right > reference_size:
        raise ValueError(f"box {[center_row, center_col, height, width]} (center_row, center_col, height, width) "
                         f"spans rows {top:g}-{bottom:g} and columns {left:g}-{right:g}, beyond the "
                         f"{reference_size}x{reference_size} frame it is given in")
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) * (reference_size / size)  # [size]
    rows = (centres >= center_row - height / 2) & (centres < center_row + height / 2)
    cols = (centres >= center_col - width / 2) & (centres < center_col + width / 2)
    spec = {"kind": "box", "name": name or "box", "box": [center_row, center_col, height, width],
            "reference_size": reference_size}
    return Region(rows[:, None] & cols[None, :], spec)


def preset_region(name: str, size: int, presets: dict[str, Sequence[float]] | None = None) -> Region:
    """A named preset box (default: ReSeFa's aligned-FFHQ boxes) at ``size``."""
    presets = FFHQ_PRESETS if presets is None else presets
    if name not in presets:
        raise ValueError(f"unknown region preset {name!r}; known presets: {', '.join(sorted(presets))}")
    region = box_region(presets[name], size, name=name)
    return Region(region.mask, {**region.spec, "kind": "preset"})


def mask_file_region(path: str | Path, size: int) -> Region:
    """A mask image (any size; non-zero pixels = region; alpha used when present), resized to ``size``."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    try:
        with Image.open(path) as image:
            array = np.asarray(image.getchannel("A") if "A" in image.getbands() else image.convert("L"))
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image file the mask reader understands") from None
    region = Region(torch.from_numpy(array > 0), {"kind": "file", "name": path.stem, "path": str(path)})
    return region.resized(size)


def array_region(values: Any, size: int) -> Region:
    """A mask array (numpy or torch ``[H, W]``, square: generator images are) resized to ``size``."""
    mask = mask_from_array(values)
    height, width = mask.shape
    if height != width:
        raise ValueError(f"the region mask is {height}x{width}, but the images are square: give a mask of the image's size")
    if not mask.any():
        raise ValueError(f"the region mask selects no pixel (all {height}x{width} values are 0/False)")
    region = Region(mask, {"kind": "mask", "name": "mask", "mask_size_given": [height, width]}).resized(size)
    if not region.mask.any():
        raise ValueError(f"the region mask's {int(mask.sum())} pixels at {height}x{width} vanish when resized to {size}x{size}")
    return region


def parts_region(part_map: torch.Tensor, labels: Iterable[int], name: str, part_names: Sequence[str] | None = None) -> Region:
    """Pixels of ``part_map [H, W]`` whose label is in ``labels`` (e.g. a segmenter's output)."""
    labels = sorted(int(v) for v in labels)
    mask = torch.isin(part_map, torch.tensor(labels, dtype=part_map.dtype))
    spec: dict[str, Any] = {"kind": "parts", "name": name, "labels": labels}
    if part_names is not None:
        spec["parts"] = [part_names[i] for i in labels]
    return Region(mask, spec)


def resolve_region(spec: Any, size: int, presets: dict[str, Sequence[float]] | None = None) -> Region:
    """Turn what a user typed or passed into a usable :class:`Region` at ``size``.

    ``spec`` may be a :class:`Region`, a preset name, ``"box:r,c,h,w"``, a mask file path, a mask
    array (numpy or torch ``[H, W]``, see :func:`mask_from_array`; square, resized to ``size``), a
    box sequence, ``"a+b"`` (union) / ``"a-b"`` (difference) of those, or a list (union).
    """
    if isinstance(spec, Region):
        region = spec.resized(size)
    elif isinstance(spec, (np.ndarray, torch.Tensor)):
        region = array_region(spec, size)
    elif isinstance(spec, (list, tuple)) and len(spec) == 4 and all(isinstance(v, (int, float)) for v in spec):
        region = box_region(spec, size)
    elif isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError("an empty list of regions selects nothing")
        parts = [resolve_region(s, size, presets) for s in spec]
        region = parts[0]
        for part in parts[1:]:
            region = region | part
    elif isinstance(spec, (str, Path)):
        region = _resolve_text(str(spec), size, presets)
    else:
        raise TypeError(f"cannot make a region from {type(spec).__name__}")
    return region.check_usable()


def _resolve_text(text: str, size: int, presets) -> Region:
    known = FFHQ_PRESETS if presets is None else presets
    if text.startswith("box:"):
        return box_region(parse_box(text), size)
    if text in known:
        return preset_region(text, size, known)
    if Path(text).suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp") or Path(text).is_file():
        return mask_file_region(text, size)
    for symbol, op in (("+", Region.__or__), ("-", Region.__sub__)):
        if symbol in text:
            left, right = text.split(symbol, 1)
            return op(_resolve_text(left.strip(), size, presets), _resolve_text(right.strip(), size, presets))
    raise ValueError(
        f"unknown region {text!r}: give a preset ({', '.join(sorted(known))}), 'box:row,col,height,width', "
        "or a mask image file"
    )
