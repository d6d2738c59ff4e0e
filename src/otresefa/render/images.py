"""Generator images as pictures: conversion, upscaling for viewing, labelled grids, atomic saving.

Generator output is ``[C, H, W]`` (or ``[N, C, H, W]``) floats in about ``[-1, 1]``; everything here
clamps to that range first.  Small models' images are upscaled by a whole factor to at least
``display_size`` pixels so that a 64 px face and its captions stay legible (nearest keeps the pixels
visible, Lanczos looks smoother; both give the same size).  Text uses Pillow's built-in font, sized
from the tile width, so it needs no font files.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from otresefa.io import atomic_path

DEFAULT_DISPLAY_SIZE = 256
RESAMPLE_FILTERS = {"nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}
BACKGROUND = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)
MARK_COLOR = (220, 40, 40)  # frame around the original (unedited) tile
OUTLINE_COLOR = (0, 229, 255)  # region outlines: cyan reads well on faces and on the inferno heat map


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[..., C, H, W]`` floats in [-1, 1] (clamped) -> ``[..., H, W, 3]`` uint8 (grey images become RGB)."""
    images = torch.as_tensor(images).detach().to("cpu", torch.float32)
    if images.ndim < 3 or images.shape[-3] not in (1, 3):
        raise ValueError(f"expected images [..., C, H, W] with 1 or 3 channels, got shape {list(images.shape)}")
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # [..., C, H, W]
    pixels = pixels.movedim(-3, -1)  # [..., H, W, C]
    if pixels.shape[-1] == 1:
        pixels = pixels.expand(*pixels.shape[:-1], 3)
    return np.ascontiguousarray(pixels.numpy())


def to_pil(image: torch.Tensor | np.ndarray) -> Image.Image:
    """One image, ``[C, H, W]`` floats in [-1, 1] or ``[H, W, 3]`` uint8, as an RGB PIL image."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        return Image.fromarray(image).convert("RGB")
    array = to_uint8(image)
    if array.ndim != 3:
        raise ValueError(f"to_pil takes one image [C, H, W], got a batch of shape {list(array.shape)}")
    return Image.fromarray(array)


def display_scale(size: int, display_size: int | None) -> int:
    """Whole upscaling factor that shows a ``size`` px image at >= ``display_size`` px (never shrinks)."""
    if display_size is None or size >= display_size:
        return 1
    return math.ceil(display_size / size)


def upscale(image: Image.Image, display_size: int | None = DEFAULT_DISPLAY_SIZE, resample: str = "nearest") -> Image.Image:
    """``image`` enlarged by :func:`display_scale` of its longer side, with ``resample`` ("nearest"/"lanczos")."""
    if resample not in RESAMPLE_FILTERS:
        raise ValueError(f"unknown resampling {resample!r}; expected one of {sorted(RESAMPLE_FILTERS)}")
    factor = display_scale(max(image.size), display_size)
    if factor == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), RESAMPLE_FILTERS[resample])


def tiles_from_images(images: torch.Tensor, display_size: int | None = DEFAULT_DISPLAY_SIZE,
                      resample: str = "nearest") -> list[Image.Image]:
    """``[A, C, H, W]`` generator images -> ``A`` upscaled PIL tiles."""
    return [upscale(to_pil(image), display_size, resample) for image in images]


def load_font(size: int) -> ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` px (a FreeType font since Pillow 10.1, no files needed)."""
    return ImageFont.load_default(size=size)


def font_size_for(tile_width: int) -> int:
    """Caption size readable next to a ``tile_width`` px tile without dwarfing it."""
    return int(min(36, max(12, round(tile_width / 18))))


def _text_width(font: ImageFont.ImageFont, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(math.ceil(right - left))


def wrap_text(text: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    """Greedy word wrap of ``text`` to lines at most ``width`` px wide (a single long word stays whole)."""
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and _text_width(font, candidate) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _line_height(font: ImageFont.ImageFont) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent + 2


def _text_block_height(lines_per_cell: Sequence[list[str]], font: ImageFont.ImageFont) -> int:
    most = max((len(lines) for lines in lines_per_cell), default=0)
    return most * _line_height(font)


def _draw_lines(draw: ImageDraw.ImageDraw, lines: list[str], font, left: int, top: int, width: int) -> None:
    """Lines centred horizontally in ``[left, left + width)``, from ``top`` down."""
    for i, line in enumerate(lines):
        x = left + (width - _text_width(font, line)) // 2
        draw.text((x, top + i * _line_height(font)), line, font=font, fill=TEXT_COLOR)


def make_grid(
    rows: Sequence[Sequence[Image.Image]],
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    captions: Sequence[Sequence[str | None]] | None = None,
    marked: Sequence[tuple[int, int]] = (),
    title: str | None = None,
    footer: str | None = None,
    padding: int | None = None,
) -> Image.Image:
    """Tiles laid out in rows, with optional labels, per-tile captions, marked tiles and title/footer.

    Args:
        rows: ``rows[r][c]`` PIL tiles; all tiles must have one size.  Rows may be shorter than the
            longest (their missing cells stay empty).
        row_labels: one label per row, drawn left of the row.
        column_labels: one label per column, drawn above the first row.
        captions: ``captions[r][c]`` text under each tile (None or "" for none), wrapped to the tile width.
        marked: ``(row, column)`` cells framed in red (e.g. the unedited original); the frame sits in
            the padding so it hides no pixel of the tile.
        title, footer: text above / below the whole grid, wrapped to its width.

    The returned image's ``info["tiles"]`` holds each tile's box ``(left, top, right, bottom)``,
    row by row, for tests and for UIs that map clicks to tiles.
    """
    if not rows or not any(rows):
        raise ValueError("a grid needs at least one tile")
    sizes = {tile.size for row in rows for tile in row}
    if len(sizes) != 1:
        raise ValueError(f"grid tiles must all have one size, got {sorted(sizes)}")
    tile_w, tile_h = sizes.pop()
    num_rows, num_cols = len(rows), max(len(row) for row in rows)
    if row_labels is not None and len(row_labels) != num_rows:
        raise ValueError(f"{len(row_labels)} row labels for {num_rows} rows")
    if column_labels is not None and len(column_labels) != num_cols:
        raise ValueError(f"{len(column_labels)} column labels for {num_cols} columns")
    font = load_font(font_size_for(tile_w))
    pad = max(4, tile_w // 48) if padding is None else padding
    frame = max(2, pad // 2)

    caption_lines = [[wrap_text(text or "", font, tile_w) if text else [] for text in row] for row in (captions or [])]
    caption_h = _text_block_height([cell for row in caption_lines for cell in row], font)
    label_w = max((_text_width(font, label) for label in row_labels), default=0) + 2 * pad if row_labels else 0
    column_lines = [wrap_text(label, font, tile_w) for label in column_labels] if column_labels else []
    column_h = _text_block_height(column_lines, font)
    cell_w, cell_h = tile_w + 2 * pad, tile_h + 2 * pad + caption_h
    grid_w = label_w + num_cols * cell_w + pad * 2
    title_lines = wrap_text(title, font, grid_w - 2 * pad) if title else []
    footer_lines = wrap_text(footer, font, grid_w - 2 * pad) if footer else []
    title_h = _text_block_height([title_lines], font) + (pad if title else 0)
    footer_h = _text_block_height([footer_lines], font) + (pad if footer else 0)
    top = pad + title_h + column_h
    grid_h = top + num_rows * cell_h + footer_h + pad

    canvas = Image.new("RGB", (grid_w, grid_h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    _draw_lines(draw, title_lines, font, pad, pad, grid_w - 2 * pad)
    left = pad + label_w
    for c, lines in enumerate(column_lines):
        _draw_lines(draw, lines, font, left + c * cell_w, pad + title_h, cell_w)
    marked_cells = set(marked)
    boxes: list[list[tuple[int, int, int, int]]] = []
    for r, row in enumerate(rows):
        boxes.append([])
        y = top + r * cell_h
        if row_labels:
            label_y = y + pad + (tile_h - _line_height(font)) // 2
            draw.text((pad, label_y), row_labels[r], font=font, fill=TEXT_COLOR)
        for c, tile in enumerate(row):
            x = left + c * cell_w
            canvas.paste(tile, (x + pad, y + pad))
            boxes[r].append((x + pad, y + pad, x + pad + tile_w, y + pad + tile_h))
            if (r, c) in marked_cells:
                draw.rectangle([x + pad - frame, y + pad - frame, x + pad + tile_w + frame - 1,
                                y + pad + tile_h + frame - 1], outline=MARK_COLOR, width=frame)
            if caption_lines and r < len(caption_lines) and c < len(caption_lines[r]):
                _draw_lines(draw, caption_lines[r][c], font, x, y + tile_h + 2 * pad, cell_w)
    _draw_lines(draw, footer_lines, font, pad, top + num_rows * cell_h, grid_w - 2 * pad)
    canvas.info["tiles"] = boxes
    return canvas


def mask_boundary(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels of ``mask [H, W]`` (bool) within ``width`` px of a pixel outside it (the image border
    counts as outside)."""
    mask = np.asarray(mask, dtype=bool)
    inner = mask.copy()
    for _ in range(width):
        padded = np.pad(inner, 1, constant_values=False)  # [H + 2, W + 2]
        inner = (inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~inner


def draw_mask_outline(image: Image.Image, mask: torch.Tensor | np.ndarray, color=OUTLINE_COLOR,
                      width: int | None = None) -> Image.Image:
    """A copy of ``image`` with the outline of ``mask [h, w]`` drawn on it.

    The mask is enlarged to the image size with nearest neighbour before its boundary is taken, so
    the outline follows the mask's pixel edges as a thin crisp line instead of thick blocks.
    """
    mask = np.asarray(torch.as_tensor(mask).cpu(), dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a mask is [H, W], got shape {list(mask.shape)}")
    big = np.asarray(Image.fromarray(mask).resize(image.size, Image.Resampling.NEAREST), dtype=bool)  # [H, W]
    width = max(1, image.width // 128) if width is None else width
    pixels = np.array(image.convert("RGB"))  # [H, W, 3]
    pixels[mask_boundary(big, width)] = color
    return Image.fromarray(pixels)


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write ``image`` as PNG to ``path`` atomically (temporary file + ``os.replace``)."""
    path = Path(path)
    with atomic_path(path) as temp:
        image.save(temp, format="PNG")
    return path
