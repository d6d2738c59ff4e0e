"""Domain quality of a generator: attribute distances to the renderer's distribution, part presence, FID."""

from __future__ import annotations

import json
import math

import pytest
import torch

from otresefa.models import Generator
from otresefa.synthfaces import ATTRIBUTE_NAMES
from otresefa.synthfaces.quality import (attribute_distances, domain_fid, main, model_quality, part_presence,
                                         rendered_images, write_quality)

from conftest import tiny_generator_kwargs


def test_two_render_draws_are_close_in_every_attribute():
    first, second = rendered_images(256, seed=1), rendered_images(256, seed=2)
    distances = attribute_distances(first, second)
    assert set(distances) == set(ATTRIBUTE_NAMES)
    # the sampling floor: binary attributes (glasses) differ by ~0.03-0.1 between two draws of 256
    assert max(distances.values()) < 0.12
    assert sorted(distances.values())[len(distances) // 2] < 0.05


def test_a_shifted_image_set_is_far_in_its_attributes():
    renders = rendered_images(64, seed=1)
    darker = (renders - 0.8).clamp(-1, 1)  # everything darker: background, skin and hair brightness move
    distances = attribute_distances(darker, renders)
    assert distances["bg_brightness"] > 0.1


def test_renders_show_their_parts_and_a_blank_image_does_not():
    presence = part_presence(rendered_images(32, seed=3))
    assert all(share > 0.9 for share in presence.values())
    blank = part_presence(torch.zeros(4, 3, 64, 64))
    assert all(share == 0.0 for share in blank.values())


def test_domain_fid_is_small_between_render_draws_and_large_for_other_images():
    first, second = rendered_images(96, seed=1), rendered_images(96, seed=2)
    floor = domain_fid(first, second)
    darker = domain_fid((first - 0.5).clamp(-1, 1), second)
    blurred = domain_fid(torch.nn.functional.avg_pool2d(first, 3, stride=1, padding=1, count_include_pad=False), second)
    assert 0 < floor < darker and floor < blurred
    assert domain_fid(first, first) == pytest.approx(0.0, abs=1e-3)


def test_model_quality_of_an_untrained_generator_is_poor_and_serialisable(tmp_path):
    torch.manual_seed(0)
    G = Generator(**tiny_generator_kwargs(resolution=64)).eval()
    quality = model_quality(G, num=32, seed=0)
    assert quality.num_generated == quality.num_rendered == 32
    assert set(quality.part_presence) == {"mouth", "eyes", "nose"}
    name, worst = quality.worst_attribute
    assert name in ATTRIBUTE_NAMES and not math.isnan(worst) and worst > 0.1
    # noise images are far from the renders (two draws of 96 renders are below 20: previous test)
    assert quality.fid > 100
    paths = write_quality(quality, tmp_path)
    written = json.loads(paths["json"].read_text())
    assert written["attribute_w1"][name] == worst and written["fid"] == quality.fid
    assert written["worst_attribute"] == [name, worst]
    markdown = paths["markdown"].read_text()
    assert f"FID** (estimator features, generated vs rendered): {quality.fid:.2f}" in markdown
    assert markdown.count("| missed by") + markdown.count("| met |") == len(ATTRIBUTE_NAMES) + 3


def test_command_line_prints_and_writes_the_figures(tmp_path, capsys):
    main(["synthfaces", "--num", "4", "--seed", "3", "--out", str(tmp_path)])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "quality.json").read_text())
    assert printed["num_generated"] == printed["num_rendered"] == 4 and math.isfinite(printed["fid"])
    assert (tmp_path / "quality.md").read_text().startswith("4 generated images, 4 renders.")


@pytest.mark.parametrize("argv, message", [
    (["synthfaces", "--num", "1"], "num must be at least 2"),
    (["no/such/checkpoint.pkl"], "not found"),
], ids=["too-few-images", "missing-checkpoint"])
def test_command_line_reports_bad_input_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in error and len(error.strip().splitlines()) == 1
