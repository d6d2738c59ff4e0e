"""Generator behaviour beyond the reference fixtures: architectures, noise, truncation, bad input."""

from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_generator, tiny_generator_kwargs
from otresefa.models import Generator


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_architectures_build_and_generate(architecture):
    G = make_tiny_generator(architecture=architecture)
    img = G(torch.randn(2, G.z_dim), noise_mode="const")
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    assert G.num_ws == 6  # 4: conv1 | 8, 16: conv0 conv1 | + last toRGB
    names = set(G.state_dict())
    assert ("synthesis.b8.skip.weight" in names) == (architecture == "resnet")
    assert ("synthesis.b8.torgb.weight" in names) == (architecture == "skip")


def test_noise_modes(tiny_generator):
    G = tiny_generator
    z = torch.randn(1, G.z_dim)
    with torch.no_grad():
        const1, const2 = G(z, noise_mode="const"), G(z, noise_mode="const")
        torch.manual_seed(0)
        rand1 = G(z, noise_mode="random")
        torch.manual_seed(1)
        rand2 = G(z, noise_mode="random")
        none = G(z, noise_mode="none")
    assert torch.equal(const1, const2)
    assert not torch.allclose(rand1, rand2) and not torch.allclose(none, const1)
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, noise_mode="loud")


def test_truncation_and_cutoff(tiny_generator):
    G = tiny_generator
    z = torch.randn(3, G.z_dim)
    ws = G.mapping(z)
    assert torch.allclose(G.mapping(z, truncation_psi=0), G.mapping.w_avg.expand_as(ws))
    cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.allclose(cut[:, 2:], ws[:, 2:])
    assert torch.allclose(cut[:, :2], G.mapping.w_avg.lerp(ws[:, :2], 0.5))


def test_w_avg_tracks_mean_when_asked(tiny_generator):
    G = tiny_generator
    before = G.mapping.w_avg.clone()
    G.mapping(torch.randn(4, G.z_dim))
    assert torch.equal(G.mapping.w_avg, before)
    G.mapping(torch.randn(4, G.z_dim), update_w_avg=True)
    assert not torch.equal(G.mapping.w_avg, before)


def test_fp16_resolutions_are_ignored_on_cpu():
    torch.manual_seed(0)
    kwargs = tiny_generator_kwargs(num_fp16_res=2)
    G16 = Generator(**kwargs)
    G32 = Generator(**tiny_generator_kwargs())
    G32.load_state_dict(G16.state_dict())
    z = torch.randn(2, G16.z_dim)
    assert torch.equal(G16(z, noise_mode="const"), G32(z, noise_mode="const"))


def test_conditional_generator_requires_labels():
    G = Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=8, img_channels=3,
                  mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    assert G(torch.randn(2, 8), torch.eye(3)[:2]).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="conditional"):
        G(torch.randn(2, 8))


def test_bad_shapes_and_configs(tiny_generator):
    with pytest.raises(ValueError, match=r"z must have shape \[N, 32\]"):
        tiny_generator(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"ws must have shape"):
        tiny_generator.synthesis(torch.randn(2, 3, 32))
    with pytest.raises(ValueError, match="power of two"):
        Generator(**{**tiny_generator_kwargs(), "img_resolution": 24})
    with pytest.raises(ValueError, match="unsupported synthesis architecture"):
        Generator(**tiny_generator_kwargs(architecture="fancy"))


def test_affine_layers_enumerate_conv_styles(tiny_generator):
    entries = tiny_generator.synthesis.affine_layers()
    assert [e[0] for e in entries] == [0, 1, 2, 3, 4]
    assert [e[1] for e in entries] == ["b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1"]
    assert [e[0] for e in tiny_generator.synthesis.affine_layers(layers=[1, 3])] == [1, 3]
    with pytest.raises(ValueError, match="out of range"):
        tiny_generator.synthesis.affine_layers(layers=[6])


def test_saved_weights_files_get_the_umask_permissions_not_private_ones(tmp_path):
    import os

    from conftest import make_tiny_generator
    from otresefa.io import file_mode

    path = make_tiny_generator().save(tmp_path / "g.safetensors")
    assert os.stat(path).st_mode & 0o777 == file_mode()
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]  # no temporary file left
