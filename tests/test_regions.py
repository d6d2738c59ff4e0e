"""Regions: ReSeFa boxes and presets, mask files, part maps, set operations, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from otresefa.regions import (
    FFHQ_PRESETS,
    Region,
    box_region,
    mask_file_region,
    parse_box,
    parts_region,
    preset_region,
    resolve_region,
)


def test_box_at_reference_size_matches_resefa_slicing():
    region = box_region([184, 127, 30, 70], 256)
    expected = torch.zeros(256, 256, dtype=torch.bool)
    expected[184 - 15 : 184 + 15, 127 - 35 : 127 + 35] = True
    assert torch.equal(region.mask, expected)


def test_box_scales_with_size():
    small = box_region([184, 127, 30, 70], 64)
    assert small.size == (64, 64)
    rows, cols = torch.nonzero(small.mask, as_tuple=True)
    # pixel centres (i + 0.5) * 4 inside [169, 199): rows 42..49
    assert rows.min() == 42 and rows.max() == 49
    assert abs(small.fraction - 30 * 70 / 256**2) < 0.01


def test_presets_cover_the_documented_parts():
    for name in ("eyes", "left_eye", "right_eye", "nose", "mouth", "chin", "eyebrow"):
        assert preset_region(name, 64).mask.any()
    assert (preset_region("left_eye", 256) | preset_region("right_eye", 256)).mask.sum() <= preset_region("eyes", 256).mask.sum()
    with pytest.raises(ValueError, match="unknown region preset 'ears'.*known presets: chin"):
        preset_region("ears", 64)


def test_mask_file_any_size_nearest_neighbour(tmp_path):
    array = np.zeros((100, 100), dtype=np.uint8)
    array[50:, :50] = 255
    Image.fromarray(array).save(tmp_path / "m.png")
    region = mask_file_region(tmp_path / "m.png", 10)
    expected = torch.zeros(10, 10, dtype=torch.bool)
    expected[5:, :5] = True
    assert torch.equal(region.mask, expected) and region.spec["kind"] == "file"


def test_parts_and_set_operations():
    part_map = torch.tensor([[0, 1, 2], [2, 1, 0], [3, 3, 3]])
    mouth = parts_region(part_map, [1, 2], "mouth", part_names=["bg", "lips", "teeth", "skin"])
    assert mouth.mask.sum() == 4 and mouth.spec["parts"] == ["lips", "teeth"]
    skin = parts_region(part_map, [3], "skin")
    assert (mouth | skin).mask.sum() == 7
    assert (mouth - parts_region(part_map, [2], "teeth")).mask.sum() == 2
    assert (mouth & skin).mask.sum() == 0
    assert (mouth | skin).spec["kind"] == "union"


def test_resolve_text_specs(tmp_path):
    assert torch.equal(resolve_region("mouth", 64).mask, preset_region("mouth", 64).mask)
    assert torch.equal(resolve_region("box:184,127,30,70", 64).mask, preset_region("mouth", 64).mask)
    both = resolve_region("left_eye+right_eye", 64)
    assert both.mask.sum() == (preset_region("left_eye", 64) | preset_region("right_eye", 64)).mask.sum()
    assert resolve_region(["nose", "mouth"], 32).spec["kind"] == "union"
    assert parse_box("1, 2, 3, 4") == [1, 2, 3, 4]


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="region 'empty' is empty"):
        Region(torch.zeros(8, 8), {"name": "empty"}).check_usable()
    with pytest.raises(ValueError, match="covers the whole image"):
        resolve_region(Region(torch.ones(8, 8), {"name": "all"}), 8)
    with pytest.raises(ValueError, match="unknown region 'forehead'"):
        resolve_region("forehead", 64)
    with pytest.raises(ValueError, match="4 numbers"):
        resolve_region("box:1,2,3", 64)
    with pytest.raises(ValueError, match="positive"):
        box_region([10, 10, 0, 5], 64)
    with pytest.raises(FileNotFoundError, match="mask file not found"):
        resolve_region(str(tmp_path / "none.png"), 64)
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(ValueError, match="not an image file"):
        mask_file_region(tmp_path / "fake.png", 8)
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        Region(torch.zeros(2, 8, 8))
    # boxes are given in 256-px coordinates and must lie inside that frame, not be clipped silently
    with pytest.raises(ValueError, match=r"spans rows 395-405 and columns 395-405, beyond the 256x256 frame"):
        resolve_region([400, 400, 10, 10], 64)
    with pytest.raises(ValueError, match="columns 230-290, beyond the 256x256 frame"):
        resolve_region("box:128,260,20,60", 64)
    # a mask of another shape than the (square) frame would be stretched
    Image.fromarray(np.full((40, 20), 255, np.uint8)).save(tmp_path / "tall.png")
    with pytest.raises(ValueError, match="is 40x20 pixels but the frame is 64x64: it would be stretched"):
        resolve_region(str(tmp_path / "tall.png"), 64)


def test_presets_are_resefa_boxes():
    assert FFHQ_PRESETS["mouth"] == (184, 127, 30, 70)


def test_json_round_trip_is_exact():
    for mask in (torch.rand(13, 9) > 0.5, torch.ones(4, 4), torch.zeros(3, 5)):
        region = Region(mask, {"kind": "test", "name": "r"})
        data = region.to_json()
        back = Region.from_json(data)
        assert torch.equal(back.mask, region.mask) and back.spec == region.spec
    with pytest.raises(ValueError, match="no mask"):
        Region.from_json({"kind": "box"})


def test_masks_from_numpy_and_torch_arrays():
    m = np.zeros((8, 8), bool)
    m[2:4, 2:6] = True
    # bool; integers: non-zero; a 0/255 image; floats: > 0.5
    for values in (m, m.astype(np.int64), m.astype(np.uint8) * 255, m * 0.8 + 0.1, torch.from_numpy(m).float()):
        assert torch.equal(Region(values).mask, torch.from_numpy(m))
        region = resolve_region(values, 16)
        assert region.size == (16, 16) and int(region.mask.sum()) == 4 * int(m.sum())
        assert region.spec["kind"] == "mask"
    assert not Region(np.full((4, 4), 0.5)).mask.any()


def test_mask_array_errors_name_the_problem():
    with pytest.raises(ValueError, match="16x8, but the images are square"):
        resolve_region(np.ones((16, 8), bool), 16)
    with pytest.raises(ValueError, match="selects no pixel"):
        resolve_region(np.zeros((16, 16), np.uint8), 16)
    with pytest.raises(ValueError, match="selects no pixel"):
        resolve_region(np.full((16, 16), 0.3), 16)  # a soft mask below the 0.5 threshold everywhere
    with pytest.raises(ValueError, match=r"a region mask is \[H, W\], got shape \[1, 16, 16\]"):
        resolve_region(np.ones((1, 16, 16)), 16)
    with pytest.raises(ValueError, match="NaN"):
        resolve_region(np.full((16, 16), np.nan), 16)
    one = np.zeros((64, 64), bool)
    one[1, 1] = True
    with pytest.raises(ValueError, match="1 pixels at 64x64 vanish when resized to 16x16"):
        resolve_region(one, 16)
    with pytest.raises(ValueError, match="cannot make a region mask from"):
        Region(np.array([{"a": 1}, None], dtype=object).reshape(1, 2))
