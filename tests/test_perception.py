"""Synthetic-face perception: shipped estimator and segmenter, feature extractor, domain regions, training."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from otresefa.regions import Region
from otresefa.synthfaces import ATTRIBUTE_NAMES, PART_NAMES, attribute_index, part_index, render, sample_attributes
from otresefa.synthfaces import train_perception
from otresefa.synthfaces.perception import (
    ESTIMATOR_PATH,
    EYE_CROP_COLUMNS,
    EYE_CROP_ROWS,
    POSE_ATTRIBUTES,
    SEGMENTER_PATH,
    AttributeEstimator,
    PartSegmenter,
    SynthfacesFeatureExtractor,
    attribute_features,
    estimate_attributes,
    eye_crops,
    load_estimator,
    load_network,
    load_segmenter,
    save_network,
    segment,
)
from otresefa.synthfaces.regions import SYNTHFACE_REGIONS, synthface_region
from otresefa.synthfaces.train_perception import (
    HELD_OUT_SEED,
    attribute_r2,
    held_out_set,
    mean_iou,
    part_iou,
    train_estimator,
    train_segmenter,
)

TEST_SEED = 31_337
"""Renders for the accuracy tests: neither the training stream's hashed seeds nor HELD_OUT_SEED."""

# The targets are R^2 >= 0.9 per attribute and mean IoU >= 0.8 on 2,000 held-out renders
# (docs/synthfaces_perception.md). The shipped estimator reads every attribute of these 256 renders
# with R^2 >= 0.96 (clean) and >= 0.91 (blurred + noise), so the clean renders are held to the target
# itself; the segmenter, closer to its target, is asked for a little less to stay robust to the
# smaller sample.
MIN_R2 = 0.9
MIN_R2_DEGRADED = 0.85
MIN_MEAN_IOU = 0.75


@pytest.fixture(scope="module")
def test_set():
    assert TEST_SEED != HELD_OUT_SEED
    return held_out_set(256, seed=TEST_SEED)


@pytest.fixture(scope="module")
def face_without_glasses():
    attrs = sample_attributes(64, TEST_SEED + 1)
    attrs = attrs[attrs[:, attribute_index("glasses")] < 0.5][:1]  # [1, A]
    return render(attrs, size=64)


# --- shipped networks -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [ESTIMATOR_PATH, SEGMENTER_PATH], ids=["estimator", "segmenter"])
def test_shipped_weights_are_small_and_record_their_training(path):
    assert path.stat().st_size <= 5 * 2**20
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    assert json.loads(header["init_kwargs"])
    metadata = json.loads(header["metadata"])
    assert metadata["images_seen"] == metadata["steps"] * metadata["batch"] > 0
    assert metadata["command"] and metadata["evaluation"]


def test_shipped_networks_load_cached_in_eval_mode():
    estimator, segmenter = load_estimator(), load_segmenter()
    assert isinstance(estimator, AttributeEstimator) and isinstance(segmenter, PartSegmenter)
    assert not estimator.training and not segmenter.training
    assert load_estimator() is estimator


@pytest.mark.parametrize("condition, floor", [("clean", MIN_R2), ("blurred + noise", MIN_R2_DEGRADED)])
def test_estimator_reads_every_attribute_of_held_out_renders(test_set, condition, floor):
    images = test_set.images if condition == "clean" else train_perception.degrade(test_set.images)
    r2 = attribute_r2(estimate_attributes(images), test_set.attrs)
    failing = {name: round(value, 3) for name, value in zip(ATTRIBUTE_NAMES, r2.tolist()) if not value >= floor}
    assert not failing, f"R^2 below {floor} ({condition}): {failing}"


def test_estimates_are_in_unit_range_and_survive_resizing(test_set):
    images = test_set.images[:16]
    estimates = estimate_attributes(images)
    assert estimates.shape == (16, len(ATTRIBUTE_NAMES))
    assert estimates.min() >= 0 and estimates.max() <= 1
    enlarged = torch.nn.functional.interpolate(images, scale_factor=2, mode="nearest")  # area-resizes back exactly
    assert torch.allclose(estimate_attributes(enlarged), estimates, atol=1e-5)


def test_eye_crops_follow_the_head_pose(test_set):
    pose = test_set.attrs[:, [attribute_index(name) for name in POSE_ATTRIBUTES]]  # [N, 3]
    eyes = (test_set.parts == part_index("eyes")).float()[:, None].expand(-1, 3, -1, -1) * 2 - 1  # [N, 3, 64, 64]
    crops = eye_crops(eyes, pose)  # [N, 2, 3, rows, columns]
    assert crops.shape == (len(eyes), 2, 3, EYE_CROP_ROWS, EYE_CROP_COLUMNS)
    centre = crops[:, :, 0, EYE_CROP_ROWS // 2, EYE_CROP_COLUMNS // 2]  # [N, 2]
    border = torch.cat([crops[:, :, 0, [0, -1], :].flatten(2), crops[:, :, 0, :, [0, -1]].flatten(2)], dim=2)
    assert (centre > 0.9).all(), "both crops are centred on their eye, whatever the shift and roll"
    assert (border < -0.9).all(), "and hold the whole eye"
    # with a wrong pose the crops miss the eyes: the pose is what places them
    shifted = pose.clone()
    shifted[:, 0] = 1 - shifted[:, 0].round()
    assert (eye_crops(eyes, shifted)[:, :, 0, EYE_CROP_ROWS // 2, EYE_CROP_COLUMNS // 2] < 0.9).any()


def test_segmenter_labels_held_out_renders(test_set):
    labels = segment(test_set.images)
    iou = part_iou(labels, test_set.parts)
    score = mean_iou(iou, test_set.parts)
    per_part = {name: round(value, 3) for name, value in zip(PART_NAMES, iou.tolist())}
    assert score >= MIN_MEAN_IOU, f"mean IoU {score:.3f} < {MIN_MEAN_IOU}: {per_part}"


@pytest.mark.parametrize("size", [48, 64, 128])
def test_segment_returns_the_input_resolution(size):
    images = render(sample_attributes(2, TEST_SEED), size=size).images
    labels = segment(images)
    assert labels.shape == (2, size, size) and labels.dtype == torch.int64
    assert 0 <= labels.min() and labels.max() < len(PART_NAMES)


def test_feature_extractor_accepts_uint8_and_float(test_set):
    extractor = SynthfacesFeatureExtractor()
    images = test_set.images[:4]
    as_uint8 = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    from_float, from_uint8 = extractor(images), extractor(as_uint8)
    assert from_float.shape == from_uint8.shape == (4, extractor.num_features)
    assert torch.allclose(from_float, from_uint8, atol=0.05 * from_float.abs().max())
    assert torch.allclose(from_float, attribute_features(images), atol=1e-5)
    assert extractor(torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8)).shape == (2, extractor.num_features)
    assert not extractor.train().training


@pytest.mark.parametrize("bad", [
    torch.zeros(2, 4, 64, 64),
    torch.zeros(3, 64, 64),
    torch.full((1, 3, 64, 64), float("nan")),
    torch.zeros(0, 3, 64, 64),
], ids=["four-channels", "no-batch", "nan", "empty"])
def test_bad_images_raise_value_error(bad):
    for function in (estimate_attributes, attribute_features, segment):
        with pytest.raises(ValueError):
            function(bad)


# --- domain regions ---------------------------------------------------------------------------------


def test_mouth_region_covers_the_rendered_mouth(test_set):
    mouth_parts = torch.tensor([part_index(p) for p in SYNTHFACE_REGIONS["mouth"]])
    for image, parts in zip(test_set.images[:8], test_set.parts[:8]):
        region = synthface_region(image, "mouth")
        truth = torch.isin(parts, mouth_parts)
        assert isinstance(region, Region) and region.size == (64, 64)
        assert region.mask[truth].all()
        assert region.check_usable().spec["dilate"] == 2


def test_eyes_are_disjoint_and_on_their_image_side(test_set):
    for image in test_set.images[:8]:
        left, right = synthface_region(image, "left_eye"), synthface_region(image, "right_eye")
        assert not (left.mask & right.mask).any()
        left_columns = torch.nonzero(left.mask)[:, 1].float()
        right_columns = torch.nonzero(right.mask)[:, 1].float()
        assert left_columns.max() < right_columns.min()
        assert left_columns.mean() < 32 < right_columns.mean()


def test_dilation_is_an_argument_and_recorded(test_set):
    parts = test_set.parts[0]
    exact = synthface_region(parts, "nose", dilate=0)
    assert torch.equal(exact.mask, parts == part_index("nose"))
    grown = synthface_region(parts, "nose", dilate=3)
    assert grown.spec["dilate"] == 3 and grown.spec["parts"] == ["nose"]
    assert (grown.mask & exact.mask).equal(exact.mask) and grown.mask.sum() > exact.mask.sum()
    assert Region.from_json(grown.to_json()).mask.equal(grown.mask)


def test_missing_glasses_raise_a_clear_error(face_without_glasses):
    for source in (face_without_glasses.images[0], face_without_glasses.parts[0]):
        with pytest.raises(ValueError, match="'glasses' was not found in this image"):
            synthface_region(source, "glasses")


def test_unknown_region_and_bad_input_raise():
    with pytest.raises(ValueError, match="unknown synthetic-face region"):
        synthface_region(torch.zeros(64, 64, dtype=torch.long), "chin")
    with pytest.raises(ValueError):
        synthface_region(torch.zeros(4, 64, 64), "mouth")
    with pytest.raises(ValueError):
        synthface_region(torch.full((3, 64, 64), float("nan")), "mouth")
    with pytest.raises(ValueError):
        synthface_region(torch.zeros(64, 64, dtype=torch.long), "mouth", dilate=-1)


# --- training ---------------------------------------------------------------------------------------

TINY_ESTIMATOR = dict(batch=4, widths=(4, 4, 4, 4), feature_dim=8, eye_hidden=8, eye_features=4, eval_images=8,
                      progress=False)
TINY_SEGMENTER = dict(batch=4, widths=(4, 4), eval_images=8, progress=False)


def test_train_estimator_end_to_end_writes_loadable_weights(tmp_path):
    path = train_estimator(tmp_path, steps=3, eval_every=2, command="pytest", **TINY_ESTIMATOR)
    model = load_network(path)
    assert isinstance(model, AttributeEstimator)
    assert model.training_metadata["images_seen"] == 12 and model.training_metadata["command"] == "pytest"
    assert set(model.training_metadata["evaluation"]["r2"]) == set(ATTRIBUTE_NAMES)
    assert estimate_attributes(torch.zeros(1, 3, 64, 64), model).shape == (1, len(ATTRIBUTE_NAMES))
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 2


def test_train_segmenter_end_to_end_writes_loadable_weights(tmp_path):
    path = train_segmenter(tmp_path, steps=2, eval_every=1, **TINY_SEGMENTER)
    model = load_network(path)
    assert isinstance(model, PartSegmenter)
    assert set(model.training_metadata["evaluation"]["iou"]) == set(PART_NAMES)
    assert segment(torch.zeros(1, 3, 64, 64), model).shape == (1, 64, 64)


def test_interrupted_training_resumes_exactly(tmp_path, monkeypatch):
    uninterrupted = load_network(train_estimator(tmp_path / "a", steps=4, eval_every=2, **TINY_ESTIMATOR))

    real_batch = train_perception.training_batch

    def interrupt_at_step_3(config, step):
        if step == 3:
            raise KeyboardInterrupt
        return real_batch(config, step)

    monkeypatch.setattr(train_perception, "training_batch", interrupt_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train_estimator(tmp_path / "b", steps=4, eval_every=2, **TINY_ESTIMATOR)
    monkeypatch.setattr(train_perception, "training_batch", real_batch)
    resumed = load_network(train_estimator(tmp_path / "b", steps=4, eval_every=2, **TINY_ESTIMATOR))

    for name, tensor in uninterrupted.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    assert len((tmp_path / "b" / "log.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("change", ["old-kwargs", "missing-tensors"])
def test_estimator_of_another_architecture_is_refused(tmp_path, change):
    path = save_network(AttributeEstimator((4, 4, 4, 4), 8, 8, 4), tmp_path / "estimator.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    tensors = load_file(str(path))
    if change == "old-kwargs":  # the kwargs of the first shipped estimator, which had no eye branch
        header["init_kwargs"] = json.dumps({"widths": [4, 4, 4, 4], "feature_dim": 8, "num_attributes": 27})
    else:
        tensors = {name: t for name, t in tensors.items() if not name.startswith("eye")}
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(ValueError, match="another architecture"):
        load_network(path)


def test_resuming_with_another_configuration_is_refused(tmp_path):
    train_estimator(tmp_path, steps=1, eval_every=1, **TINY_ESTIMATOR)
    with pytest.raises(ValueError, match="differs in"):
        train_estimator(tmp_path, steps=1, eval_every=1, lr=1e-4, **TINY_ESTIMATOR)


def test_stopped_run_resumes_with_a_new_schedule_and_records_it(tmp_path):
    checkpoint = train_estimator(tmp_path, steps=6, eval_every=2, stop_after=2, **TINY_ESTIMATOR)
    assert checkpoint.name == "checkpoint.pt" and not list(tmp_path.glob("*.safetensors"))
    model = load_network(train_estimator(tmp_path, steps=4, eval_every=2, **TINY_ESTIMATOR))
    assert model.training_metadata["schedule"] == [[0, 6], [2, 4]]
    assert model.training_metadata["images_seen"] == 4 * TINY_ESTIMATOR["batch"]
    with pytest.raises(ValueError, match="stop_after"):
        train_estimator(tmp_path / "other", steps=4, eval_every=2, stop_after=3, **TINY_ESTIMATOR)
