"""Tests of the synthetic-face attributes and renderer (otresefa.synthfaces)."""

import math

import pytest
import torch
from PIL import Image

from otresefa.synthfaces import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    NUM_ATTRIBUTES,
    PART_NAMES,
    attribute_index,
    attribute_visibility,
    gallery,
    part_index,
    render,
    render_seed,
    sample_attributes,
    sweep,
)


def _neutral_pose(attrs: torch.Tensor) -> torch.Tensor:
    """Centre the head and remove roll, so image regions can be named by coordinates."""
    attrs = attrs.clone()
    for name in ("head_shift_x", "head_shift_y", "head_roll"):
        attrs[:, attribute_index(name)] = 0.5
    return attrs


def _with(attrs: torch.Tensor, **values: float) -> torch.Tensor:
    attrs = attrs.clone()
    for name, value in values.items():
        attrs[:, attribute_index(name)] = value
    return attrs


def _count(parts: torch.Tensor, name: str) -> torch.Tensor:
    """Pixels of part ``name`` per face: [n]."""
    return (parts == part_index(name)).flatten(1).sum(1)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Renders are many small ops: one thread is fastest and avoids contention on shared CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batch():
    attrs = sample_attributes(24, seed=7)
    return attrs, render(attrs, 64)


# ---------------------------------------------------------------- attributes


def test_attribute_table_is_consistent():
    assert len(ATTRIBUTE_NAMES) == NUM_ATTRIBUTES == len(set(ATTRIBUTE_NAMES))
    assert all(spec.kind in ("continuous", "binary") for spec in ATTRIBUTES)
    assert [attribute_index(name) for name in ATTRIBUTE_NAMES] == list(range(NUM_ATTRIBUTES))
    with pytest.raises(ValueError, match="unknown attribute"):
        attribute_index("beard")


def test_sampling_is_deterministic_and_seed_dependent():
    first = sample_attributes(16, seed=3)
    assert first.dtype == torch.float32 and first.shape == (16, NUM_ATTRIBUTES)
    assert torch.equal(first, sample_attributes(16, seed=3))
    assert not torch.equal(first, sample_attributes(16, seed=4))
    # Rows depend only on (seed, row): a smaller draw is a prefix.
    assert torch.equal(first[:5], sample_attributes(5, seed=3))


def test_sampling_distribution():
    attrs = sample_attributes(4000, seed=0)
    assert attrs.min() >= 0 and attrs.max() <= 1
    glasses = attrs[:, attribute_index("glasses")]
    assert set(glasses.unique().tolist()) == {0.0, 1.0}
    assert abs(glasses.mean().item() - 0.25) < 0.03
    closed = (attrs[:, attribute_index("mouth_open")] < 0.05).float().mean().item()
    assert 0.38 < closed < 0.48  # 40% closed-ish, plus 5% of the uniform rest


def test_visibility_hides_frame_without_glasses():
    attrs = _with(sample_attributes(4, seed=1), glasses=0.0)
    attrs[:2, attribute_index("glasses")] = 1.0
    visible = attribute_visibility(attrs)
    assert visible.dtype == torch.bool and visible.shape == attrs.shape
    assert visible[:, attribute_index("glasses_frame")].tolist() == [True, True, False, False]
    others = [i for i in range(NUM_ATTRIBUTES) if i != attribute_index("glasses_frame")]
    assert visible[:, others].all()


# ------------------------------------------------------------ render outputs


def test_render_is_deterministic(batch):
    attrs, result = batch
    again = render(attrs.clone(), 64)
    assert torch.equal(result.images, again.images)
    assert torch.equal(result.parts, again.parts)
    assert torch.equal(render_seed(7, n=24, size=64).images, result.images)


def test_faces_do_not_depend_on_the_rest_of_the_batch(batch):
    attrs, result = batch
    for i in (0, 5, 17):
        alone = render(attrs[i : i + 1], 64)
        assert torch.equal(alone.images[0], result.images[i])
        assert torch.equal(alone.parts[0], result.parts[i])


@pytest.mark.parametrize("size", [64, 256])
def test_output_shapes_dtypes_and_ranges(size):
    result = render(sample_attributes(2, seed=5), size)
    assert result.images.shape == (2, 3, size, size) and result.images.dtype == torch.float32
    assert result.parts.shape == (2, size, size) and result.parts.dtype == torch.int64
    assert result.images.min() >= -1 and result.images.max() <= 1
    assert result.parts.min() >= 0 and result.parts.max() < len(PART_NAMES)


@pytest.mark.parametrize("size", [16, 32, 128])
def test_other_sizes_render(size):
    result = render(sample_attributes(1, seed=2), size)
    assert result.images.shape == (1, 3, size, size)
    assert torch.isfinite(result.images).all()


# ------------------------------------------------------------------ part map


def test_main_parts_present_in_every_face(batch):
    _, result = batch
    for name in ("background", "skin", "hair", "eyes", "brows", "nose", "mouth", "neck"):
        assert (_count(result.parts, name) > 0).all(), name


def test_closed_mouth_has_no_cavity_teeth_or_tongue():
    parts = render(_with(sample_attributes(8, seed=11), mouth_open=0.0), 64).parts
    for name in ("mouth_cavity", "teeth", "tongue"):
        assert (_count(parts, name) == 0).all(), name


def test_open_mouth_shows_cavity_teeth_and_tongue():
    parts = render(_with(sample_attributes(8, seed=11), mouth_open=1.0), 64).parts
    for name in ("mouth_cavity", "teeth", "tongue"):
        assert (_count(parts, name) > 0).all(), name


def test_glasses_pixels_follow_glasses_attribute():
    attrs = sample_attributes(8, seed=12)
    assert (_count(render(_with(attrs, glasses=0.0), 64).parts, "glasses") == 0).all()
    assert (_count(render(_with(attrs, glasses=1.0), 64).parts, "glasses") > 0).all()


def test_part_map_is_resolution_independent():
    attrs = sample_attributes(4, seed=13)
    coarse = render(attrs, 64).parts
    fine = render(attrs, 256).parts
    # Fine pixel 4i + 2 is the nearest to the centre of coarse pixel i.
    agreement = (fine[:, 2::4, 2::4] == coarse).float().mean().item()
    assert agreement > 0.95


# ------------------------------------------------------------------- effects


def _lowest_row(parts: torch.Tensor, name: str) -> torch.Tensor:
    """Index of the lowest image row holding part ``name``, per face: [n]."""
    rows = torch.arange(parts.shape[1]).view(1, -1)  # [1, H]
    present = (parts == part_index(name)).any(dim=2)  # [n, H]
    return torch.where(present, rows, -1).amax(dim=1)


def test_opening_the_mouth_lowers_the_chin_and_changes_the_lower_face():
    attrs = _neutral_pose(sample_attributes(6, seed=21))
    closed = render(_with(attrs, mouth_open=0.0), 128)
    opened = render(_with(attrs, mouth_open=1.0), 128)
    assert (_lowest_row(opened.parts, "skin") > _lowest_row(closed.parts, "skin")).all()

    changed = (opened.images - closed.images).abs().amax(dim=1) > 0.02  # [n, H, W]
    rows = torch.arange(128).view(1, -1, 1)
    below_nose = rows >= 0.55 * 128  # image y > 0.1, under the nose bridge
    fraction_low = (changed & below_nose).sum() / changed.sum()
    assert fraction_low > 0.97


def test_eye_size_changes_mostly_the_eye_region():
    attrs = _neutral_pose(sample_attributes(6, seed=22))
    small = render(_with(attrs, eye_size=0.0), 128).images
    large = render(_with(attrs, eye_size=1.0), 128).images
    changed = (large - small).abs().amax(dim=1) > 0.02  # [n, H, W]
    coords = (torch.arange(128) + 0.5) / 64 - 1
    y, x = coords.view(1, -1, 1), coords.view(1, 1, -1)
    eye_region = ((y + 0.1).abs() < 0.15) & (x.abs() < 0.5)
    assert changed.sum() > 0
    assert (changed & eye_region).sum() / changed.sum() > 0.97


# -------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        (torch.full((2, NUM_ATTRIBUTES - 1), 0.5), r"shape \[n, \d+\]"),
        (torch.full((NUM_ATTRIBUTES,), 0.5), r"shape \[n, \d+\]"),
        (torch.full((2, NUM_ATTRIBUTES), 1.5), r"in \[0, 1\]"),
        (torch.full((2, NUM_ATTRIBUTES), -0.1), r"in \[0, 1\]"),
        (torch.full((2, NUM_ATTRIBUTES), math.nan), "NaN"),
    ],
)
def test_bad_attributes_raise(attrs, message):
    with pytest.raises(ValueError, match=message):
        render(attrs)
    with pytest.raises(ValueError, match=message):
        attribute_visibility(attrs)


@pytest.mark.parametrize("size", [8, 15, 64.0, "64"])
def test_bad_size_raises(size):
    with pytest.raises(ValueError, match="size must"):
        render(sample_attributes(1, seed=0), size)


def test_bad_names_and_counts_raise():
    with pytest.raises(ValueError, match="unknown part"):
        part_index("beard")
    with pytest.raises(ValueError, match="non-negative integer"):
        sample_attributes(-1, seed=0)
    with pytest.raises(ValueError, match="unknown attribute"):
        sweep("beard", [0.0, 1.0], size=32)


# ------------------------------------------------------------------ pictures


def test_gallery_and_sweep_images():
    grid = gallery(n=6, size=32, seed=1, nrow=3)
    assert isinstance(grid, Image.Image) and grid.size == (3 * 34 + 2, 2 * 34 + 2)
    row = sweep("glasses_frame", [0.0, 0.5, 1.0], seed=1, size=32)
    assert row.size == (3 * 34 + 2, 34 + 2)
