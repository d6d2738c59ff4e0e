"""Domain quality of a generator: attribute distances to the renderer's distribution, part presence."""

from __future__ import annotations

import math

import torch

from otresefa.models import Generator
from otresefa.synthfaces import ATTRIBUTE_NAMES
from otresefa.synthfaces.quality import attribute_distances, model_quality, part_presence, rendered_images

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


def test_model_quality_of_an_untrained_generator_is_poor_and_serialisable():
    torch.manual_seed(0)
    G = Generator(**tiny_generator_kwargs(resolution=64)).eval()
    quality = model_quality(G, num=32, seed=0)
    assert quality.num_generated == 32 and set(quality.part_presence) == {"mouth", "eyes", "nose"}
    name, worst = quality.worst_attribute
    assert name in ATTRIBUTE_NAMES and not math.isnan(worst) and worst > 0.1
    assert quality.to_dict()["attribute_w1"][name] == worst
