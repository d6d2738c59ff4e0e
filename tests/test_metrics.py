"""Metrics on cases with known answers: FID/KID, locality, matched strength, attribute semantics."""

from __future__ import annotations

import math

import pytest
import torch

from otresefa.metrics.fid import (
    KID_SCALE,
    fid_from_features,
    frechet_distance,
    image_features,
    inception_features,
    kernel_distance,
    kid_from_features,
    to_uint8_images,
)
from otresefa.metrics.locality import (
    change_outside_fraction,
    matched_strength,
    rms_change_inside,
    rms_change_inside_per_alpha,
)
from otresefa.metrics.semantics import (
    attribute_columns,
    attribute_leakage,
    attribute_shift,
    leakage_summary,
    part_area,
    part_area_change,
    target_change_per_alpha,
)
from otresefa.regions import box_region
from otresefa.synthfaces import ATTRIBUTE_NAMES, PART_NAMES, attribute_index, part_index, render, sample_attributes


class RandomFeatures(torch.nn.Module):
    """Stand-in feature extractor: a fixed random CNN on uint8 images (torchmetrics' contract)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 6, 3, stride=2)
        self.num_features = 24

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # uint8 [N, 3, H, W] -> [N, 24]
        x = images.float() / 127.5 - 1
        return torch.nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 2).flatten(1)


def gaussian(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- FID and KID ----------------------------------------------------------------------------------

def test_fid_of_identical_sets_is_zero_and_of_a_shift_is_its_squared_length():
    features = gaussian(300, 8, 0)  # [300, 8]
    assert fid_from_features(features, features) == pytest.approx(0.0, abs=1e-6)
    # same covariance, means apart by 0.5 in every coordinate: FID = ||delta mu||^2 = 8 * 0.25
    assert fid_from_features(features, features + 0.5) == pytest.approx(2.0, rel=1e-6)


def test_fid_grows_with_the_distribution_gap():
    real = gaussian(400, 8, 1)
    same = fid_from_features(real, gaussian(400, 8, 2))
    far = fid_from_features(real, gaussian(400, 8, 3) * 2)
    assert same < 0.3 < far


def test_kid_is_near_zero_for_one_distribution_and_large_for_two():
    real = gaussian(200, 8, 4)
    identical, _ = kid_from_features(real, real, subset_size=100, subsets=20, seed=0)
    same, _ = kid_from_features(real, gaussian(200, 8, 5), subset_size=100, subsets=20, seed=0)
    shifted, _ = kid_from_features(real, gaussian(200, 8, 6) + 1, subset_size=100, subsets=20, seed=0)
    # the unbiased estimator is exactly 0 only in expectation: identical sets sit O(1/subset_size) below it
    assert abs(identical) < 0.02 * shifted
    assert abs(same) < 0.02 * shifted
    assert shifted > 0


def test_kid_is_scaled_by_1e4_and_reproducible_from_its_seed():
    real, fake = gaussian(60, 4, 7), gaussian(60, 4, 8) + 0.3
    first = kid_from_features(real, fake, subset_size=30, subsets=10, seed=3)
    assert first == kid_from_features(real, fake, subset_size=30, subsets=10, seed=3)
    assert first != kid_from_features(real, fake, subset_size=30, subsets=10, seed=4)
    # the whole sets as the only subset: the plain unbiased MMD^2 with k(a, b) = (a.b / F + 1)^3
    kernel = lambda a, b: (a @ b.T / 4 + 1) ** 3  # noqa: E731
    m = len(real)
    k_rr, k_ff, k_rf = kernel(real, real), kernel(fake, fake), kernel(real, fake)
    mmd = ((k_rr.sum() - k_rr.trace()) + (k_ff.sum() - k_ff.trace())) / (m * (m - 1)) - 2 * k_rf.mean()
    assert kid_from_features(real, fake, subset_size=m, subsets=1)[0] == pytest.approx(float(mmd) * KID_SCALE, rel=1e-6)


def test_fid_and_kid_on_images_through_a_feature_extractor():
    images = torch.rand(40, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1  # [40, 3, 16, 16]
    extractor = RandomFeatures()
    assert frechet_distance(images, images, extractor) == pytest.approx(0.0, abs=1e-6)
    darker = (images - 0.8).clamp(-1, 1)
    assert frechet_distance(images, darker, extractor) > 0.01
    kid_same, _ = kernel_distance(images, images, extractor, subset_size=20, subsets=5)
    kid_darker, _ = kernel_distance(images, darker, extractor, subset_size=20, subsets=5)
    assert abs(kid_same) < 0.05 * kid_darker
    features = image_features(images, extractor, batch_size=7)
    assert features.shape == (40, 24) and features.dtype == torch.float64


def test_images_are_quantised_like_image_files():
    images = torch.tensor([-1.0, -0.999, 0.0, 1.0, 1.2]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_uint8_images(images)[0, 0, 0].tolist() == [0, 0, 128, 255, 255]
    already = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    assert to_uint8_images(already) is already
    with pytest.raises(ValueError, match="RGB images"):
        to_uint8_images(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        to_uint8_images(torch.full((1, 3, 2, 2), float("nan")))


def test_bad_feature_sets_are_refused():
    with pytest.raises(ValueError, match="same F"):
        fid_from_features(gaussian(10, 3, 0), gaussian(10, 4, 0))
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(gaussian(1, 3, 0), gaussian(10, 3, 0))
    with pytest.raises(ValueError, match="subset_size"):
        kid_from_features(gaussian(10, 3, 0), gaussian(8, 3, 0), subset_size=9)


def test_inception_needs_a_local_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="never|weights"):
        inception_features(tmp_path / "missing.pth")


def test_inception_without_torch_fidelity_says_what_to_install(tmp_path):
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        weights = tmp_path / "weights.pth"
        weights.write_bytes(b"not used")
        with pytest.raises(ModuleNotFoundError, match="pip install torch-fidelity"):
            inception_features(weights)
    else:
        pytest.skip("torch-fidelity is installed; its loader is torchmetrics' and is not exercised without real weights")


# --- locality -------------------------------------------------------------------------------------

@pytest.fixture
def region():
    return box_region([8, 8, 4, 4], 16, reference_size=16)  # rows/cols 6..9 of a 16x16 image


def test_an_edit_inside_the_region_has_no_change_outside(region):
    original = torch.zeros(3, 16, 16)
    inside = original.clone()
    inside[:, region.mask] = 0.5
    assert float(change_outside_fraction(original, inside, region)) == 0.0
    assert float(rms_change_inside(original, inside, region)) == pytest.approx(0.5)
    assert float(rms_change_inside_per_alpha(original, inside, region, alpha=-2.0)) == pytest.approx(0.25)


def test_an_edit_outside_the_region_is_all_outside(region):
    original = torch.zeros(3, 16, 16)
    outside = original.clone()
    outside[:, ~region.mask] = -0.3
    assert float(change_outside_fraction(original, outside, region)) == pytest.approx(1.0)
    assert float(rms_change_inside(original, outside, region)) == 0.0


def test_locality_of_a_mixed_edit_and_of_a_batch(region):
    original = torch.zeros(3, 16, 16)
    edited = original.clone()
    edited[:, region.mask] = 1.0  # 16 pixels inside
    edited[:, 0, :16] = 1.0  # 16 pixels outside, same size of change
    assert float(change_outside_fraction(original, edited, region)) == pytest.approx(0.5)
    batch = torch.stack([edited, original + 0.1])  # [2, 3, 16, 16]
    fractions = change_outside_fraction(original, batch, region.mask)  # a bool mask works too
    assert fractions.shape == (2,)
    assert float(fractions[1]) == pytest.approx(1 - 16 / 256)
    assert torch.isnan(change_outside_fraction(original, original, region))  # nothing changed


def test_the_figures_module_uses_the_metric():
    from otresefa.render import figures

    assert figures.change_outside_fraction is change_outside_fraction


def test_matched_strength_finds_the_target_of_power_laws():
    for scale, power in ((0.05, 1.0), (3.0, 1.7), (0.2, 0.6)):
        calls = []

        def change_at(strength, scale=scale, power=power):
            calls.append(strength)
            return scale * strength**power

        strength, change = matched_strength(change_at, target=0.2, rel_tol=0.01)
        assert change == pytest.approx(0.2, rel=0.01)
        assert strength == pytest.approx((0.2 / scale) ** (1 / power), rel=0.02)
        assert len(calls) <= 12


def test_matched_strength_works_on_a_saturating_response():
    strength, change = matched_strength(lambda a: math.tanh(a / 5), target=0.5, rel_tol=0.005)
    assert change == pytest.approx(0.5, rel=0.005)
    assert strength == pytest.approx(5 * math.atanh(0.5), rel=0.02)


def test_matched_strength_reports_a_direction_that_never_changes_the_region():
    with pytest.raises(ValueError, match="never reaches"):
        matched_strength(lambda a: 1e-9 * a, target=0.2)
    with pytest.raises(ValueError, match="positive"):
        matched_strength(lambda a: a, target=0.0)


# --- semantics ------------------------------------------------------------------------------------

def test_attribute_change_and_leakage_on_known_shifts():
    original = torch.tensor([[0.2, 0.5, 0.5], [0.4, 0.1, 0.9]])  # [2, 3]
    edited = torch.tensor([[0.5, 0.6, 0.5], [0.7, 0.1, 0.7]])
    shift = attribute_shift(original, edited)
    assert torch.allclose(shift, torch.tensor([[0.3, 0.1, 0.0], [0.3, 0.0, -0.2]], dtype=torch.float64))
    assert target_change_per_alpha(shift, alpha=-2.0, targets=[0]) == pytest.approx(-0.15)
    leakage = attribute_leakage(shift, targets=[0])
    assert torch.isnan(leakage[0])
    assert leakage[1:].tolist() == pytest.approx([0.05, 0.1])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    assert attribute_leakage(shift, [0], valid)[2] == pytest.approx(0.0)
    summary = leakage_summary(leakage, ("a", "b", "c"))
    assert summary == {"mean": pytest.approx(0.075), "max": pytest.approx(0.1), "max_attribute": "c"}
    assert attribute_columns(["c", "a"], ("a", "b", "c")) == [2, 0]
    with pytest.raises(ValueError, match="unknown attribute"):
        attribute_columns(["d"], ("a", "b", "c"))


def test_opening_the_rendered_mouth_reveals_teeth_tongue_and_cavity():
    attrs = sample_attributes(4, 11)
    attrs[:, attribute_index("mouth_open")] = 0.0
    opened = attrs.clone()
    opened[:, attribute_index("mouth_open")] = 0.9
    closed_parts, open_parts = render(attrs, 64).parts, render(opened, 64).parts  # [4, 64, 64] ground truth
    labels = [part_index(p) for p in ("mouth_cavity", "teeth", "tongue")]
    assert torch.all(part_area(closed_parts, labels) < 0.002)
    gained = part_area_change(closed_parts, open_parts, labels)  # [4]
    assert torch.all(gained > 0.005)
    assert torch.all(part_area_change(closed_parts, closed_parts, labels) == 0)


def test_the_estimator_sees_a_one_attribute_shift_in_that_attribute_only():
    from otresefa.synthfaces.perception import estimate_attributes

    attrs = sample_attributes(48, 2024)
    attrs = attrs[attrs[:, attribute_index("glasses")] < 0.5][:16]  # glasses_frame is undefined without glasses
    changed = attrs.clone()
    column = attribute_index("mouth_open")
    # move mouth_open by 0.45, up or down, whichever stays in [0, 1]
    changed[:, column] = torch.where(attrs[:, column] < 0.5, attrs[:, column] + 0.45, attrs[:, column] - 0.45)
    shift = attribute_shift(estimate_attributes(render(attrs, 64).images), estimate_attributes(render(changed, 64).images))
    intended = changed[:, column].double() - attrs[:, column].double()
    assert target_change_per_alpha(shift * intended.sign()[:, None], 1.0, [column]) > 0.3
    leakage = attribute_leakage(shift, [column])
    frame = attribute_index("glasses_frame")
    others = [i for i in range(len(ATTRIBUTE_NAMES)) if i not in (column, frame)]
    assert float(leakage[others].max()) < 0.1


def test_the_segmenter_sees_the_mouth_open():
    from otresefa.synthfaces.perception import segment

    attrs = sample_attributes(4, 12)
    attrs[:, attribute_index("mouth_open")] = 0.0
    opened = attrs.clone()
    opened[:, attribute_index("mouth_open")] = 0.9
    labels = [PART_NAMES.index(p) for p in ("mouth_cavity", "teeth", "tongue")]
    gained = part_area_change(segment(render(attrs, 64).images), segment(render(opened, 64).images), labels)
    assert torch.all(gained > 0.005)
