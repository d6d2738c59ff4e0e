"""Deterministic procedural renderer of aligned, frontal, cartoon-like faces.

Every layer of the face is a signed-distance function (SDF, negative inside) of
simple shapes evaluated on the pixel centres of a normalised frame: x and y run
over [-1, 1] from left to right and from top to bottom, so any output size
renders the same picture. Layers are composited back to front with analytic
anti-aliasing, ``coverage = clamp(0.5 - sdf / pixel_size, 0, 1)``, and the part
map records the label of the topmost layer covering each pixel centre
(``coverage > 0.5``, i.e. ``sdf < 0``).

Head shift and roll are a coordinate transform from the image frame to the
*face frame* in which all head layers are drawn (the background stays; neck and
clothes only follow the shift). Symmetric features (eyes, brows, ears, nose
wings, glasses rims, wrinkles) are evaluated once on the mirrored coordinate
``|u|``. Each layer is evaluated only on the window of pixels its face-frame
bounding box can reach in the batch, which keeps rendering fast on CPU.

The whole render is a pure, batched float32 torch function of ``(attrs, size)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .attributes import (
    GLASSES_PRESENT_THRESHOLD,
    attribute_index,
    sample_attributes,
    validate_attributes,
)

PART_NAMES: tuple[str, ...] = (
    "background",
    "skin",
    "hair",
    "eyes",
    "brows",
    "nose",
    "mouth",
    "mouth_cavity",
    "teeth",
    "tongue",
    "glasses",
    "neck",
    "clothes",
)
"""Labels of the part map. ``skin`` is the face and ears, ``eyes`` is sclera,
iris, pupil and lash line, ``mouth`` is the lips."""

MIN_SIZE = 16

PIXELS_PER_CHUNK = 64 * 64 * 64
"""Faces x pixels composited at once: larger batches are split into chunks so that
intermediate tensors stay cache-sized (2x faster at 256x256)."""

_PART = {name: index for index, name in enumerate(PART_NAMES)}


def part_index(name: str) -> int:
    """Label of part ``name`` in the part map; ``ValueError`` if unknown."""
    if name not in _PART:
        raise ValueError(f"unknown part {name!r}; expected one of {PART_NAMES}")
    return _PART[name]


@dataclass(frozen=True)
class RenderResult:
    """Rendered faces.

    Attributes:
        images: float32 ``[n, 3, size, size]`` RGB in [-1, 1].
        parts: int64 ``[n, size, size]`` labels indexing ``PART_NAMES``.
    """

    images: Tensor
    parts: Tensor


# --------------------------------------------------------------------------
# Layout of the face frame (normalised units, y pointing down).
# --------------------------------------------------------------------------

WINDOW_MARGIN = 0.02  # slack around each layer's bounding box, for strokes and soft edges
PIVOT_Y = 0.3  # head roll turns about (0, PIVOT_Y), roughly the upper neck
MAX_SHIFT_X = 0.08
MAX_SHIFT_Y = 0.06
MAX_ROLL = math.radians(10.0)
LIGHT_FROM_ABOVE, LIGHT_FROM_FRONT = -0.5, 0.85  # light vector components besides light_direction

FACE_CY, FACE_RY = -0.06, 0.63  # upper face (cranium and cheeks) ellipse
FACE_RX_RANGE = (0.50, 0.64)  # face half-width, from face_width
JAW_RX_RATIO, JAW_RY = 0.64, 0.30  # chin ellipse, blended into the face ellipse
JAW_CY_CLOSED, JAW_DROP = 0.37, 0.09  # an open mouth lowers the chin by up to JAW_DROP
FACE_BLEND = 0.12

EAR_Y, EAR_RX, EAR_RY = -0.03, 0.07, 0.12
BLUSH_X, BLUSH_Y, BLUSH_TINT = 0.30, 0.17, (0.95, 0.62, 0.62)

NECK_CY, NECK_HH, NECK_WIDTH_RATIO = 0.65, 0.45, 0.42
SHOULDER_CY, SHOULDER_RX, SHOULDER_RY = 1.38, 0.98, 0.56
NECKLINE_CY, NECKLINE_RY = 0.82, 0.09
CLOTHES_RGB = (0.28, 0.33, 0.42)

HAIR_CY = -0.12
HAIR_RX_MARGIN = (0.05, 0.18)  # hair half-width beyond the face, from hair_volume
HAIR_RY_RANGE = (0.72, 0.92)  # hair half-height, from hair_volume
HAIR_BOTTOM_RANGE = (0.02, 0.92)  # lowest hair row, from hair_length
HAIRLINE_Y, HAIRLINE_CURVE, HAIRLINE_TILT = -0.60, 1.1, 0.05
HAIR_PART_X, HAIR_PART_WIDTH, HAIR_PART_DEPTH = 0.14, 0.05, 0.05  # notch of the side parting
HAIR_PARTING = (0.12, -1.4)  # strands radiate from this point above the head
HAIR_STRAND_FREQUENCY = 14.0  # strands per unit of ray slope, seen from the parting
HAIR_LOCK_WIDTH, HAIR_LOCK_DEPTH = 0.12, 0.03  # scalloped ends of the hanging hair
BACK_HAIR_SHADE = 0.7
HAIR_FLARE = 0.12  # relative widening of hanging hair per unit of length
HAIR_MASS_HALF_WIDTH_MAX = FACE_RX_RANGE[1] + HAIR_RX_MARGIN[1]
HAIR_HALF_WIDTH_MAX = HAIR_MASS_HALF_WIDTH_MAX * (1 + HAIR_FLARE * (HAIR_BOTTOM_RANGE[1] - HAIR_CY))
HAIR_TOP = HAIR_CY - HAIR_RY_RANGE[1]
# The hairline is lowest at the sides of the widest hair.
FRONT_HAIR_BOTTOM = (
    HAIRLINE_Y + HAIRLINE_CURVE * HAIR_MASS_HALF_WIDTH_MAX**2 + HAIRLINE_TILT * HAIR_MASS_HALF_WIDTH_MAX
)

EYE_X, EYE_Y = 0.24, -0.10
EYE_HALF_WIDTH_RANGE = (0.085, 0.135)
EYE_HEIGHT_RATIO = 0.46  # upper-lid half-height / half-width
LOWER_LID_RATIO = 0.75  # lower-lid depth / upper-lid height
IRIS_RATIO, PUPIL_RATIO = 0.92, 0.45  # iris radius / upper half-height, pupil / iris
GAZE_X_RANGE, GAZE_Y_RANGE = 0.5, 0.6  # iris travel, in units of the free space
LASH_THICKNESS, LOWER_LINE_THICKNESS = 0.016, 0.004
CREASE_OFFSET = 0.03

BROW_INNER_X, BROW_PEAK_X, BROW_OUTER_X = 0.10, 0.27, 0.37
BROW_GAP_RANGE = (0.105, 0.195)  # eye centre to brow base, from brow_height
BROW_ARCH = 0.03
BROW_HALF_THICKNESS_RANGE = (0.012, 0.034)
BROW_OUTER_TAPER = 0.5

NOSE_TOP_Y = EYE_Y + 0.02
NOSE_TIP_Y_RANGE = (0.13, 0.26)
NOSE_HALF_WIDTH_RANGE = (0.06, 0.13)

MOUTH_Y = 0.40
MOUTH_HALF_WIDTH_RANGE = (0.12, 0.22)
SMILE_DEPTH = 0.05  # corner-to-centre height difference at full smile
MOUTH_GAP_MAX = 0.17  # lip separation at the centre when fully open
UPPER_GAP_SHARE = 0.3  # part of the opening taken by the upper lip moving up
UPPER_LIP, LOWER_LIP = 0.036, 0.05
TEETH_HEIGHT, TOOTH_WIDTH = 0.05, 0.04
TONGUE_RX_RATIO, TONGUE_RY, TONGUE_DROP = 0.6, 0.06, 0.015

RIM_Y_OFFSET, RIM_HX, RIM_HY, RIM_RADIUS = 0.005, 0.15, 0.10, 0.06
FRAME_HALF_THICKNESS_RANGE = (0.0125, 0.0375)
BRIDGE_Y_OFFSET, ARM_Y_OFFSET = -0.03, -0.04
GLASSES_RGB = (0.10, 0.09, 0.10)

FOREHEAD_LINES_Y = (-0.41, -0.47, -0.53)
FOREHEAD_LINE_HALF_LENGTH, FOREHEAD_LINE_ARCH = 0.20, 0.3
WRINKLE_HALF_THICKNESS = 0.007
FOLD_BULGE = 0.025  # outward bow of the nasolabial folds
CROWS_FEET_ANGLES = (math.radians(-25.0), 0.0, math.radians(25.0))
CROWS_FEET_LENGTH, CROWS_FEET_START, CROWS_FEET_SPREAD = 0.045, 0.035, 0.06

# Colour ramps: each attribute walks monotonically along its stops.
SKIN_STOPS = ((0.98, 0.84, 0.74), (0.90, 0.70, 0.56), (0.72, 0.50, 0.36), (0.45, 0.29, 0.19))
HAIR_STOPS = ((0.09, 0.06, 0.05), (0.30, 0.18, 0.10), (0.55, 0.38, 0.21), (0.82, 0.67, 0.43), (0.86, 0.84, 0.80))
IRIS_STOPS = ((0.24, 0.13, 0.06), (0.45, 0.28, 0.11), (0.42, 0.45, 0.20), (0.30, 0.52, 0.42), (0.28, 0.50, 0.80))
LIP_STOPS = ((0.88, 0.58, 0.56), (0.82, 0.40, 0.44), (0.74, 0.16, 0.20), (0.50, 0.07, 0.13))
BG_HUE_RANGE = (0.0, 0.75)  # stop short of red again so that hue is not circular
BG_SATURATION, BG_VALUE_RANGE, BG_GRADIENT_MAX = 0.35, (0.30, 0.95), 0.45
SCLERA_RGB, LASH_RGB, PUPIL_RGB = (0.96, 0.95, 0.93), (0.12, 0.08, 0.07), (0.04, 0.03, 0.03)
CAVITY_RGB, TEETH_RGB, TONGUE_RGB = (0.16, 0.05, 0.06), (0.96, 0.94, 0.88), (0.80, 0.36, 0.38)
SHADOW_WARMTH = (0.25, 0.04, -0.06)  # skin shadows turn slightly red


# --------------------------------------------------------------------------
# Signed-distance helpers (negative inside; all arguments broadcast).
# --------------------------------------------------------------------------


def _sdf_ellipse(px: Tensor, py: Tensor, rx, ry) -> Tensor:
    """Approximate SDF of an axis-aligned ellipse centred at the origin.

    Uses ``(k0 - 1) * k0 / k1`` (exact on the boundary to first order); the small
    constants make the centre evaluate to ``-min(rx, ry)`` instead of 0/0.
    """
    nx = px / rx
    ny = py / ry
    k0 = torch.hypot(nx, ny)
    k1 = torch.hypot(nx.div_(rx), ny.div_(ry))
    r_min = torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry))
    return (k0 - 1).mul_(k0.add_(1e-6)).div_(k1.add_(1e-6 / r_min))


def _sdf_circle(px: Tensor, py: Tensor, radius) -> Tensor:
    """Exact SDF of a circle centred at the origin."""
    return torch.hypot(px, py).sub_(radius)


def _sdf_round_box(px: Tensor, py: Tensor, half_x, half_y, radius) -> Tensor:
    """Exact SDF of a box with rounded corners centred at the origin."""
    qx = px.abs().sub_(half_x - radius)
    qy = py.abs().sub_(half_y - radius)
    inside = torch.maximum(qx, qy).clamp_(max=0)
    outside = torch.hypot(qx.clamp_(min=0), qy.clamp_(min=0))
    return outside.add_(inside).sub_(radius)


def _sdf_segment(px: Tensor, py: Tensor, ax, ay, bx, by, radius) -> Tensor:
    """Exact SDF of a capsule: segment ``a -> b`` thickened by ``radius``."""
    pax, pay = px - ax, py - ay
    bax, bay = bx - ax, by - ay
    along = ((pax * bax + pay * bay) / (bax * bax + bay * bay)).clamp_(0, 1)
    return _sdf_circle(pax - bax * along, pay - bay * along, radius)


def _sdf_graph_band(px: Tensor, py: Tensor, x_lo, x_hi, curve, half_thickness) -> Tensor:
    """Approximate SDF of a thick stroke along the graph ``y = f(x)``, ``x_lo <= x <= x_hi``.

    ``curve(x)`` returns ``(f(x), f'(x), thickness_scale(x))``. The vertical
    distance is divided by ``sqrt(1 + f'^2)``, which is accurate for gently curved
    strokes; beyond the ends the distance to the end point gives round caps.
    """
    x_on = torch.maximum(torch.minimum(px, torch.as_tensor(x_hi)), torch.as_tensor(x_lo))
    y_on, slope, scale = curve(x_on)
    dy = (py - y_on).mul_(torch.rsqrt(1 + slope * slope))
    return torch.hypot(px - x_on, dy).sub_(scale * half_thickness)


def _smooth_union(a: Tensor, b: Tensor, blend: float) -> Tensor:
    """Union of two SDFs with a rounded fillet of size ``blend``."""
    h = ((b - a) / (2 * blend)).add_(0.5).clamp_(0, 1)
    return torch.lerp(b, a, h).sub_(h * (1 - h) * blend)


def _soft(sdf: Tensor, softness: float) -> Tensor:
    """Soft mask for shadows and blush: 1 inside, fading to 0 over ``softness`` outside."""
    return (0.5 - sdf / softness).clamp_(0, 1)


def _detail_amplitude(period: float, pixel: float) -> float:
    """Amplitude of a periodic detail: 0 below 3 pixels per period (it would alias), 1 above 6."""
    return min(max(period / pixel / 3.0 - 1.0, 0.0), 1.0)


# --------------------------------------------------------------------------
# Attributes -> geometry and colours.
# --------------------------------------------------------------------------


def _lerp(bounds: tuple[float, float], t: Tensor) -> Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * t


def _palette(t: Tensor, stops: Sequence[tuple[float, float, float]]) -> Tensor:
    """Piecewise-linear colour ramp through ``stops`` at ``t`` in [0, 1]: [n, 1, 1] -> [n, 3, 1, 1]."""
    colours = torch.tensor(stops, dtype=torch.float32)  # [K, 3]
    position = t.view(-1) * (len(stops) - 1)  # [n]
    lower = position.floor().clamp(max=len(stops) - 2).long()  # [n]
    weight = (position - lower).unsqueeze(1)  # [n, 1]
    rgb = colours[lower] * (1 - weight) + colours[lower + 1] * weight  # [n, 3]
    return rgb.view(-1, 3, 1, 1)


def _hsv_to_rgb(hue: Tensor, saturation: float, value: Tensor) -> Tensor:
    """HSV -> RGB for [n, 1, 1] hue and value: returns [n, 3, 1, 1]."""
    offsets = torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)  # [1, 3, 1, 1]
    k = (offsets + hue.unsqueeze(1) * 6) % 6  # [n, 3, 1, 1]
    ramp = torch.minimum(k, 4 - k).clamp(0, 1)  # [n, 3, 1, 1]
    return value.unsqueeze(1) * (1 - saturation * ramp)


def _constant_rgb(rgb: tuple[float, float, float]) -> Tensor:
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1)  # [1, 3, 1, 1]


@dataclass(frozen=True)
class _Geometry:
    """Per-face drawing parameters: scalars are [n, 1, 1], colours [n, 3, 1, 1]."""

    shift_x: Tensor
    shift_y: Tensor
    roll_cos: Tensor
    roll_sin: Tensor
    light_x: Tensor  # unit light vector, pointing towards the light
    light_y: Tensor
    light_z: Tensor
    bg_rgb: Tensor
    bg_gradient: Tensor
    skin_rgb: Tensor
    hair_rgb: Tensor
    iris_rgb: Tensor
    lip_rgb: Tensor
    face_rx: Tensor
    jaw_cy: Tensor
    hair_rx: Tensor
    hair_ry: Tensor
    hair_bottom: Tensor
    eye_half_width: Tensor
    eye_half_height: Tensor
    gaze_dx: Tensor
    gaze_dy: Tensor
    brow_y: Tensor
    brow_half_thickness: Tensor
    nose_tip_y: Tensor
    nose_half_width: Tensor
    mouth_half_width: Tensor
    smile: Tensor  # in [-1, 1]
    mouth_gap: Tensor
    glasses: Tensor  # 1.0 with glasses, 0.0 without
    frame_half_thickness: Tensor
    wrinkles: Tensor


def head_pose(shift_x: Tensor, shift_y: Tensor, roll: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The attributes ``head_shift_x``, ``head_shift_y`` and ``head_roll`` (values in [0, 1], any
    shape) -> the face frame's offset in x and y (image-frame units) and its roll angle (radians)."""
    return (2 * shift_x - 1) * MAX_SHIFT_X, (2 * shift_y - 1) * MAX_SHIFT_Y, (2 * roll - 1) * MAX_ROLL


def face_to_image(u: Tensor, v: Tensor, shift_x: Tensor, shift_y: Tensor, roll_cos: Tensor,
                  roll_sin: Tensor) -> tuple[Tensor, Tensor]:
    """Face-frame points ``(u, v)`` -> image-frame points ``(x, y)`` (all arguments broadcast): the roll
    turns about ``(0, PIVOT_Y)``, then the shift moves the head."""
    v = v - PIVOT_Y
    return roll_cos * u - roll_sin * v + shift_x, roll_sin * u + roll_cos * v + PIVOT_Y + shift_y


def _geometry(attrs: Tensor) -> _Geometry:
    """Map normalised attributes ``[n, A]`` to drawing parameters."""

    def column(name: str) -> Tensor:
        return attrs[:, attribute_index(name)].view(-1, 1, 1)  # [n, 1, 1]

    shift_x, shift_y, roll = head_pose(column("head_shift_x"), column("head_shift_y"), column("head_roll"))
    light = torch.cat(
        [
            2 * column("light_direction") - 1,
            torch.full_like(roll, LIGHT_FROM_ABOVE),
            torch.full_like(roll, LIGHT_FROM_FRONT),
        ],
        dim=1,
    )  # [n, 3, 1]
    light = light / light.norm(dim=1, keepdim=True)
    face_rx = _lerp(FACE_RX_RANGE, column("face_width"))
    eye_half_width = _lerp(EYE_HALF_WIDTH_RANGE, column("eye_size"))
    eye_half_height = EYE_HEIGHT_RATIO * eye_half_width
    iris_radius = IRIS_RATIO * eye_half_height
    lips = _palette(column("lip_color"), LIP_STOPS)
    skin = _palette(column("skin_tone"), SKIN_STOPS)
    return _Geometry(
        shift_x=shift_x,
        shift_y=shift_y,
        roll_cos=torch.cos(roll),
        roll_sin=torch.sin(roll),
        light_x=light[:, 0:1],
        light_y=light[:, 1:2],
        light_z=light[:, 2:3],
        bg_rgb=_hsv_to_rgb(
            _lerp(BG_HUE_RANGE, column("bg_hue")),
            BG_SATURATION,
            _lerp(BG_VALUE_RANGE, column("bg_brightness")),
        ),
        bg_gradient=BG_GRADIENT_MAX * column("bg_gradient"),
        skin_rgb=skin,
        hair_rgb=_palette(column("hair_color"), HAIR_STOPS),
        iris_rgb=_palette(column("iris_color"), IRIS_STOPS),
        # A little skin shows through the lips, as on real faces.
        lip_rgb=0.85 * lips + 0.15 * skin,
        face_rx=face_rx,
        jaw_cy=JAW_CY_CLOSED + JAW_DROP * column("mouth_open"),
        hair_rx=face_rx + _lerp(HAIR_RX_MARGIN, column("hair_volume")),
        hair_ry=_lerp(HAIR_RY_RANGE, column("hair_volume")),
        hair_bottom=_lerp(HAIR_BOTTOM_RANGE, column("hair_length")),
        eye_half_width=eye_half_width,
        eye_half_height=eye_half_height,
        # The iris travels within the free space left by its radius.
        gaze_dx=(2 * column("gaze_x") - 1) * GAZE_X_RANGE * (eye_half_width - 0.5 * iris_radius),
        gaze_dy=(2 * column("gaze_y") - 1) * GAZE_Y_RANGE * eye_half_height,
        brow_y=EYE_Y - _lerp(BROW_GAP_RANGE, column("brow_height")),
        brow_half_thickness=_lerp(BROW_HALF_THICKNESS_RANGE, column("brow_thickness")),
        nose_tip_y=_lerp(NOSE_TIP_Y_RANGE, column("nose_length")),
        nose_half_width=_lerp(NOSE_HALF_WIDTH_RANGE, column("nose_width")),
        mouth_half_width=_lerp(MOUTH_HALF_WIDTH_RANGE, column("mouth_width")),
        smile=2 * column("smile") - 1,
        mouth_gap=MOUTH_GAP_MAX * column("mouth_open"),
        glasses=(column("glasses") >= GLASSES_PRESENT_THRESHOLD).float(),
        frame_half_thickness=_lerp(FRAME_HALF_THICKNESS_RANGE, column("glasses_frame")),
        wrinkles=column("wrinkles"),
    )


# --------------------------------------------------------------------------
# Pixel frames, windows and the canvas.
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    """A rectangle of image pixels, ``image[..., rows, cols]``, that one layer can touch."""

    rows: slice
    cols: slice


class _Frame:
    """Pixel-centre coordinates of one output size, in the image, face and body frames."""

    def __init__(self, geometry: _Geometry, size: int):
        self.size = size
        self.pixel = 2.0 / size
        self.centres = (torch.arange(size, dtype=torch.float32) + 0.5) * self.pixel - 1  # [S]
        self.g = geometry

    def _span(self, low: Tensor, high: Tensor) -> slice:
        """Pixel indices whose centres lie in [low.min(), high.max()], widened by
        ``WINDOW_MARGIN`` and 2 pixels (anti-aliasing reaches half a pixel out)."""
        start = math.floor((low.min().item() - WINDOW_MARGIN + 1) / self.pixel) - 2
        stop = math.ceil((high.max().item() + WINDOW_MARGIN + 1) / self.pixel) + 2
        return slice(min(max(start, 0), self.size), min(max(stop, 0), self.size))

    def face_window(self, u_min: float, u_max: float, v_min: float, v_max: float) -> _Window:
        """Pixels that the face-frame box ``[u_min, u_max] x [v_min, v_max]`` can reach in this batch."""
        g = self.g
        corner_u = torch.tensor([u_min, u_max, u_min, u_max]).view(4, 1, 1, 1)  # [4, 1, 1, 1]
        corner_v = torch.tensor([v_min, v_min, v_max, v_max]).view(4, 1, 1, 1)
        x, y = face_to_image(corner_u, corner_v, g.shift_x, g.shift_y, g.roll_cos, g.roll_sin)  # [4, n, 1, 1]
        return _Window(rows=self._span(y.min(), y.max()), cols=self._span(x.min(), x.max()))

    def body_window(self, u_min: float, u_max: float, v_min: float, v_max: float) -> _Window:
        """Pixels that the body-frame box can reach (the body only shifts)."""
        g = self.g
        return _Window(rows=self._span(v_min + g.shift_y, v_max + g.shift_y),
                       cols=self._span(u_min + g.shift_x, u_max + g.shift_x))

    def face_coords(self, window: _Window) -> tuple[Tensor, Tensor]:
        """Face-frame coordinates ``(u, v)``, each [n, h, w], of the pixel centres in ``window``."""
        g = self.g
        qx = self.centres[window.cols].view(1, 1, -1) - g.shift_x  # [n, 1, w]
        qy = self.centres[window.rows].view(1, -1, 1) - (PIVOT_Y + g.shift_y)  # [n, h, 1]
        u = g.roll_cos * qx + g.roll_sin * qy  # [n, h, w]
        v = (g.roll_cos * qy + PIVOT_Y) - g.roll_sin * qx  # [n, h, w]
        return u, v

    def body_coords(self, window: _Window) -> tuple[Tensor, Tensor]:
        """Body-frame coordinates: u [n, 1, w] and v [n, h, 1] (shift only, no roll)."""
        u = self.centres[window.cols].view(1, 1, -1) - self.g.shift_x  # [n, 1, w]
        v = self.centres[window.rows].view(1, -1, 1) - self.g.shift_y  # [n, h, 1]
        return u, v

    def coverage(self, sdf: Tensor) -> Tensor:
        """Analytic anti-aliasing: fraction of a pixel covered by the shape ``sdf < 0``."""
        return (0.5 - sdf / self.pixel).clamp_(0, 1)


class _Canvas:
    """RGB image in [0, 1] and part map being composited back to front, in place."""

    def __init__(self, image: Tensor, parts: Tensor):
        self.image = image  # [n, 3, H, W], filled by the background layer
        self.parts = parts.fill_(_PART["background"])  # [n, H, W]

    def paint(
        self, window: _Window, coverage: Tensor, colour: Tensor, part: str | None, opacity: float | Tensor = 1.0
    ) -> None:
        """Blend ``colour`` ([n|1, 3, h|1, w|1]) over ``window`` with ``coverage * opacity``.

        ``coverage`` [n, h, w] is the geometric coverage; ``opacity`` (a float or
        [n, 1, 1]) only changes how strongly the colour shows. ``part`` (if given)
        becomes the label wherever the layer covers the pixel centre with a
        non-zero opacity.
        """
        region = self.image[:, :, window.rows, window.cols]  # [n, 3, h, w] view into the image
        region.lerp_(colour, (coverage * opacity).unsqueeze(1))
        if part is not None:
            covered = (coverage > 0.5) & (torch.as_tensor(opacity) > 0)  # [n, h, w]
            self.parts[:, window.rows, window.cols].masked_fill_(covered, _PART[part])

    def darken(self, window: _Window, amount: Tensor) -> None:
        """Multiply ``window`` by ``1 - amount`` ([n, h, w]): shadows and wrinkle lines."""
        self.image[:, :, window.rows, window.cols].mul_((1 - amount).unsqueeze(1))

    def tint(self, window: _Window, amount: Tensor, factor: Tensor) -> None:
        """Multiply ``window`` by ``factor`` ([1, 3, 1, 1]) with strength ``amount`` ([n, h, w])."""
        self.image[:, :, window.rows, window.cols].mul_(1 - amount.unsqueeze(1) * (1 - factor))


# --------------------------------------------------------------------------
# Shading.
# --------------------------------------------------------------------------


def _lambert(g: _Geometry, nx: Tensor, ny: Tensor, ambient: float, diffuse: float) -> Tensor:
    """Diffuse shading of an ellipsoid-like surface with in-plane normal ``(nx, ny)``.

    ``nx, ny`` are the normalised coordinates on the ellipsoid (|n| <= 1 inside);
    the out-of-plane component completes a unit normal.
    """
    nz = torch.addcmul(1 - nx * nx, ny, ny, value=-1).clamp_(min=0).sqrt_()
    facing = torch.addcmul(torch.addcmul(g.light_z * nz, g.light_x, nx), g.light_y, ny)
    return facing.clamp_(min=0).mul_(diffuse).add_(ambient)


def _skin_colour(g: _Geometry, shade: Tensor) -> Tensor:
    """Skin colour under ``shade`` ([n, h, w]): [n, 3, h, w], with warm (reddish) shadows."""
    warmth = _constant_rgb(SHADOW_WARMTH)  # [1, 3, 1, 1]
    # skin * (shade + warmth * (1 - shade)), as one fused operation
    return torch.addcmul(g.skin_rgb * warmth, shade.unsqueeze(1), g.skin_rgb * (1 - warmth))


def _face_shade(g: _Geometry, u: Tensor, v: Tensor) -> Tensor:
    """Shading of the face skin, a wide ellipsoid bulging towards the viewer: [n, h, w]."""
    nx = u / (1.15 * g.face_rx)
    ny = (v - (FACE_CY + 0.08)) / (1.1 * FACE_RY)
    return _lambert(g, nx, ny, ambient=0.55, diffuse=0.5)


# --------------------------------------------------------------------------
# Layers, back to front.
# --------------------------------------------------------------------------


def _draw_background(canvas: _Canvas, frame: _Frame, g: _Geometry) -> None:
    """Flat colour with a diagonal brightness ramp (bright top-left, dark bottom-right)."""
    x = frame.centres.view(1, 1, -1)  # [1, 1, W]
    y = frame.centres.view(1, -1, 1)  # [1, H, 1]
    ramp = (x + y) / -2  # [1, H, W] in [-1, 1]
    brightness = 1 + g.bg_gradient * ramp  # [n, H, W]
    torch.mul(g.bg_rgb, brightness.unsqueeze(1), out=canvas.image)


@dataclass(frozen=True)
class _Hair:
    """The hair mass, shared by the layer behind the head and the one in front of it."""

    window: _Window
    u: Tensor  # [n, h, w] face-frame coordinates of the window
    v: Tensor  # [n, h, w]
    mass: Tensor  # [n, h, w] SDF of the hair volume around the skull
    colour: Tensor  # [n, 3, h, w] lit hair colour


def _hair(frame: _Frame, g: _Geometry) -> _Hair:
    """Hair mass and its lit colour: an ellipsoid with a sheen band and strands."""
    window = frame.face_window(-HAIR_HALF_WIDTH_MAX, HAIR_HALF_WIDTH_MAX, HAIR_TOP, HAIR_BOTTOM_RANGE[1])
    u, v = frame.face_coords(window)
    mass = _sdf_ellipse(u, v - HAIR_CY, g.hair_rx, g.hair_ry)  # [n, h, w]

    nx = u / (1.05 * g.hair_rx)
    ny = (v - HAIR_CY) / (1.05 * g.hair_ry)
    shade = _lambert(g, nx, ny, ambient=0.5, diffuse=0.65)  # [n, h, w]
    # Sheen: a bright band across the top of the head, stronger on the lit side.
    sheen = torch.exp(((ny + 0.55) / 0.12).square_().neg_()).mul_(0.6 + 0.4 * g.light_x * nx.clamp_(-1, 1))
    shade.add_(sheen.mul_(0.25))
    # Strands are rays from the parting point above the head, indexed by their slope
    # (cheaper than the angle); only drawn where they do not alias.
    strand_period = 1 / HAIR_STRAND_FREQUENCY  # in slope units, about the spacing at unit distance
    amplitude = 0.05 * _detail_amplitude(strand_period, frame.pixel)
    if amplitude > 0:
        phase = (u - HAIR_PARTING[0]).div_(v - HAIR_PARTING[1]).mul_(2 * math.pi * HAIR_STRAND_FREQUENCY)
        strands = torch.sin(phase + 1.5 * torch.sin(0.23 * phase))
        shade.mul_(strands.mul_(amplitude).add_(1))
    return _Hair(window=window, u=u, v=v, mass=mass, colour=g.hair_rgb * shade.unsqueeze(1))


def _draw_back_hair(canvas: _Canvas, frame: _Frame, g: _Geometry, hair: _Hair) -> None:
    """Hair behind the head: the hair mass plus a drape down to ``hair_bottom``, ending in locks."""
    u, v = hair.u, hair.v
    drape_half_height = (g.hair_bottom - HAIR_CY) / 2  # [n, 1, 1]
    # Hanging hair flares out a little towards its ends: widen the box with depth.
    flare = (v - HAIR_CY).clamp_(min=0).mul_(HAIR_FLARE).add_(1)  # [n, h, w]
    drape = _sdf_round_box(u / flare, v - (HAIR_CY + drape_half_height), g.hair_rx - 0.02, drape_half_height, 0.12)
    drape.mul_(flare)
    locks = HAIR_LOCK_DEPTH * _detail_amplitude(HAIR_LOCK_WIDTH, frame.pixel)
    ends = v - g.hair_bottom + locks * torch.sin(u * (math.pi / HAIR_LOCK_WIDTH)).square_()
    shape = torch.maximum(torch.minimum(hair.mass, drape), ends)  # [n, h, w]
    # The back of the hair is in the shadow of the head.
    canvas.paint(hair.window, frame.coverage(shape), hair.colour * BACK_HAIR_SHADE, "hair")


def _draw_front_hair(canvas: _Canvas, frame: _Frame, g: _Geometry, hair: _Hair) -> None:
    """Hair in front of the skull, above a curved hairline with a side parting.

    Only the top rows of the hair window, down to ``FRONT_HAIR_BOTTOM``, can hold it.
    """
    hair_rows = hair.window.rows
    front_stop = frame.face_window(-HAIR_HALF_WIDTH_MAX, HAIR_HALF_WIDTH_MAX, HAIR_TOP, FRONT_HAIR_BOTTOM).rows.stop
    front_stop = min(max(front_stop, hair_rows.start), hair_rows.stop)
    window = _Window(rows=slice(hair_rows.start, front_stop), cols=hair.window.cols)
    rows = slice(0, front_stop - hair_rows.start)  # the same rows, inside the hair tensors
    u, v, mass = hair.u[:, rows], hair.v[:, rows], hair.mass[:, rows]  # [n, h, w]
    # A parabola, tilted a little, with a Gaussian notch at the side parting.
    parting = torch.exp(((u - HAIR_PART_X) / HAIR_PART_WIDTH).square_().neg_())  # [n, h, w]
    hairline = HAIRLINE_Y + HAIRLINE_CURVE * u * u + HAIRLINE_TILT * u - HAIR_PART_DEPTH * parting
    slope = 2 * HAIRLINE_CURVE * u + HAIRLINE_TILT + parting * (u - HAIR_PART_X) * (
        2 * HAIR_PART_DEPTH / HAIR_PART_WIDTH**2
    )
    above_hairline = (v - hairline).mul_(torch.rsqrt(1 + slope * slope))
    shape = torch.maximum(mass, above_hairline)  # [n, h, w]
    canvas.paint(window, frame.coverage(shape), hair.colour[:, :, rows], "hair")


def _jaw_sdf(g: _Geometry, u: Tensor, v: Tensor) -> Tensor:
    """The chin, which drops as the mouth opens: [n, h, w]."""
    return _sdf_ellipse(u, v - g.jaw_cy, JAW_RX_RATIO * g.face_rx, JAW_RY)


def _draw_neck(canvas: _Canvas, frame: _Frame, g: _Geometry) -> None:
    """Neck below the head, skin-coloured and darkened by the chin's shadow."""
    half_width = NECK_WIDTH_RATIO * FACE_RX_RANGE[1]
    window = frame.body_window(-half_width, half_width, NECK_CY - NECK_HH, NECK_CY + NECK_HH)
    bu, bv = frame.body_coords(window)
    neck_half_width = NECK_WIDTH_RATIO * g.face_rx  # [n, 1, 1]
    shape = _sdf_round_box(bu, bv - NECK_CY, neck_half_width, NECK_HH, 0.08)  # [n, h, w]
    u, v = frame.face_coords(window)
    chin_shadow = _soft(_jaw_sdf(g, u, v - 0.05), 0.12)  # [n, h, w]
    shade = (1 - 0.45 * chin_shadow).mul_(0.78 + 0.12 * g.light_x * bu / neck_half_width)
    canvas.paint(window, frame.coverage(shape), _skin_colour(g, shade), "neck")


def _draw_clothes(canvas: _Canvas, frame: _Frame, g: _Geometry) -> None:
    """Shoulders with a round neckline."""
    top = SHOULDER_CY - SHOULDER_RY
    window = frame.body_window(-SHOULDER_RX, SHOULDER_RX, top, SHOULDER_CY + SHOULDER_RY)
    bu, bv = frame.body_coords(window)
    shoulders = _sdf_ellipse(bu, bv - SHOULDER_CY, SHOULDER_RX, SHOULDER_RY)  # [n, h, w]
    neckline = _sdf_ellipse(bu, bv - NECKLINE_CY, NECK_WIDTH_RATIO * g.face_rx + 0.03, NECKLINE_RY)
    shape = torch.maximum(shoulders, neckline.neg_())
    shade = 0.85 + 0.2 * g.light_x * bu - 0.25 * (bv - top).clamp(0, 1)  # [n, h, w]
    canvas.paint(window, frame.coverage(shape), _constant_rgb(CLOTHES_RGB) * shade.unsqueeze(1), "clothes")


def _draw_ears(canvas: _Canvas, frame: _Frame, g: _Geometry) -> None:
    """Two ears at the sides of the face, each with a darker inner ear."""
    for side in (-1.0, 1.0):
        inner_u, outer_u = side * (FACE_RX_RANGE[0] - EAR_RX), side * (FACE_RX_RANGE[1] + EAR_RX)
        window = frame.face_window(min(inner_u, outer_u), max(inner_u, outer_u), EAR_Y - EAR_RY, EAR_Y + EAR_RY)
        u, v = frame.face_coords(window)
        outward = side * u - g.face_rx  # [n, h, w] 0 at the face edge, positive outside
        ear = _sdf_ellipse(outward + 0.005, v - EAR_Y, EAR_RX, EAR_RY)
        inner = _soft(_sdf_ellipse(outward - 0.015, v - (EAR_Y + 0.005), 0.028, 0.07), 0.03)
        shade = (1 - 0.3 * inner).mul_(0.8 + 0.15 * side * g.light_x)
        canvas.paint(window, frame.coverage(ear), _skin_colour(g, shade), "skin")


def _draw_face(canvas: _Canvas, frame: _Frame, g: _Geometry) -> None:
    """Face skin: cranium/cheek ellipse blended with the chin, with diffuse lighting."""
    half_width = FACE_RX_RANGE[1]
    window = frame.face_window(-half_width, half_width, FACE_CY - FACE_RY, JAW_CY_CLOSED + JAW_DROP + JAW_RY)
    u, v = frame.face_coords(window)
    upper = _sdf_ellipse(u, v - FACE_CY, g.face_rx, FACE_RY)  # [n, h, w]
    shape = _smooth_union(upper, _jaw_sdf(g, u, v), FACE_BLEND)
    canvas.paint(window, frame.coverage(shape), _skin_colour(g, _face_shade(g, u, v)), "skin")


def _draw_blush(canvas: _Canvas, frame: _Frame, g: _Geometry) -> None:
    """A faint rosy tint on both cheeks."""
    window = frame.face_window(-0.5, 0.5, BLUSH_Y - 0.16, BLUSH_Y + 0.16)
    u, v = frame.face_coords(window)
    cheeks = _sdf_ellipse(u.abs() - BLUSH_X, v - BLUSH_Y, 0.12, 0.08)  # [n, h, w]
    canvas.tint(window, 0.14 * _soft(cheeks, 0.16), _constant_rgb(BLUSH_TINT))


def _draw_forehead_lines(canvas: _Canvas, frame: _Frame, g: _Geometry) -> None:
    """Horizontal forehead lines, arched upwards, darkness from ``wrinkles``."""
    half_length = FOREHEAD_LINE_HALF_LENGTH
    window = frame.face_window(-half_length, half_length, FOREHEAD_LINES_Y[-1] - 0.03, FOREHEAD_LINES_Y[0] + 0.03)
    u, v = frame.face_coords(window)
    lines = None
    for line_y in FOREHEAD_LINES_Y:

        def arch(x: Tensor, line_y: float = line_y):
            # Thinner towards the ends, like real creases.
            return line_y + FOREHEAD_LINE_ARCH * x * x, 2 * FOREHEAD_LINE_ARCH * x, 1 - (x / half_length) ** 2

        line = _sdf_graph_band(u, v, -half_length, half_length, arch, WRINKLE_HALF_THICKNESS)
        lines = line if lines is None else torch.minimum(lines, line)
    canvas.darken(window, 0.3 * g.wrinkles * frame.coverage(lines))


def _draw_nasolabial_folds(canvas: _Canvas, frame: _Frame, g: _Geometry) -> None:
    """Folds from the nose wings to beyond the mouth corners, darkness from ``wrinkles``."""
    top_y = g.nose_tip_y + 0.01  # [n, 1, 1]
    bottom_y = torch.as_tensor(MOUTH_Y + 0.04)
    top_x = g.nose_half_width + 0.015
    bottom_x = g.mouth_half_width + 0.045
    window = frame.face_window(-0.35, 0.35, NOSE_TIP_Y_RANGE[0] - 0.02, MOUTH_Y + 0.07)
    u, v = frame.face_coords(window)

    def fold(y: Tensor):
        t = (y - top_y) / (bottom_y - top_y)  # [n, h, w] 0 at the nose, 1 beside the mouth
        bend = torch.sin(math.pi * t)
        x = top_x + (bottom_x - top_x) * t + FOLD_BULGE * bend
        slope = ((bottom_x - top_x) + FOLD_BULGE * math.pi * torch.cos(math.pi * t)) / (bottom_y - top_y)
        return x, slope, bend.clamp_(min=0)

    # The fold runs mostly downwards, so it is the graph x = f(y).
    folds = _sdf_graph_band(v, u.abs(), top_y, bottom_y, fold, WRINKLE_HALF_THICKNESS)
    canvas.darken(window, 0.3 * g.wrinkles * frame.coverage(folds))


def _draw_nose(canvas: _Canvas, frame: _Frame, g: _Geometry) -> None:
    """Nose: a soft shadow below it, then the bridge/tip/wings shape with wing creases and nostrils.

    The nose region is shaded like the face with a smooth bump towards the light,
    so its edges stay soft; the shadowed flank, wing creases, nostrils, tip
    highlight and the shadow below make its length and width readable.
    """
    window = frame.face_window(-0.2, 0.2, NOSE_TOP_Y - 0.05, NOSE_TIP_Y_RANGE[1] + 0.1)
    u, v = frame.face_coords(window)
    tip_y, half_width = g.nose_tip_y, g.nose_half_width  # [n, 1, 1]
    side = u.abs()  # [n, h, w] mirrored

    under_shadow = _sdf_ellipse(u + 0.03 * g.light_x, v - (tip_y + 0.05), 0.7 * half_width, 0.022)
    canvas.darken(window, 0.25 * _soft(under_shadow, 0.05))

    bridge = _sdf_segment(u, v, 0.0, NOSE_TOP_Y, 0.0, tip_y - 0.05, 0.028)
    tip = _sdf_ellipse(u, v - (tip_y - 0.012), 0.5 * half_width, 0.042)
    wings = _sdf_ellipse(side - (half_width - 0.032), v - (tip_y + 0.004), 0.034, 0.03)
    nose = _smooth_union(_smooth_union(bridge, tip, 0.03), wings, 0.015)  # [n, h, w]
    depth = (nose / -0.03).clamp_(0, 1)  # [n, h, w] 0 on the outline, 1 well inside
    bump = g.light_x * (u / half_width).clamp_(-1, 1) * depth
    # The underside of the tip faces down, away from the light.
    underside = ((v - tip_y) / 0.03).clamp_(0, 1).mul_(depth)
    shade = _face_shade(g, u, v).mul_(1 + 0.2 * bump - 0.2 * underside)
    canvas.paint(window, frame.coverage(nose), _skin_colour(g, shade), "nose")

    # Shadowed flank of the bridge and wings on the side turned away from the light:
    # a band just inside the outline, fading in from the top of the bridge.
    away = (-g.light_x * torch.sign(u)).clamp_(min=0) + 0.3  # [n, h, w]
    inside = nose / -0.035  # [n, h, w] 0 on the outline, 1 at the band's inner edge
    band = (inside * (1 - inside) * 4).clamp_(min=0)
    fade_in = ((v - NOSE_TOP_Y) / 0.2).clamp_(0, 1)
    canvas.darken(window, 0.2 * away * band * fade_in)
    # Crease around the top and outside of each wing.
    crease = torch.maximum(wings.abs() - 0.005, (tip_y + 0.012) - v)
    canvas.darken(window, 0.25 * frame.coverage(crease))
    tip_highlight = _sdf_ellipse(u + 0.015 * g.light_x, v - (tip_y - 0.025), 0.022, 0.016)
    canvas.tint(window, 0.35 * _soft(tip_highlight, 0.035), _constant_rgb((1.25, 1.22, 1.2)))
    nostrils = _sdf_ellipse(side - 0.45 * half_width, v - (tip_y + 0.026), 0.18 * half_width + 0.006, 0.011)
    canvas.paint(window, frame.coverage(nostrils), g.skin_rgb * 0.3, "nose", opacity=0.85)


def _draw_eyes(canvas: _Canvas, frame: _Frame, g: _Geometry) -> None:
    """Almond eyes (two lid arcs) with crease, crow's feet, lash line, sclera, iris, pupil and highlight."""
    reach = EYE_X + EYE_HALF_WIDTH_RANGE[1] + CROWS_FEET_START + CROWS_FEET_LENGTH
    window = frame.face_window(-reach, reach, EYE_Y - 0.12, EYE_Y + 0.09)
    u, v = frame.face_coords(window)
    # Eye-local coordinates, mirrored so that +x points to the outer corner of both eyes.
    ex = u.abs() - EYE_X  # [n, h, w]
    ey = v - EYE_Y
    outward = torch.sign(u)  # [n, h, w] turns image-x offsets into mirrored ones
    half_width, half_height = g.eye_half_width, g.eye_half_height  # [n, 1, 1]

    # Each lid is a circle through both eye corners.
    lower_depth = LOWER_LID_RATIO * half_height
    upper_radius = (half_width**2 + half_height**2) / (2 * half_height)
    lower_radius = (half_width**2 + lower_depth**2) / (2 * lower_depth)
    above_upper_centre = ey - (upper_radius - half_height)  # [n, h, w]
    upper_lid = _sdf_circle(ex, above_upper_centre, upper_radius)
    lower_lid = _sdf_circle(ex, ey + (lower_radius - lower_depth), lower_radius)
    eye = torch.maximum(upper_lid, lower_lid)

    # Lid crease: the part just above the eye of a ring concentric with the upper lid.
    crease = (upper_lid - CREASE_OFFSET).abs_().sub_(0.006)
    crease = torch.maximum(torch.maximum(crease, ex.abs() - 0.85 * half_width), ey)
    canvas.darken(window, 0.22 * frame.coverage(crease))
    _draw_crows_feet(canvas, window, frame, g, ex, ey)

    lash = torch.maximum(upper_lid - LASH_THICKNESS, lower_lid - LOWER_LINE_THICKNESS)
    canvas.paint(window, frame.coverage(lash), _constant_rgb(LASH_RGB), "eyes")
    eye_coverage = frame.coverage(eye)  # [n, h, w]
    lid_shadow = (upper_lid / (0.7 * half_height)).add_(1).clamp_(0, 1)  # 1 at the upper lid
    sclera = _constant_rgb(SCLERA_RGB) * (1 - 0.25 * lid_shadow).unsqueeze(1)  # [n, 3, h, w]
    canvas.paint(window, eye_coverage, sclera, "eyes")

    iris_radius = IRIS_RATIO * half_height
    ix = ex - outward * g.gaze_dx  # [n, h, w] iris-local coordinates
    iy = ey - g.gaze_dy
    iris_distance = torch.hypot(ix, iy)
    iris_coverage = torch.minimum(frame.coverage(iris_distance - iris_radius), eye_coverage)
    # Darker limbal ring and the shadow of the upper lid.
    ring = ((iris_distance / iris_radius - 0.6) / 0.4).clamp_(0, 1)
    iris_shade = (1 - 0.45 * ring).mul_(1 - 0.3 * lid_shadow)
    canvas.paint(window, iris_coverage, g.iris_rgb * iris_shade.unsqueeze(1), "eyes")
    pupil = torch.minimum(frame.coverage(iris_distance - PUPIL_RATIO * iris_radius), eye_coverage)
    canvas.paint(window, pupil, _constant_rgb(PUPIL_RGB), "eyes")
    # Reflection of the light source: on the same image side in both eyes.
    highlight_dx = outward * g.light_x * (0.4 * iris_radius)  # [n, h, w] towards the light
    highlight = _sdf_circle(ix - highlight_dx, iy + 0.35 * iris_radius, 0.22 * iris_radius)
    highlight_coverage = torch.minimum(frame.coverage(highlight), eye_coverage)
    canvas.paint(window, highlight_coverage, _constant_rgb((1.0, 1.0, 1.0)), "eyes", opacity=0.9)


def _draw_crows_feet(canvas: _Canvas, window: _Window, frame: _Frame, g: _Geometry, ex: Tensor, ey: Tensor) -> None:
    """Short lines fanning out from the outer eye corners, darkness from ``wrinkles``."""
    start_x = g.eye_half_width + CROWS_FEET_START  # [n, 1, 1]
    lines = None
    for angle in CROWS_FEET_ANGLES:
        # Lines start spread along the corner and fan outwards, without meeting.
        start_y = CROWS_FEET_SPREAD * math.sin(angle)
        end_x = start_x + CROWS_FEET_LENGTH * math.cos(angle)
        end_y = start_y + CROWS_FEET_LENGTH * math.sin(angle)
        line = _sdf_segment(ex, ey, start_x, start_y, end_x, end_y, WRINKLE_HALF_THICKNESS)
        lines = line if lines is None else torch.minimum(lines, line)
    canvas.darken(window, 0.3 * g.wrinkles * frame.coverage(lines))


def _draw_brows(canvas: _Canvas, frame: _Frame, g: _Geometry) -> None:
    """Eyebrows: thick arched strokes, thickest at the inner end, in a darkened hair colour."""
    top = EYE_Y - BROW_GAP_RANGE[1] - BROW_ARCH - BROW_HALF_THICKNESS_RANGE[1]
    bottom = EYE_Y - BROW_GAP_RANGE[0] + BROW_HALF_THICKNESS_RANGE[1]
    reach = BROW_OUTER_X + BROW_HALF_THICKNESS_RANGE[1]
    window = frame.face_window(-reach, reach, top, bottom)
    u, v = frame.face_coords(window)
    span = BROW_OUTER_X - BROW_INNER_X
    peak_reach = max(BROW_PEAK_X - BROW_INNER_X, BROW_OUTER_X - BROW_PEAK_X)

    def arch(x: Tensor):
        offset = (x - BROW_PEAK_X) / peak_reach
        y = g.brow_y - BROW_ARCH * (1 - offset * offset)
        slope = (2 * BROW_ARCH / peak_reach) * offset
        taper = 1 - BROW_OUTER_TAPER * (x - BROW_INNER_X) / span
        return y, slope, taper

    brows = _sdf_graph_band(u.abs(), v, BROW_INNER_X, BROW_OUTER_X, arch, g.brow_half_thickness)
    canvas.paint(window, frame.coverage(brows), 0.55 * g.hair_rgb + 0.05, "brows", opacity=0.95)


@dataclass(frozen=True)
class _MouthCurves:
    """Lip edges as heights over the mouth's horizontal coordinate, each [n, h, w]."""

    profile: Tensor  # 1 at the mouth centre, 0 at the corners
    to_distance: Tensor  # turns vertical distances into approximate Euclidean ones
    beyond_corners: Tensor  # SDF of the vertical strip between the corners
    upper_outer: Tensor
    upper_inner: Tensor
    lower_inner: Tensor
    lower_outer: Tensor


def _mouth_curves(g: _Geometry, u: Tensor) -> _MouthCurves:
    """Lip edges: the closed-lips line bends with ``smile``; opening splits it into an
    upper inner edge (moving up a little) and a lower one (moving down with the jaw)."""
    half_width = g.mouth_half_width  # [n, 1, 1]
    t = (u / half_width).clamp_(-1, 1)  # [n, h, w] -1/+1 at the corners
    t2 = t * t
    profile = (1 - t2).clamp_(min=0).sqrt_()
    closed_line = MOUTH_Y + g.smile * SMILE_DEPTH * (1.0 / 3.0 - t2)
    slope = (-2 * SMILE_DEPTH) * g.smile * t / half_width
    gap = g.mouth_gap * profile
    upper_inner = closed_line - UPPER_GAP_SHARE * gap
    lower_inner = closed_line + (1 - UPPER_GAP_SHARE) * gap
    # Cupid's bow: two peaks either side of a central dip.
    peaks = torch.exp(((t.abs() - 0.32) / 0.16).square_().neg_())  # [n, h, w]
    dip = torch.exp((t / 0.12).square_().neg_())
    bow = 1 + 0.3 * peaks - 0.35 * dip
    return _MouthCurves(
        profile=profile,
        to_distance=torch.rsqrt(1 + slope * slope),
        beyond_corners=u.abs() - half_width,
        upper_outer=upper_inner - UPPER_LIP * profile * bow,
        upper_inner=upper_inner,
        lower_inner=lower_inner,
        lower_outer=lower_inner + LOWER_LIP * profile,
    )


def _between(curves: _MouthCurves, v: Tensor, top: Tensor, bottom: Tensor) -> Tensor:
    """SDF of the region between two lip edges, clipped to the mouth corners: [n, h, w]."""
    vertical = torch.maximum(top - v, v - bottom).mul_(curves.to_distance)
    return torch.maximum(vertical, curves.beyond_corners)


def _draw_mouth(canvas: _Canvas, frame: _Frame, g: _Geometry) -> None:
    """Mouth: cavity, upper teeth and tongue when open, corner dimples, then upper and lower lips."""
    # Cupid's bow peaks reach 1.3 upper-lip thicknesses above the upper inner edge.
    top = MOUTH_Y - SMILE_DEPTH - UPPER_GAP_SHARE * MOUTH_GAP_MAX - 1.3 * UPPER_LIP
    bottom = MOUTH_Y + SMILE_DEPTH + MOUTH_GAP_MAX + LOWER_LIP
    reach = MOUTH_HALF_WIDTH_RANGE[1] + 0.05
    window = frame.face_window(-reach, reach, top, bottom)
    u, v = frame.face_coords(window)
    curves = _mouth_curves(g, u)

    cavity_coverage = frame.coverage(_between(curves, v, curves.upper_inner, curves.lower_inner))  # [n, h, w]
    canvas.paint(window, cavity_coverage, _constant_rgb(CAVITY_RGB), "mouth_cavity")
    _draw_teeth(canvas, window, frame, u, v, curves, cavity_coverage)
    _draw_tongue(canvas, window, frame, g, u, v, cavity_coverage)

    # Corner dimples make the mouth width and smile readable even with closed lips.
    corner_y = MOUTH_Y - (2 * SMILE_DEPTH / 3) * g.smile
    corners = _sdf_circle(u.abs() - g.mouth_half_width, v - corner_y, 0.012)
    canvas.darken(window, 0.3 * _soft(corners, 0.03))

    upper_lip = _between(curves, v, curves.upper_outer, curves.upper_inner)
    canvas.paint(window, frame.coverage(upper_lip), 0.82 * g.lip_rgb, "mouth")
    lower_lip = _between(curves, v, curves.lower_inner, curves.lower_outer)
    # A highlight across the fuller lower lip.
    depth = ((v - curves.lower_inner) / (LOWER_LIP * curves.profile + 1e-3)).clamp_(0, 1)  # 0 -> 1 downwards
    lower_shade = torch.exp(((depth - 0.4) / 0.25).square_().neg_()).mul_(curves.profile).mul_(0.22).add_(1)
    canvas.paint(window, frame.coverage(lower_lip), g.lip_rgb * lower_shade.unsqueeze(1), "mouth")


def _draw_teeth(
    canvas: _Canvas, window: _Window, frame: _Frame, u: Tensor, v: Tensor, curves: _MouthCurves, cavity: Tensor
) -> None:
    """Upper teeth: a white band under the upper lip, clipped to the cavity coverage ``cavity``."""
    teeth_bottom = curves.upper_inner + TEETH_HEIGHT * curves.profile  # [n, h, w]
    teeth_coverage = torch.minimum(frame.coverage((v - teeth_bottom).mul_(curves.to_distance)), cavity)
    # Shadow of the upper lip on the teeth and, where resolvable, gaps between teeth.
    shade = ((v - curves.upper_inner) / TEETH_HEIGHT).clamp_(0, 1).mul_(0.22).add_(0.78)
    gaps = _detail_amplitude(TOOTH_WIDTH, frame.pixel)
    if gaps > 0:
        shade.mul_(1 - 0.15 * gaps * torch.cos(u * (math.pi / TOOTH_WIDTH)) ** 16)
    canvas.paint(window, teeth_coverage, _constant_rgb(TEETH_RGB) * shade.unsqueeze(1), "teeth")


def _draw_tongue(
    canvas: _Canvas, window: _Window, frame: _Frame, g: _Geometry, u: Tensor, v: Tensor, cavity: Tensor
) -> None:
    """Tongue: a blob resting on the lower lip, clipped to the cavity coverage ``cavity``."""
    centre_y = MOUTH_Y + g.smile * (SMILE_DEPTH / 3) + (1 - UPPER_GAP_SHARE) * g.mouth_gap + TONGUE_DROP
    tongue = _sdf_ellipse(u, v - centre_y, TONGUE_RX_RATIO * g.mouth_half_width, TONGUE_RY)  # [n, h, w]
    shade = ((v - centre_y + TONGUE_RY) / TONGUE_RY).clamp_(0, 1).mul_(0.25).add_(0.75)
    coverage = torch.minimum(frame.coverage(tongue), cavity)
    canvas.paint(window, coverage, _constant_rgb(TONGUE_RGB) * shade.unsqueeze(1), "tongue")


def _draw_glasses(canvas: _Canvas, frame: _Frame, g: _Geometry) -> None:
    """Glasses: faint lenses, two rounded rims, a bridge and arms reaching the face edge."""
    rim_y = EYE_Y + RIM_Y_OFFSET
    reach = FACE_RX_RANGE[1] + 0.03 + FRAME_HALF_THICKNESS_RANGE[1]
    window = frame.face_window(-reach, reach, rim_y - RIM_HY - 0.04, rim_y + RIM_HY + 0.04)
    u, v = frame.face_coords(window)
    side = u.abs()  # [n, h, w] mirrored
    thickness = g.frame_half_thickness  # [n, 1, 1]
    lens = _sdf_round_box(side - EYE_X, v - rim_y, RIM_HX, RIM_HY, RIM_RADIUS)  # [n, h, w]
    canvas.paint(window, frame.coverage(lens), _constant_rgb((1.0, 1.0, 1.0)), None, opacity=0.1 * g.glasses)

    rims = lens.abs_().sub_(thickness)
    bridge_y = EYE_Y + BRIDGE_Y_OFFSET
    bridge = _sdf_segment(side, v, 0.0, bridge_y, EYE_X - RIM_HX, bridge_y, thickness)
    arm_y = EYE_Y + ARM_Y_OFFSET
    arms = _sdf_segment(side, v, EYE_X + RIM_HX, arm_y, g.face_rx + 0.03, arm_y, thickness)
    glasses = torch.minimum(torch.minimum(rims, bridge), arms)  # [n, h, w]
    canvas.paint(window, frame.coverage(glasses), _constant_rgb(GLASSES_RGB), "glasses", opacity=g.glasses)


def _compose(canvas: _Canvas, frame: _Frame, g: _Geometry) -> None:
    """Draw all layers, back to front."""
    _draw_background(canvas, frame, g)
    hair = _hair(frame, g)
    _draw_back_hair(canvas, frame, g, hair)
    _draw_neck(canvas, frame, g)
    _draw_clothes(canvas, frame, g)
    _draw_ears(canvas, frame, g)
    _draw_face(canvas, frame, g)
    _draw_blush(canvas, frame, g)
    _draw_forehead_lines(canvas, frame, g)
    _draw_nasolabial_folds(canvas, frame, g)
    _draw_nose(canvas, frame, g)
    _draw_eyes(canvas, frame, g)
    _draw_brows(canvas, frame, g)
    _draw_mouth(canvas, frame, g)
    _draw_front_hair(canvas, frame, g, hair)
    _draw_glasses(canvas, frame, g)


# --------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"size must be an integer, got {size!r}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE}, got {size}")


def render(attrs: Tensor, size: int = 64) -> RenderResult:
    """Render one face per row of ``attrs``.

    Args:
        attrs: ``[n, NUM_ATTRIBUTES]`` normalised attributes in [0, 1]
            (see ``ATTRIBUTES``); anything ``torch.as_tensor`` accepts.
        size: output height and width in pixels, at least ``MIN_SIZE``.

    Returns:
        ``RenderResult`` with ``images`` float32 ``[n, 3, size, size]`` in [-1, 1]
        and ``parts`` int64 ``[n, size, size]``. Identical inputs give bit-identical
        outputs.

    Raises:
        ValueError: for a wrong attribute shape, NaN/inf or out-of-range values,
            or a size below ``MIN_SIZE``.
    """
    attrs = validate_attributes(attrs)  # [n, A]
    _check_size(size)
    size = int(size)
    n = attrs.shape[0]
    images = torch.empty(n, 3, size, size)  # [n, 3, H, W]
    parts = torch.empty(n, size, size, dtype=torch.int64)  # [n, H, W]
    chunk = max(1, PIXELS_PER_CHUNK // (size * size))
    for start in range(0, n, chunk):
        batch = slice(start, start + chunk)
        geometry = _geometry(attrs[batch])
        _compose(_Canvas(images[batch], parts[batch]), _Frame(geometry, size), geometry)
    images.mul_(2).sub_(1).clamp_(-1, 1)
    return RenderResult(images=images, parts=parts)


def render_seed(seed: int, n: int = 1, size: int = 64) -> RenderResult:
    """Render ``n`` faces with attributes ``sample_attributes(n, seed)``."""
    return render(sample_attributes(n, seed), size)


def _to_pil_grid(images: Tensor, nrow: int, padding: int = 2) -> Image.Image:
    """Tile ``[n, 3, H, W]`` images in [-1, 1] into a grid of ``nrow`` columns on white."""
    n, _, height, width = images.shape
    columns = max(min(nrow, n), 1)
    grid_rows = math.ceil(n / columns)
    pixels = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)  # [n, 3, H, W]
    pixels = pixels.permute(0, 2, 3, 1).numpy()  # [n, H, W, 3]
    grid = np.full(
        (grid_rows * (height + padding) + padding, columns * (width + padding) + padding, 3), 255, np.uint8
    )
    for index in range(n):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top : top + height, left : left + width] = pixels[index]
    return Image.fromarray(grid)


def gallery(n: int = 16, size: int = 128, seed: int = 0, nrow: int = 8) -> Image.Image:
    """A grid of ``n`` faces sampled with ``seed``, ``nrow`` per row."""
    return _to_pil_grid(render_seed(seed, n, size).images, nrow)


def sweep(attribute: str, values: Sequence[float], seed: int = 0, size: int = 128) -> Image.Image:
    """One row of the same face (``sample_attributes(1, seed)``) with ``attribute`` set to each of ``values``.

    Sweeping ``glasses_frame`` puts glasses on, since the frame is invisible otherwise.
    """
    column = attribute_index(attribute)
    attrs = sample_attributes(1, seed).repeat(len(values), 1)  # [m, A]
    attrs[:, column] = torch.as_tensor(values, dtype=torch.float32)
    if attribute == "glasses_frame":
        attrs[:, attribute_index("glasses")] = 1.0
    return _to_pil_grid(render(attrs, size).images, nrow=len(values))


__all__ = [
    "MIN_SIZE",
    "PART_NAMES",
    "RenderResult",
    "gallery",
    "part_index",
    "render",
    "render_seed",
    "sweep",
]
