"""The benchmark end to end on a tiny generator: reports, resume, orientation and semantics, bad configs."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import pytest
import torch

from otresefa.benchmark import (
    FULL,
    NOT_IMPLEMENTED,
    QUICK,
    BenchmarkConfig,
    MethodSpec,
    make_plan,
    option_winners,
    run_benchmark,
    t_interval,
)
from otresefa.domains import Domain
from otresefa.synthfaces.domain import MAIN_ATTRIBUTES, reference_edit, synthfaces_domain
from otresefa.regions import box_region, parts_region

from conftest import make_tiny_generator

RESOLUTION = 16


class RandomFeatures(torch.nn.Module):
    """Stand-in for the domain's feature extractor: a fixed random CNN on uint8 images."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)
        self.num_features = 16

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # uint8 [N, 3, H, W] -> [N, 16]
        x = images.float() / 127.5 - 1
        return torch.nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 2).flatten(1)


@pytest.fixture(scope="module")
def generator():
    return make_tiny_generator(resolution=RESOLUTION, w_dim=16)


def small_config(tmp_path, generator, **overrides) -> BenchmarkConfig:
    """The quick preset, cut further so that the tests stay fast."""
    settings = dict(out=tmp_path / "bench", generator=generator, quick=True, features=RandomFeatures(),
                    regions=("mouth",), methods=("ot-resefa:max_iter=5", "resefa", "sefa"), num_real=12,
                    num_edited=6, num_calibration=2, kid_subsets=5, target_change=0.05,
                    jacobian_cache=tmp_path / "jacobians", progress=False)
    return BenchmarkConfig(**{**settings, **overrides})


def test_quick_benchmark_writes_its_reports_and_resumes(tmp_path, generator):
    config = small_config(tmp_path, generator)
    first = run_benchmark(config)
    out = config.out
    # 3 methods x 1 region x 2 signs x 1 seed, plus the unedited "no edit" cell
    assert (first.computed, first.reused) == (7, 0)
    assert len(list((out / "cells").glob("*.json"))) == 7
    for name in ("benchmark.md", "results.csv", "results.json", "config.json", "fid.png", "kid.png",
                 "outside_fraction.png"):
        assert (out / name).is_file(), name
    assert len(list((out / "directions").glob("*.npy"))) == 3

    cells = [c for c in first.cells if c["method"] != "no edit"]
    assert not [c for c in cells if c.get("error")]
    for cell in cells:
        metrics = cell["metrics"]
        assert 0 <= metrics["outside_fraction"] <= 100
        assert metrics["strength"] > 0 and math.copysign(1, metrics["alpha"]) == cell["sign"]
        # calibrated to the target on the calibration images, within the tolerance of the quick preset
        assert metrics["calibrated_change"] == pytest.approx(0.05, rel=QUICK["calibration_tolerance"])
        assert math.isfinite(metrics["fid"]) and math.isfinite(metrics["kid"])
        assert "target_shift" not in metrics  # the generic domain has no estimator

    report = (out / "benchmark.md").read_text()
    assert "| method | mouth - | mouth + |" in report
    assert "no edit (floor)" in report and "SDFlow" in report and "n/a" in report
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["metric"] for r in rows} >= {"fid", "kid", "outside_fraction", "strength", "inside_per_alpha"}
    assert {r["method"] for r in rows} == {"no edit", "OT-ReSeFa (both, unit_rows, max_iter=5)", "ReSeFa", "SeFa"}
    assert json.loads((out / "results.json").read_text())["computed"] == 7

    second = run_benchmark(config)
    assert (second.computed, second.reused) == (0, 7)
    assert [c["metrics"] for c in second.cells] == [c["metrics"] for c in first.cells]

    # a changed setting invalidates exactly the cells it affects: here a new sign-free method adds 2
    third = run_benchmark(small_config(tmp_path, generator, methods=("ot-resefa:max_iter=5", "resefa", "sefa",
                                                                      "ganspace:num_samples=200")))
    assert (third.computed, third.reused) == (2, 7)


class ToyDomain:
    """A stand-in for the built-in face domain on a 16x16 generator: a fixed "mouth" part, two
    "attributes" read off the image (mean level inside and outside the mouth box)."""

    box = box_region([11, 8, 4, 8], RESOLUTION, reference_size=RESOLUTION)

    @classmethod
    def make(cls) -> Domain:
        part_map = cls.box.mask.long()  # [S, S]: 1 = mouth

        def attributes(images):  # [N, 3, S, S] -> [N, 2]
            inside = images[:, :, cls.box.mask].mean((1, 2))
            outside = images[:, :, ~cls.box.mask].mean((1, 2))
            return torch.stack([inside, outside], 1).add(1).div(2)

        return Domain(
            name="toy",
            segment=lambda images: part_map.expand(len(images), -1, -1).clone(),
            named_region=lambda parts, name: parts_region(parts, [1], name),
            region_names=("mouth",),
            part_names=("background", "mouth"),
            estimate_attributes=attributes,
            attribute_names=("mouth_level", "background_level"),
            main_attributes={"mouth": ("mouth_level",)},
            sign_names={"mouth": ("darker", "lighter")},
            revealed_parts={"mouth": ("mouth",)},
            real_images=lambda n, seed, size: torch.rand(n, 3, size, size,
                                                         generator=torch.Generator().manual_seed(seed)) * 2 - 1,
            features=RandomFeatures,
        )


def test_a_domain_with_an_estimator_orients_the_signs_and_reports_semantics(tmp_path, generator):
    config = small_config(tmp_path, generator, domain=ToyDomain.make(), features="auto", methods=("resefa", "sefa"))
    results = run_benchmark(config)
    assert results.setup["features"].startswith("toy")
    assert results.setup["real"] == "toy renderer"
    cells = {(c["method"], c["column"]): c["metrics"] for c in results.cells if c["method"] != "no edit"}
    assert set(cells) == {(m, f"mouth {s}") for m in ("ReSeFa", "SeFa") for s in ("darker", "lighter")}
    for method in ("ReSeFa", "SeFa"):
        # "+" was oriented to raise the main attribute: both columns move it the way they are named
        assert cells[(method, "mouth lighter")]["target_shift"] + cells[(method, "mouth darker")]["target_shift"] > 0
        for metrics in (cells[(method, "mouth lighter")], cells[(method, "mouth darker")]):
            assert metrics["leakage_max_attribute"] == "background_level"
            assert metrics["revealed_area"] == 0.0  # the toy part map never changes
            assert metrics["target_per_alpha"] * metrics["strength"] == pytest.approx(metrics["target_shift"])
    report = (config.out / "benchmark.md").read_text()
    assert "| method | mouth darker | mouth lighter |" in report and "Leakage" in report
    assert (config.out / "target_shift.png").is_file()
    # cells measured with other perception networks (another fingerprint) are not reused
    renewed = run_benchmark(dataclasses.replace(config, methods=("sefa",),
                                                domain=dataclasses.replace(config.domain, fingerprint="new")))
    assert (renewed.computed, renewed.reused) == (3, 0)


def test_method_specs_parse_and_name_themselves():
    spec = MethodSpec.parse("ot-resefa:within=foreground,lam=4")
    assert spec.options == {"lam": 4, "within": "foreground"}
    assert spec.label == "OT-ReSeFa (foreground, unit_rows, lam=4)"
    assert MethodSpec.parse(spec.text) == spec
    assert MethodSpec.parse("resefa").label == "ReSeFa"
    for text in FULL["methods"] + QUICK["methods"]:
        MethodSpec.parse(text)


def test_t_interval_of_known_values():
    mean, half, count = t_interval([1.0, 2.0, 3.0])
    assert (mean, count) == (2.0, 3)
    assert half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)  # t(0.975, 2) * s / sqrt(n), s = 1
    assert math.isnan(t_interval([5.0])[1])
    assert t_interval([float("nan"), None])[2] == 0


def test_option_winners_compare_variants_that_differ_in_one_option(tmp_path):
    plan = make_plan(BenchmarkConfig(out=tmp_path, methods=(
        "ot-resefa:within=both,normalize=unit_rows", "ot-resefa:within=both,normalize=mean_cost", "resefa")))
    labels = {m.all_options["normalize"]: m.label for m in plan.methods if m.method == "ot-resefa"}

    def row(label, fid, outside):
        return {"method": label, "metrics": {"fid": {"mean": fid}, "outside_fraction": {"mean": outside}}}

    summary = [row(labels["unit_rows"], 10.0, 30.0), row(labels["mean_cost"], 12.0, 20.0), row("ReSeFa", 1.0, 1.0)]
    [comparison] = option_winners(summary, plan.methods)
    assert (comparison["method"], comparison["option"]) == ("ot-resefa", "normalize")
    assert comparison["fixed"] == {"within": "both"}
    assert comparison["fid"]["winner"] == "unit_rows"
    assert comparison["outside_fraction"]["winner"] == "mean_cost"


@pytest.mark.parametrize("overrides, error, message", [
    ({"methods": ("magic",)}, ValueError, "unknown method 'magic'"),
    ({"methods": ("sdflow",)}, ValueError, "SDFlow"),
    ({"methods": ("resefa:lam=2",)}, ValueError, "unknown option"),
    ({"methods": ("resefa", "resefa")}, ValueError, "repeated"),
    ({"methods": ()}, ValueError, "no methods"),
    ({"signs": (2,)}, ValueError, "signs"),
    ({"num_edited": 1}, ValueError, "num_edited"),
    ({"num_real": 4, "kid_subset_size": 5}, ValueError, "kid_subset_size"),
    ({"discovery_seeds": (1_000_000,)}, ValueError, "discovery_seeds"),
    ({"seeds": (1, 1)}, ValueError, "repeated"),
    ({"target_change": 0}, ValueError, "target_change"),
    ({"features": "inception"}, ValueError, "inception_weights"),
    ({"features": "clip"}, ValueError, "features"),
    ({"inception_weights": "/nonexistent/weights.pth"}, FileNotFoundError, "Inception weights"),
    ({"real": "/nonexistent/folder"}, ValueError, "real"),
    ({"regions": ()}, ValueError, "no regions"),
    ({"calibration_tolerance": 2}, ValueError, "calibration_tolerance"),
    ({"target_change": {"chin": 0.1}}, ValueError, "not benchmarked"),
])
def test_bad_configs_are_refused_before_any_work(tmp_path, overrides, error, message):
    config = BenchmarkConfig(out=tmp_path / "never", generator="/nonexistent/checkpoint.pkl", **overrides)
    with pytest.raises(error, match=message):
        run_benchmark(config)
    assert not (tmp_path / "never").exists()


def test_unknown_regions_settings_and_domains_are_refused(tmp_path, generator):
    with pytest.raises(ValueError, match="unknown region 'elbow'"):
        run_benchmark(small_config(tmp_path, generator, regions=("elbow",)))
    with pytest.raises(ValueError, match="unknown benchmark setting"):
        run_benchmark({"out": str(tmp_path), "num_imgs": 3})
    with pytest.raises(ValueError, match="domain"):
        run_benchmark(small_config(tmp_path, generator, domain="ffhq"))
    with pytest.raises(ValueError, match="no feature extractor"):
        run_benchmark(small_config(tmp_path, generator, features="domain"))
    assert not (tmp_path / "bench").exists()


def test_not_implemented_methods_are_listed():
    assert "sdflow" in NOT_IMPLEMENTED and "not implemented" in NOT_IMPLEMENTED["sdflow"]


def test_per_region_targets_and_no_features(tmp_path, generator):
    config = small_config(tmp_path, generator, methods=("resefa",), signs=(1,), target_change={"mouth": 0.03},
                          features="auto")
    results = run_benchmark(config)
    assert results.setup["target_change"] == {"mouth": 0.03}
    cell = next(c for c in results.cells if c["method"] == "ReSeFa")
    assert cell["metrics"]["calibrated_change"] == pytest.approx(0.03, rel=QUICK["calibration_tolerance"])
    # a generic model without Inception weights: no feature network at all, FID/KID n/a
    assert results.setup["features"] == "none" and "fid" not in cell["metrics"]
    assert any(note.startswith("FID/KID: n/a") for note in results.notes)


def test_the_built_in_reference_edits_set_sensible_targets():
    changes = {region: reference_edit(region, 64) for region in MAIN_ATTRIBUTES}
    inside = {region: value[0] for region, value in changes.items()}
    # an opening mouth changes its region most, a longer and wider nose (a low-contrast part) least
    assert inside["nose"] < inside["eyes"] < inside["mouth"] < 1
    for _, outside in changes.values():
        assert 0 <= outside < 50


def test_the_built_in_domain_is_consistent():
    domain = synthfaces_domain()
    for region, attributes in domain.main_attributes.items():
        assert region in domain.region_names and region in domain.sign_names
        assert set(attributes) <= set(domain.attribute_names)
    for parts in domain.revealed_parts.values():
        assert set(parts) <= set(domain.part_names)
    images = domain.real_images(4, 0, 64)  # [4, 3, 64, 64]
    assert domain.estimate_attributes(images).shape == (4, len(domain.attribute_names))
    assert domain.features()(images).shape[0] == 4
    assert len(domain.fingerprint) == 32  # the shipped networks' digests: cells are keyed to them


def test_a_region_missing_from_every_discovery_image_fails_only_its_own_cells(tmp_path, generator):
    def named_region(parts, name):
        if name == "nose":
            raise ValueError("region 'nose': the part 'nose' was not found in this image")
        return parts_region(parts, [1], name)

    domain = dataclasses.replace(ToyDomain.make(), named_region=named_region, region_names=("mouth", "nose"),
                                 main_attributes={"mouth": ("mouth_level",), "nose": ("mouth_level",)},
                                 sign_names={}, revealed_parts={})
    config = small_config(tmp_path, generator, domain=domain, regions=("nose", "mouth"), methods=("resefa",),
                          features="auto", signs=(1,))
    results = run_benchmark(config)
    by_region = {c["region"]: c for c in results.cells if c["method"] == "ReSeFa"}
    assert "found in none of the discovery seeds' images" in by_region["nose"]["error"]
    assert not by_region["mouth"].get("error") and by_region["mouth"]["metrics"]
