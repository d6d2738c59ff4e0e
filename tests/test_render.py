"""Figures: tile counts and sizes, the original in the middle, sweeps as GIF/MP4, locality numbers."""

from __future__ import annotations

import os
import stat
import subprocess

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from otresefa.editing import edit
from otresefa.latents import w_from_seed
from otresefa.regions import box_region
from otresefa.render.figures import (
    chain,
    change_outside_fraction,
    comparison_grid,
    locality_view,
    pingpong,
    save_gif,
    save_mp4,
    strip,
    strip_alphas,
    sweep_frames,
    sweep_row,
)
from otresefa.render.images import make_grid, save_png, to_pil, to_uint8, upscale

DISPLAY = 32  # 16 px tiles shown at 32 px keep the tests fast


def unit(dim, seed):
    v = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def tile(image, box):
    return np.asarray(image.crop(box))


def ffmpeg_runs() -> str | None:
    """None when imageio-ffmpeg's ffmpeg runs, else the reason it cannot."""
    try:
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-version"], check=True, capture_output=True, timeout=30)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        return f"imageio-ffmpeg's ffmpeg cannot run here: {error}"
    return None


def test_images_are_clamped_to_uint8_and_upscaled_by_a_whole_factor():
    images = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 5).expand(3, 1, 5)  # [C, H, W]
    assert to_uint8(images)[0, :, 0].tolist() == [0, 0, 128, 255, 255]
    picture = to_pil(torch.zeros(3, 64, 64))
    for resample in ("nearest", "lanczos"):
        assert upscale(picture, 256, resample).size == (256, 256)
    assert upscale(to_pil(torch.zeros(3, 100, 100)), 256).size == (300, 300)
    assert upscale(to_pil(torch.zeros(3, 512, 512)), 256).size == (512, 512)  # never shrinks
    with pytest.raises(ValueError, match="resampling"):
        upscale(picture, 256, "bicubic")


def test_grid_records_tile_boxes_and_refuses_mixed_sizes(tmp_path):
    tiles = [to_pil(torch.zeros(3, 8, 8))] * 3
    grid = make_grid([tiles, tiles[:2]], row_labels=["a", "b"], column_labels=["x", "y", "z"],
                     captions=[["1", "2", "3"], ["4", None]], title="t", footer="f")
    boxes = grid.info["tiles"]
    assert [len(row) for row in boxes] == [3, 2]
    assert all(right - left == 8 and bottom - top == 8 for row in boxes for left, top, right, bottom in row)
    save_png(grid, tmp_path / "grid.png")
    assert list(tmp_path.iterdir()) == [tmp_path / "grid.png"]  # no temporary file left
    with pytest.raises(ValueError, match="one size"):
        make_grid([[tiles[0], to_pil(torch.zeros(3, 4, 4))]])


def test_strip_puts_the_framed_original_in_the_middle(tiny_generator):
    G = tiny_generator
    w, direction = w_from_seed(G, 3), unit(G.w_dim, 0)
    alphas = (3.0, -1.5, 1.5, -3.0)  # unsorted and without 0
    assert strip_alphas(alphas) == [-3.0, -1.5, 0.0, 1.5, 3.0]
    image = strip(G, w, direction, alphas, display_size=DISPLAY)
    boxes = image.info["tiles"]
    assert len(boxes) == 1 and len(boxes[0]) == 5
    assert all((right - left, bottom - top) == (DISPLAY, DISPLAY) for left, top, right, bottom in boxes[0])
    original = upscale(to_pil(edit(G, w, direction, [0.0])[0]), DISPLAY)
    np.testing.assert_allclose(tile(image, boxes[0][2]), np.asarray(original), atol=1)
    left, top, right, bottom = boxes[0][2]
    assert image.getpixel((left - 2, top - 2))[0] > 200  # the red frame around the original
    assert image.getpixel((boxes[0][0][0] - 2, top - 2)) == (255, 255, 255)  # none around an edit


def test_sweep_row_and_frames_have_the_requested_count_and_size(tiny_generator):
    G = tiny_generator
    w, direction = w_from_seed(G, 3), unit(G.w_dim, 1)
    assert len(sweep_row(G, w, direction, 2.0, 7, display_size=DISPLAY).info["tiles"][0]) == 7
    frames = sweep_frames(G, w, direction, 2.0, 4, display_size=DISPLAY, annotate=False)
    assert len(frames) == 4 and all(f.shape == (DISPLAY, DISPLAY, 3) and f.dtype == np.uint8 for f in frames)
    annotated = sweep_frames(G, w, direction, 2.0, 4, display_size=DISPLAY)
    assert len({f.shape for f in annotated}) == 1 and annotated[0].shape[0] > DISPLAY  # caption bar below


def test_pingpong_goes_forward_then_back_without_repeating_the_ends():
    assert pingpong([0, 1, 2, 3]) == [0, 1, 2, 3, 2, 1]
    assert pingpong([0, 1]) == [0, 1]
    assert pingpong([0]) == [0]


def grey_frames(levels, height=24, width=40):
    return [np.full((height, width, 3), level, dtype=np.uint8) for level in levels]


LEVELS = [0, 60, 120, 180, 240]


def test_gif_frames_play_forward_then_backward(tmp_path):
    path = save_gif(grey_frames(LEVELS), tmp_path / "sweep.gif", fps=10)
    frames = iio.imread(path, index=None)  # [F, H, W, C]
    assert frames.shape[:3] == (8, 24, 40)
    assert [int(round(f[..., :3].mean())) for f in frames] == [0, 60, 120, 180, 240, 180, 120, 60]
    once = iio.imread(save_gif(grey_frames(LEVELS), tmp_path / "once.gif", pingpong=False), index=None)
    assert once.shape[0] == 5


def test_mp4_frames_are_padded_to_16_and_play_forward_then_backward(tmp_path):
    reason = ffmpeg_runs()
    if reason:
        pytest.skip(reason)
    path = save_mp4(grey_frames(LEVELS), tmp_path / "sweep.mp4", fps=10)
    frames = iio.imread(path, index=None, plugin="FFMPEG")  # [F, H, W, 3]
    assert frames.shape[:3] == (8, 32, 48)  # 24 x 40 padded to multiples of 16
    means = [float(f[:24, :40].mean()) for f in frames]
    np.testing.assert_allclose(means, [0, 60, 120, 180, 240, 180, 120, 60], atol=6)
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.mp4"]


def test_change_outside_fraction_is_0_inside_and_1_outside():
    region = box_region([8, 8, 6, 6], 16, reference_size=16)
    original = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0))
    delta = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1))
    inside, outside = original + delta * region.mask, original + delta * ~region.mask
    assert float(change_outside_fraction(original, inside, region)) == 0.0
    assert float(change_outside_fraction(original, outside, region.mask)) == pytest.approx(1.0)
    assert torch.isnan(change_outside_fraction(original, original, region))
    batch = change_outside_fraction(original, torch.stack([inside, outside]), region)  # [2]
    torch.testing.assert_close(batch, torch.tensor([0.0, 1.0], dtype=torch.float64))
    # a mask at another size is resized to the images
    assert float(change_outside_fraction(original, inside, region.resized(64))) == 0.0


def test_locality_view_captions_the_fraction_and_outlines_the_region():
    region = box_region([8, 8, 6, 6], 16, reference_size=16)
    original = torch.zeros(3, 16, 16)
    edited = original + 0.5 * region.mask
    view = locality_view(original, edited, region, display_size=DISPLAY)
    boxes = view.info["tiles"][0]
    assert len(boxes) == 3
    heat = tile(view, boxes[2])
    cyan = (heat == [0, 229, 255]).all(-1)
    assert cyan.any()  # the outline is drawn, as thin lines: few pixels
    assert cyan.mean() < 0.2
    fixed = locality_view(original, edited, region, scale=10.0, display_size=DISPLAY)
    assert tile(fixed, boxes[2]).sum() < heat.sum()  # a larger fixed scale shows the same change dimmer


def test_comparison_grid_has_a_row_per_method_with_outlined_originals(tiny_generator):
    G = tiny_generator
    w = w_from_seed(G, 2)
    region = box_region([8, 8, 6, 6], 16, reference_size=16)
    methods = {"first": unit(G.w_dim, 0), "second": unit(G.w_dim, 1), "third": unit(G.w_dim, 2)}
    grid = comparison_grid(G, w, methods, alphas=(-2.0, 2.0), region=region, display_size=DISPLAY)
    boxes = grid.info["tiles"]
    assert [len(row) for row in boxes] == [3, 3, 3]
    originals = [tile(grid, row[1]) for row in boxes]
    np.testing.assert_array_equal(originals[0], originals[2])  # the same seed in every row
    assert (originals[0] == [0, 229, 255]).all(-1).any()
    assert not np.array_equal(tile(grid, boxes[0][2]), tile(grid, boxes[1][2]))


def test_chain_ends_with_all_edits_applied(tiny_generator):
    G = tiny_generator
    w = w_from_seed(G, 2)
    directions, alphas = [unit(G.w_dim, 0), unit(G.w_dim, 1)], [2.0, -1.5]
    image = chain(G, w, directions, alphas, steps=2, labels=["a", "b"], display_size=DISPLAY)
    boxes = image.info["tiles"]
    assert [len(row) for row in boxes] == [3, 3]
    composed = upscale(to_pil(edit(G, w, torch.stack(directions), alphas)[0]), DISPLAY)
    np.testing.assert_allclose(tile(image, boxes[1][2]), np.asarray(composed), atol=1)
    np.testing.assert_array_equal(tile(image, boxes[0][2]), tile(image, boxes[1][0]))  # rows continue


def test_a_direction_of_the_wrong_dimension_is_named(tiny_generator):
    G = tiny_generator
    with pytest.raises(ValueError, match=f"dimension {G.w_dim + 1}.*dimension {G.w_dim}"):
        strip(G, w_from_seed(G, 0), torch.ones(G.w_dim + 1), display_size=DISPLAY)
    with pytest.raises(ValueError, match="one direction"):
        strip(G, w_from_seed(G, 0), torch.ones(2, G.w_dim), display_size=DISPLAY)


def test_written_files_get_the_usual_permissions_not_mkstemps(tmp_path):
    previous = os.umask(0o022)
    try:
        path = save_png(Image.new("RGB", (4, 4)), tmp_path / "tile.png")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
