"""Exact Jacobians by forward-mode AD: the NVIDIA fixture, reverse-mode AD, caching, Gram matrices."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from conftest import REFERENCE_DIR, make_tiny_generator, make_tiny_stylegan3
from otresefa.grams import region_grams
from otresefa.jacobian import jacobian, load_jacobian, save_jacobian, summed_image
from otresefa.models import Generator


def reverse_mode_jacobian(G, latent, size, layers=None, space="w", psi=1.0):
    def image_of(v):
        if space == "w":
            ws = latent[None, None].repeat(1, G.num_ws, 1)
            if layers is None:
                ws = v[None, None].repeat(1, G.num_ws, 1)
            else:
                ws[:, layers] = v
        else:
            ws = G.mapping(v[None], truncation_psi=psi)
        return summed_image(G.synthesis(ws, noise_mode="const"), size)[0]

    return torch.autograd.functional.jacobian(image_of, latent, vectorize=True)  # [S, S, dim]


@pytest.mark.skipif(not (REFERENCE_DIR / "sg2_res32_skip").is_dir(), reason="reference fixtures not found")
def test_matches_reference_fixture_jacobian():
    folder = REFERENCE_DIR / "sg2_res32_skip"
    G = Generator(**json.loads((folder / "init_kwargs.json").read_text()))
    G.load_state_dict(torch.load(folder / "state_dict.pt", weights_only=True))
    ref = torch.load(folder / "reference_outputs.pt", weights_only=True)
    J = jacobian(G.eval(), ref["ws"][0, 0], size=256, chunk_size=128)
    assert J.shape == (32, 32, 512)
    torch.testing.assert_close(J, ref["jacobian_w0"], rtol=1e-4, atol=1e-4 * ref["jacobian_w0"].abs().max().item())


@pytest.mark.parametrize("architecture", ["skip", "resnet", "orig"])
def test_forward_mode_equals_reverse_mode(architecture):
    G = make_tiny_generator(architecture=architecture)
    w = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1)))[0, 0]
    J = jacobian(G, w, size=16, chunk_size=7)
    torch.testing.assert_close(J, reverse_mode_jacobian(G, w, 16), rtol=1e-4, atol=1e-5)


def test_layer_range_and_downsampling():
    G = make_tiny_generator(resolution=32)
    w = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(2)))[0, 0]
    J = jacobian(G, w, size=16, layers=[0, 1, 2])
    assert J.shape == (16, 16, G.w_dim)
    torch.testing.assert_close(J, reverse_mode_jacobian(G, w, 16, layers=[0, 1, 2]), rtol=1e-4, atol=1e-5)
    # perturbing fewer layers is a different (and smaller) Jacobian
    assert not torch.allclose(J, jacobian(G, w, size=16))


def reverse_mode_projections(G, w, size, weights, layers=None):
    """``sum_pixels weights[k] * J`` for each pixel weighting by one backward pass each: a check of a
    Jacobian that costs ``len(weights)`` backward passes instead of one per pixel."""
    v = w.clone().requires_grad_(True)
    ws = w[None, None].repeat(1, G.num_ws, 1)
    ws[:, slice(None) if layers is None else layers] = v
    img = summed_image(G.synthesis(ws, noise_mode="const"), size)[0]  # [S, S]
    return torch.stack([torch.autograd.grad((img * u).sum(), v, retain_graph=True)[0] for u in weights])


@pytest.mark.parametrize("config", ["T", "R"])
@pytest.mark.parametrize("layers", [None, [0, 1, 2]], ids=["all", "0-2"])
def test_stylegan3_forward_mode_equals_reverse_mode(config, layers):
    G = make_tiny_stylegan3(config=config)
    w = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1)))[0, 0]
    J = jacobian(G, w, size=16, chunk_size=32, layers=layers)  # [16, 16, w_dim]
    assert J.shape == (16, 16, G.w_dim) and J.abs().max() > 0
    weights = torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(torch.einsum("khw,hwd->kd", weights, J),
                               reverse_mode_projections(G, w, 16, weights, layers), rtol=1e-4, atol=1e-4)


def test_z_space_goes_through_the_mapping_network():
    G = make_tiny_generator()
    z = torch.randn(G.z_dim, generator=torch.Generator().manual_seed(3))
    J = jacobian(G, z, size=16, space="z", truncation_psi=0.7)
    torch.testing.assert_close(J, reverse_mode_jacobian(G, z, 16, space="z", psi=0.7), rtol=1e-4, atol=1e-5)


def test_cache_reuses_and_distinguishes(tmp_path, monkeypatch):
    G = make_tiny_generator()
    w = torch.zeros(G.w_dim)
    J1 = jacobian(G, w, size=16, cache=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    # a second call must come from the cache: make computing impossible
    # (the package exports the function `otresefa.jacobian`, which hides the module of the same name)
    monkeypatch.setattr(sys.modules["otresefa.jacobian"], "vmap", None)
    torch.testing.assert_close(jacobian(G, w, size=16, cache=tmp_path), J1)
    with pytest.raises(TypeError):
        jacobian(G, w + 1, size=16, cache=tmp_path)  # a new latent is a cache miss


def test_save_load_and_resefa_layout(tmp_path):
    J = torch.randn(8, 8, 5)
    path = save_jacobian(tmp_path / "j.npy", J)
    torch.testing.assert_close(load_jacobian(path), J)
    np.save(tmp_path / "resefa.npy", J.numpy()[:, :, None, :])  # ReSeFa's [H, W, 1, 512]
    torch.testing.assert_close(load_jacobian(tmp_path / "resefa.npy"), J)


def test_load_rejects_bad_files(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"shape \[H, W, dim\]"):
        load_jacobian(tmp_path / "flat.npy")
    bad = np.zeros((2, 2, 3), dtype=np.float32)
    bad[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match="NaN"):
        load_jacobian(tmp_path / "nan.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a plain .npy"):
        load_jacobian(tmp_path / "obj.npy")
    with pytest.raises(FileNotFoundError):
        load_jacobian(tmp_path / "missing.npy")


def test_bad_latents_and_options(tiny_generator):
    G = tiny_generator
    with pytest.raises(ValueError, match=r"shape \[32\], got \[7\]"):
        jacobian(G, torch.zeros(7))
    with pytest.raises(ValueError, match="NaN or inf"):
        jacobian(G, torch.full([G.w_dim], float("nan")))
    with pytest.raises(ValueError, match="out of range"):
        jacobian(G, torch.zeros(G.w_dim), layers=[0, 99])
    with pytest.raises(ValueError, match="noise_mode"):
        jacobian(G, torch.zeros(G.w_dim), noise_mode="random")
    with pytest.raises(ValueError, match="latent space"):
        jacobian(G, torch.zeros(G.w_dim), space="s")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_latents(tiny_generator, dtype):
    G = tiny_generator
    w = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(0))
    assert torch.equal(jacobian(G, w.numpy().astype(dtype), size=8), jacobian(G, w, size=8))
    z = torch.randn(G.z_dim, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(jacobian(G, z.numpy().astype(dtype)[None], size=8, space="z"), jacobian(G, z, size=8, space="z"),
                          atol=1e-6)
    with pytest.raises(ValueError, match=r"shape \[32\], got \[2, 32\]"):
        jacobian(G, np.zeros((2, G.w_dim), dtype))


def test_region_grams_normalisation_and_errors():
    J = torch.randn(6, 6, 4, dtype=torch.float64)
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[1:3, 2:5] = True
    A_F, A_B = region_grams(J, mask)
    J_f = J[mask]
    torch.testing.assert_close(A_F, J_f.T @ J_f / 6)
    assert A_B.shape == (4, 4) and torch.allclose(A_B, A_B.T)
    with pytest.raises(ValueError, match="region is empty"):
        region_grams(J, torch.zeros(6, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="no background"):
        region_grams(J, torch.ones(6, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask is \[5, 5\]"):
        region_grams(J, torch.ones(5, 5, dtype=torch.bool))
