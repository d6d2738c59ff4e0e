"""The paper's kinds of figures, each one call: edit strips, strength sweeps (rows, GIF, MP4),
method-vs-method grids, multi-semantic chains and locality heat maps.

All generator calls go through :func:`otresefa.editing.edit`, batched: a figure renders all its
tiles in one call.  Figures show one latent: ``w [w_dim]``, a W+ latent ``[num_ws, w_dim]`` or
``[1, num_ws, w_dim]``, or (with ``space="z"``) ``z [z_dim]``.  ``**edit_options`` are passed to
``edit`` (``space``, ``noise_mode``, ``truncation_psi``, ``batch_size``).

Alphas are shown with the original in the middle: :func:`strip_alphas` sorts them and adds 0 when
it is missing, and the original's tile is framed in red.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from otresefa.editing import Edit, as_edit, compose, edit, strength_caption
from otresefa.latents import one_ws
from otresefa.io import atomic_path
from otresefa.metrics.locality import change_outside_fraction, region_mask
from otresefa.models import Generator
from otresefa.regions import Region
from otresefa.render.images import (
    DEFAULT_DISPLAY_SIZE,
    draw_mask_outline,
    make_grid,
    tiles_from_images,
    to_pil,
    to_uint8,
    upscale,
)

DEFAULT_ALPHAS = (-3.0, -1.5, 0.0, 1.5, 3.0)
# H.264 codes 16x16 macroblocks; frames padded to a multiple of 16 also satisfy yuv420p's even
# sizes and stop imageio-ffmpeg from rescaling them.
MP4_BLOCK = 16


# --- inputs ---------------------------------------------------------------------------------------

def single_direction(direction: Any) -> Edit:
    """An edit along one direction: a vector ``[dim]``, a ``[1, dim]`` matrix or a one-direction
    :class:`~otresefa.editing.Edit` (e.g. ``directions.select(0)``)."""
    edit_ = as_edit(direction)
    if len(edit_) != 1:
        raise ValueError(f"expected one direction, got {len(edit_)}; pick one, e.g. directions.select(0) "
                         "or directions[0]")
    return edit_


def strip_alphas(alphas: Sequence[float]) -> list[float]:
    """Sorted distinct strengths with 0 (the original) included, so the original sits between the
    negative and the positive edits."""
    values = sorted({float(a) for a in alphas} | {0.0})
    if not all(np.isfinite(values)):
        raise ValueError(f"edit strengths must be finite, got {list(alphas)}")
    return values


def sweep_alphas(max_alpha: float, count: int) -> list[float]:
    """``count`` strengths from ``-max_alpha`` to ``+max_alpha``; odd counts hit 0 exactly."""
    if count < 2:
        raise ValueError(f"a sweep needs at least 2 strengths, got {count}")
    if not max_alpha > 0:
        raise ValueError(f"a sweep's largest strength must be positive, got {max_alpha}")
    return [max_alpha * (2 * i / (count - 1) - 1) for i in range(count)]


UNITS_NOTE = "u = region units: +1 u changes the region by an RMS of 0.05 per channel (images in [-1, 1])"


def render_edits(G: Generator, latent: torch.Tensor, directions: Any, alphas: Any,
                 layers: Sequence[int] | None = None, **edit_options) -> torch.Tensor:
    """``edit`` for one latent -> ``[A, C, R, R]`` (accepts a W+ latent ``[num_ws, w_dim]`` too)."""
    if edit_options.get("space", "w") == "w":
        latent = one_ws(G, latent)  # [1, num_ws, w_dim]
    else:
        latent = torch.as_tensor(latent, dtype=torch.float32).reshape(1, -1)
    return edit(G, latent, directions, alphas, layers=layers, **edit_options)[0]


# --- strips and sweeps ------------------------------------------------------------------------------

def strip_from_images(images: torch.Tensor, alphas: Sequence[float], display_size: int | None = DEFAULT_DISPLAY_SIZE,
                      resample: str = "nearest", title: str | None = None, edit: Edit | None = None) -> Image.Image:
    """One row of already rendered edits ``[A, C, R, R]`` for sorted ``alphas`` (containing 0),
    captioned as ``edit`` writes its strengths."""
    if len(images) != len(alphas):
        raise ValueError(f"{len(images)} images for {len(alphas)} strengths")
    marked = [(0, i) for i, a in enumerate(alphas) if a == 0]
    return make_grid([tiles_from_images(images, display_size, resample)],
                     captions=[[strength_caption(a, edit) for a in alphas]], marked=marked, title=title,
                     footer=UNITS_NOTE if edit is not None and edit.in_region_units else None)


def strip(G: Generator, latent: torch.Tensor, direction: Any, alphas: Sequence[float] = DEFAULT_ALPHAS,
          layers: Sequence[int] | None = None, display_size: int | None = DEFAULT_DISPLAY_SIZE,
          resample: str = "nearest", title: str | None = None, **edit_options) -> Image.Image:
    """Edits along one direction in one row (the paper's Fig. 3): negative strengths left, the framed
    original in the middle, positive strengths right; each tile captioned with its alpha."""
    alphas = strip_alphas(alphas)
    one = single_direction(direction)
    images = render_edits(G, latent, one, alphas, layers, **edit_options)  # [A, C, R, R]
    return strip_from_images(images, alphas, display_size, resample, title, one)


def sweep_row(G: Generator, latent: torch.Tensor, direction: Any, max_alpha: float = 3.0, count: int = 9,
              **strip_options) -> Image.Image:
    """A strength sweep from ``-max_alpha`` to ``+max_alpha`` in one row (Fig. 6); ``count`` tiles
    for odd ``count`` (an even count gets the original added)."""
    return strip(G, latent, direction, sweep_alphas(max_alpha, count), **strip_options)


def sweep_frames(G: Generator, latent: torch.Tensor, direction: Any, max_alpha: float = 3.0, num_frames: int = 25,
                 layers: Sequence[int] | None = None, display_size: int | None = DEFAULT_DISPLAY_SIZE,
                 resample: str = "nearest", annotate: bool = True, **edit_options) -> list[np.ndarray]:
    """Frames ``[H, W, 3]`` uint8 of a sweep from ``-max_alpha`` to ``+max_alpha``, for
    :func:`save_gif` / :func:`save_mp4`.  ``annotate`` adds the frame's alpha in a bar below."""
    alphas = sweep_alphas(max_alpha, num_frames)
    one = single_direction(direction)
    images = render_edits(G, latent, one, alphas, layers, **edit_options)  # [F, C, R, R]
    tiles = tiles_from_images(images, display_size, resample)
    if annotate:
        # a fixed number format keeps the caption from jittering between frames
        unit = "{:+.2f} u" if one.in_region_units else "alpha {:+.2f}"
        tiles = [make_grid([[tile]], captions=[[unit.format(a)]]) for tile, a in zip(tiles, alphas)]
    return [np.asarray(tile) for tile in tiles]


def pingpong(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Forward then backward, without repeating the end frames, so a looping player never pauses:
    ``[0, 1, 2, 3] -> [0, 1, 2, 3, 2, 1]``."""
    frames = list(frames)
    return frames + frames[-2:0:-1]


def _frame_stack(frames: Sequence[np.ndarray], loop_pingpong: bool) -> np.ndarray:
    """Validated frames as ``[F, H, W, 3]`` uint8, ping-ponged if asked."""
    if not frames:
        raise ValueError("no frames to save")
    shapes = {np.shape(frame) for frame in frames}
    if len(shapes) != 1:
        raise ValueError(f"all frames must have one size, got {sorted(shapes)}")
    stack = np.stack(pingpong(frames) if loop_pingpong else list(frames))  # [F, H, W, 3]
    if stack.dtype != np.uint8 or stack.ndim != 4 or stack.shape[-1] != 3:
        raise ValueError(f"frames must be [H, W, 3] uint8, got {stack.dtype} frames of shape {list(stack.shape[1:])}")
    return stack


def save_gif(frames: Sequence[np.ndarray], path, fps: float = 12, pingpong: bool = True) -> Path:
    """Write a looping GIF (atomically).  GIF stores delays in 1/100 s, so ``fps`` is approximate."""
    stack = _frame_stack(frames, pingpong)
    with atomic_path(path) as temp:
        iio.imwrite(temp, stack, extension=".gif", duration=1000 / fps, loop=0)
    return Path(path)


def pad_to_multiple(frames: np.ndarray, multiple: int, fill: int = 255) -> np.ndarray:
    """``[F, H, W, 3]`` -> ``[F, H', W', 3]`` with H', W' rounded up to ``multiple``, padded at the
    bottom and right with ``fill`` (white, like the figures' background)."""
    height, width = frames.shape[1:3]
    pad_h, pad_w = -height % multiple, -width % multiple
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=fill)


def save_mp4(frames: Sequence[np.ndarray], path, fps: float = 24, pingpong: bool = True) -> Path:
    """Write an H.264 MP4 (yuv420p, plays in browsers) with imageio-ffmpeg's ffmpeg, atomically.

    Frames are padded with white at the bottom/right to a multiple of 16 (:data:`MP4_BLOCK`).
    """
    stack = pad_to_multiple(_frame_stack(frames, pingpong), MP4_BLOCK)  # [F, H', W', 3]
    height, width = stack.shape[1:3]
    with atomic_path(path) as temp:
        writer = imageio_ffmpeg.write_frames(str(temp), (width, height), fps=fps, codec="libx264",
                                             pix_fmt_out="yuv420p", quality=8, macro_block_size=MP4_BLOCK)
        try:
            writer.send(None)  # start ffmpeg
            for frame in stack:
                writer.send(np.ascontiguousarray(frame))
        except (OSError, RuntimeError) as error:
            raise RuntimeError(f"ffmpeg could not write {path}: {error}") from error
        finally:
            writer.close()
    return Path(path)


# --- comparisons and chains ---------------------------------------------------------------------------

def comparison_grid(G: Generator, latent: torch.Tensor, methods: Mapping[str, Any],
                    alphas: Sequence[float] = DEFAULT_ALPHAS, region: Region | torch.Tensor | None = None,
                    layers: Sequence[int] | None = None, display_size: int | None = DEFAULT_DISPLAY_SIZE,
                    resample: str = "nearest", title: str | None = None, footer: str | None = None,
                    **edit_options) -> Image.Image:
    """One row per method for the same latent (the paper's Fig. 2), labelled with the method names.

    ``methods`` maps a row label to one direction.  With ``region``, its outline is drawn on each
    row's original tile.  Directions are shown with the sign each method returned.
    """
    if not methods:
        raise ValueError("a comparison needs at least one method")
    labels = list(methods)
    rows_edit = compose([single_direction(methods[label]) for label in labels])  # M directions
    alphas = strip_alphas(alphas)
    num_methods, num_alphas = len(labels), len(alphas)
    # row m of the grid moves along direction m only: strengths [M, A, M] with alphas on the diagonal
    strengths = torch.zeros(num_methods, num_alphas, num_methods)
    strengths[torch.arange(num_methods), :, torch.arange(num_methods)] = torch.tensor(alphas)
    strengths = strengths.reshape(-1, num_methods)  # [M*A, M]
    images = render_edits(G, latent, rows_edit, strengths, layers, **edit_options)  # [M*A, C, R, R]
    origin = alphas.index(0.0)
    rows = [tiles_from_images(chunk, display_size, resample) for chunk in images.split(num_alphas)]
    if region is not None:
        mask = region_mask(region, tuple(images.shape[-2:]))
        for row in rows:
            row[origin] = draw_mask_outline(row[origin], mask)
    footer = " ".join(filter(None, [footer, UNITS_NOTE if rows_edit.in_region_units else None])) or None
    return make_grid(rows, row_labels=labels, column_labels=[strength_caption(a, rows_edit) for a in alphas],
                     marked=[(m, origin) for m in range(num_methods)], title=title, footer=footer)


def chain(G: Generator, latent: torch.Tensor, directions: Sequence[Any], alphas: Sequence[float], steps: int = 4,
          labels: Sequence[str] | None = None, layers: Sequence[int] | None = None,
          display_size: int | None = DEFAULT_DISPLAY_SIZE, resample: str = "nearest", title: str | None = None,
          **edit_options) -> Image.Image:
    """A multi-semantic edit (the paper's Fig. 5, eq. 28): row ``i`` moves along direction ``i`` from
    0 to ``alphas[i]`` in ``steps`` steps, on top of the full edits of the rows above it, so each row
    starts where the previous ended and the last tile carries all edits."""
    chained = compose([single_direction(d) for d in directions])  # m directions
    num = len(chained)
    if len(alphas) != num:
        raise ValueError(f"{num} directions need {num} strengths, got {len(alphas)}")
    if steps < 1:
        raise ValueError(f"a chain needs at least 1 step per direction, got {steps}")
    labels = [f"direction {i + 1}" for i in range(num)] if labels is None else list(labels)
    if len(labels) != num:
        raise ValueError(f"{len(labels)} labels for {num} directions")
    full = torch.tensor([float(a) for a in alphas])  # [m]
    fractions = torch.linspace(0, 1, steps + 1)  # [T]
    strengths = torch.zeros(num, steps + 1, num)  # [m, T, m]: row i, tile t -> strengths of all directions
    for i in range(num):
        strengths[i, :, :i] = full[:i]
        strengths[i, :, i] = fractions * full[i]
    images = render_edits(G, latent, chained, strengths.reshape(-1, num), layers, **edit_options)  # [m*T, C, R, R]
    rows = [tiles_from_images(chunk, display_size, resample) for chunk in images.split(steps + 1)]
    captions = [["rows above"] + [strength_caption(float(t) * float(full[i]), chained) for t in fractions[1:]]
                for i in range(num)]
    captions[0][0] = "original"
    captions[-1][-1] = "all edits"
    row_labels = [f"{label} ({float(a):+g})" for label, a in zip(labels, full)]
    return make_grid(rows, row_labels=row_labels, captions=captions, marked=[(0, 0)], title=title)


# --- locality ---------------------------------------------------------------------------------------

def change_map(original: torch.Tensor, edited: torch.Tensor) -> torch.Tensor:
    """``|edited - original|`` summed over channels: ``[..., C, H, W]`` -> ``[..., H, W]``."""
    return (torch.as_tensor(edited, dtype=torch.float64) - torch.as_tensor(original, dtype=torch.float64)).abs().sum(-3)


def describe_outside(fraction: float, region_name: str = "region") -> str:
    """A :func:`change_outside_fraction` value as caption text."""
    return "no change" if np.isnan(fraction) else f"{100 * fraction:.1f}% of change outside {region_name}"


def heat_overlay(original: torch.Tensor, heat: torch.Tensor, scale: float, colormap: str = "inferno",
                 min_opacity: float = 0.35) -> Image.Image:
    """``heat [H, W]`` through ``colormap`` (``heat / scale`` clipped to [0, 1]) over a greyscale copy
    of ``original [C, H, W]``.  Grey keeps the map's colours unambiguous; the map's opacity grows
    from ``min_opacity`` (unchanged pixels: the face shows through) to 1 (full-scale change)."""
    grey = to_uint8(original).astype(np.float64).mean(-1, keepdims=True) / 255  # [H, W, 1]
    level = np.clip(np.asarray(heat, dtype=np.float64) / scale, 0, 1)  # [H, W]
    colours = colormaps[colormap](level)[..., :3]  # [H, W, 3]
    opacity = (min_opacity + (1 - min_opacity) * level)[..., None]  # [H, W, 1]
    blended = (1 - opacity) * grey + opacity * colours
    return Image.fromarray(np.round(blended * 255).astype(np.uint8))


def locality_view(original: torch.Tensor, edited: torch.Tensor, region: Region | torch.Tensor,
                  scale: float | None = None, colormap: str = "inferno", display_size: int | None = DEFAULT_DISPLAY_SIZE,
                  resample: str = "nearest", edited_caption: str = "edited", title: str | None = None) -> Image.Image:
    """Where an edit changed the image: original | edited | heat map of ``|edited - original|``
    (summed over RGB) over the original, each with the region outlined; the heat tile's caption gives
    :func:`change_outside_fraction`.

    ``scale``: heat value shown at full colour.  None (default) is per-image (this edit's largest
    change), which shows the pattern of any edit; pass one fixed value to panels that are compared
    side by side so that their colours mean the same change.
    """
    original, edited = torch.as_tensor(original), torch.as_tensor(edited)
    if original.shape != edited.shape or original.ndim != 3:
        raise ValueError(f"expected two images [C, H, W] of one shape, "
                         f"got {list(original.shape)} and {list(edited.shape)}")
    mask = region_mask(region, tuple(original.shape[-2:]))  # [H, W]
    region_name = region.name if isinstance(region, Region) else "region"
    heat = change_map(original, edited)  # [H, W]
    fixed = scale is not None
    scale = float(scale) if fixed else (float(heat.max()) or 1.0)
    if not scale > 0:
        raise ValueError(f"the heat map scale must be positive, got {scale}")
    fraction = float(change_outside_fraction(original, edited, mask))
    panels = [to_pil(original), to_pil(edited), heat_overlay(original, heat, scale, colormap)]
    tiles = [draw_mask_outline(upscale(panel, display_size, resample), mask) for panel in panels]
    footer = f"heat: |change| summed over RGB, full colour at {scale:.3g} ({'fixed' if fixed else 'per-image'} scale)"
    captions = [["original", edited_caption, describe_outside(fraction, region_name)]]
    return make_grid([tiles], captions=captions, title=title, footer=footer)
