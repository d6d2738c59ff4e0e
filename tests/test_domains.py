"""One domain resolver: the model's training metadata decides what a region name means."""

from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_generator
from otresefa.benchmark import BenchmarkConfig, make_plan
from otresefa.benchmark.samples import Inputs
from otresefa.checkpoints import BUILTIN_MODELS, load_generator
from otresefa.domains import domain_of, region_for
from otresefa.latents import w_from_seed
from otresefa.regions import FFHQ_PRESETS
from otresefa.training.loop import TrainingConfig, train
from otresefa.ui import callbacks as cb


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
    """A model fresh from ``otresefa train`` on the built-in renderer (a few steps at 16 px)."""
    out = tmp_path_factory.mktemp("run")
    config = TrainingConfig(out_dir=str(out), resolution=16, z_dim=32, w_dim=32, mapping_layers=2, channel_base=128,
                            channel_max=16, batch_size=4, total_kimg=0.008, snapshot_kimg=0.008, grid_size=(2, 2),
                            threads=1, device="cpu")
    return str(train(config, progress=False))


def built_in_by_path():
    return load_generator(str(BUILTIN_MODELS["synthfaces"]))


def test_the_built_in_weights_loaded_by_path_are_the_synthfaces_domain():
    G = built_in_by_path()
    domain = domain_of(G)
    assert domain.name == "synthfaces" and "mouth" in domain.region_names and domain.segment is not None
    region = region_for(G, w_from_seed(G, 4, 0.7), "mouth")
    assert region.spec["kind"] == "parts" and region.spec["domain"] == "synthfaces"


def test_a_freshly_trained_model_is_the_synthfaces_domain_everywhere(trained_tiny, tmp_path):
    G = load_generator(trained_tiny)
    assert domain_of(G).name == "synthfaces"
    session = cb.new_session(trained_tiny)  # the browser app
    assert session.domain.name == "synthfaces"
    assert cb.region_choices(session)[:2] == list(domain_of(G).region_names)[:2]
    plan = make_plan(BenchmarkConfig(out=tmp_path / "bench", generator=trained_tiny, quick=True, progress=False))
    assert Inputs(plan).domain.name == "synthfaces"  # the benchmark
    assert all(entry.per_image for entry in plan.regions)


def test_other_models_are_the_generic_domain_with_ffhq_boxes():
    G = make_tiny_generator()
    domain = domain_of(G)
    assert domain.name == "generic" and domain.region_names == tuple(FFHQ_PRESETS)
    region = region_for(G, torch.zeros(G.w_dim), "mouth")
    assert region.spec["kind"] == "preset"
    with pytest.raises(ValueError, match="unknown region 'hair'"):
        region_for(G, torch.zeros(G.w_dim), "hair")
