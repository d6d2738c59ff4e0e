"""StyleGAN3 behaviour beyond the reference fixtures: structure, filters, the native format, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import make_tiny_generator, make_tiny_stylegan3, tiny_stylegan3_kwargs
from otresefa.checkpoints import BUILTIN_MODELS, CheckpointError, load_generator
from otresefa.checkpoints.native import load_native, read_header
from otresefa.methods.sefa import style_weights
from otresefa.models import Generator, StyleGAN3Generator, stylegan3
from otresefa.models.stylegan3 import lowpass_filter

ARCHITECTURE_KEYS = {"family", "config", "resolution", "num_ws", "z_dim", "w_dim", "c_dim", "mapping_layers",
                     "channel_base", "channel_max"}


@pytest.mark.parametrize("config", ["T", "R"])
def test_configs_build_and_generate(config):
    G = make_tiny_stylegan3(config=config, num_layers=14)  # the default depth
    assert G.num_ws == 16 and G.synthesis.num_ws == 16
    names = G.synthesis.layer_names
    assert names[0] == "L0_24_16" and names[-2:] == ["L13_16_16", "L14_16_3"]
    kernel = {"T": 3, "R": 1}[config]
    assert G.synthesis.L0_24_16.weight.shape == (16, 16, kernel, kernel)
    # config R: radial (2-D) down filters except in the critically sampled last layers
    assert G.synthesis.L0_24_16.down_filter.ndim == (2 if config == "R" else 1)
    assert G.synthesis.L13_16_16.down_filter.ndim == 1
    assert G.synthesis.L14_16_3.up_filter is None and G.synthesis.L14_16_3.down_filter is None
    with torch.no_grad():
        img = G(torch.randn(2, G.z_dim))
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all() and img.std() > 0
    assert set(G.architecture()) == ARCHITECTURE_KEYS
    assert G.architecture() == {"family": "stylegan3", "config": config, "resolution": 16, "num_ws": 16,
                                "z_dim": 32, "w_dim": 32, "c_dim": 0, "mapping_layers": 2,
                                "channel_base": 256, "channel_max": 16}


def test_stylegan2_architecture_summary():
    G = make_tiny_generator(architecture="resnet")
    assert set(G.architecture()) == ARCHITECTURE_KEYS
    assert G.architecture()["family"] == "stylegan2" and G.architecture()["config"] == "resnet"
    assert G.architecture()["num_ws"] == G.num_ws and G.architecture()["channel_max"] == 16


def test_mapping_defaults_are_stylegan3s():
    kwargs = tiny_stylegan3_kwargs()
    del kwargs["mapping_kwargs"]
    G = StyleGAN3Generator(**kwargs)
    assert G.mapping.num_layers == 2 and G.mapping.w_avg_beta == 0.998
    assert G.init_kwargs["mapping_kwargs"] == {} and G.init_kwargs["channel_max"] == 16


def test_every_ws_entry_drives_its_layer(tiny_stylegan3):
    """ws[0] moves the input's frame, ws[i + 1] the layer L_i, the last one the to-RGB layer."""
    G = tiny_stylegan3
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        base = G.synthesis(ws)
        for idx in range(G.num_ws):
            moved = ws.clone()
            moved[:, idx] += 1.0
            assert not torch.allclose(G.synthesis(moved), base), idx


def test_loaded_filters_are_used_and_never_designed_again(tmp_path, monkeypatch, tiny_stylegan3):
    G = tiny_stylegan3
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1)))
    path = G.save(tmp_path / "g3.safetensors")

    def no_design(*args, **kwargs):
        raise AssertionError("a loaded network must not design its filters")

    monkeypatch.setattr(stylegan3, "lowpass_filter", no_design)
    loaded = load_native(path)
    assert isinstance(loaded, StyleGAN3Generator)
    with torch.no_grad():
        base = loaded.synthesis(ws)
        torch.testing.assert_close(base, G.synthesis(ws), rtol=0, atol=0)
        loaded.synthesis.L3_24_16.down_filter.mul_(1.1)
        assert (loaded.synthesis(ws) - base).abs().max() > 1e-3


@pytest.mark.parametrize("config", ["T", "R"])
def test_native_round_trip(tmp_path, config):
    G = make_tiny_stylegan3(config=config)
    path = G.save(tmp_path / "g3.safetensors", metadata={"note": "tiny"})
    assert read_header(path)["generator"] == "stylegan3"
    loaded = load_generator(path)
    assert type(loaded) is StyleGAN3Generator and loaded.config == config
    assert loaded.init_kwargs == G.init_kwargs and loaded.training_metadata == {"note": "tiny"}
    for name, tensor in G.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        assert torch.equal(loaded(z, truncation_psi=0.7), G(z, truncation_psi=0.7))


def test_files_without_a_family_are_stylegan2(tmp_path, tiny_generator):
    assert "generator" not in read_header(BUILTIN_MODELS["synthfaces"])
    assert type(load_generator("synthfaces")) is Generator
    assert read_header(tiny_generator.save(tmp_path / "g2.safetensors"))["generator"] == "stylegan2"


def test_native_file_with_an_unknown_family_or_a_bad_config_is_named(tmp_path, tiny_stylegan3):
    from safetensors.torch import load_file, save_file

    path = tiny_stylegan3.save(tmp_path / "g3.safetensors")
    header, tensors = read_header(path), load_file(str(path))
    save_file(tensors, str(tmp_path / "future.safetensors"), metadata={**header, "generator": "stylegan9"})
    with pytest.raises(CheckpointError, match="'stylegan9' generator; this otresefa reads stylegan2, stylegan3"):
        load_native(tmp_path / "future.safetensors")
    kwargs = {**json.loads(header["init_kwargs"]), "warp_factor": 9}
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={**header, "init_kwargs": json.dumps(kwargs)})
    with pytest.raises(CheckpointError, match="bad.safetensors: its config does not build a stylegan3 generator.*warp_factor"):
        load_native(tmp_path / "bad.safetensors")


def test_noise_mode_is_accepted_and_ignored(tiny_stylegan3):
    G = tiny_stylegan3
    ws = G.mapping(torch.randn(2, G.z_dim))
    with torch.no_grad():
        outputs = [G.synthesis(ws, noise_mode=mode) for mode in ("random", "const", "none")]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="loud")


def test_fp16_layers_compute_in_float32_on_cpu():
    # float16 where the sampling rate times 2**num_fp16_res exceeds the resolution
    at_32px = StyleGAN3Generator(**tiny_stylegan3_kwargs(resolution=32, num_fp16_res=1))
    assert at_32px.synthesis.layer_names[1:3] == ["L1_24_16", "L2_40_16"]  # sampling rate 16, then 32
    assert [layer.use_fp16 for layer in at_32px.synthesis.layers()] == [False] * 2 + [True] * 5
    kwargs = tiny_stylegan3_kwargs(num_fp16_res=4)
    torch.manual_seed(0)
    G16 = StyleGAN3Generator(**kwargs).eval()
    G32 = StyleGAN3Generator(**{**kwargs, "num_fp16_res": 0}).eval()
    G32.load_state_dict(G16.state_dict())
    assert all(layer.use_fp16 for layer in G16.synthesis.layers())
    assert not any(layer.use_fp16 for layer in G32.synthesis.layers())
    ws = G16.mapping(torch.randn(2, G16.z_dim))
    with torch.no_grad():
        img = G16.synthesis(ws)
        assert img.dtype == torch.float32
        assert torch.equal(img, G32.synthesis(ws)) and torch.equal(img, G16.synthesis(ws, force_fp32=True))


def test_affine_layers_are_the_modulated_convolutions(tiny_stylegan3):
    G = tiny_stylegan3
    found = G.synthesis.affine_layers()
    assert [idx for idx, _, _ in found] == list(range(1, 7))  # not the input (0) nor to-RGB (7)
    assert found[0][1] == "L0_24_16" and found[0][2] is G.synthesis.L0_24_16.affine
    assert [idx for idx, _, _ in G.synthesis.affine_layers([0, 3, 4, 7])] == [3, 4]
    weights, names = style_weights(G, layers=[1, 2])
    assert weights.shape == (32, G.w_dim) and names == ["L0_24_16", "L1_24_16"]
    with pytest.raises(ValueError, match="out of range"):
        G.synthesis.affine_layers([8])


def test_bad_shapes_and_configs(tiny_stylegan3):
    G = tiny_stylegan3
    with pytest.raises(ValueError, match=r"ws must have shape \[N, 8, 32\]"):
        G.synthesis(torch.zeros(1, 16, 32))
    with pytest.raises(ValueError, match=r"z must have shape \[N, 32\]"):
        G(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="must exceed num_critical"):
        StyleGAN3Generator(**tiny_stylegan3_kwargs(num_layers=2))
    with pytest.raises(ValueError, match="at least one tap"):
        lowpass_filter(0, 1.0, 1.0, 4.0)


def test_radial_filter_is_symmetric_low_pass():
    taps = lowpass_filter(12, cutoff=4.0, width=8.0, fs=32.0, radial=True)
    assert taps.shape == (12, 12) and abs(taps.sum().item() - 1) < 1e-6
    torch.testing.assert_close(taps, taps.T)
    torch.testing.assert_close(taps, taps.flip(0))
    separable = lowpass_filter(12, cutoff=4.0, width=8.0, fs=32.0)
    assert separable.shape == (12,) and lowpass_filter(1, 4.0, 8.0, 32.0) is None
