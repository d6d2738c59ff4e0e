"""Edits: alpha 0 is the original, composition is additive, W / W+ / Z spaces, layer ranges, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from otresefa.editing import edit, edited_ws
from otresefa.latents import w_from_seed, ws_from_seed, z_from_seed
from otresefa.parsing import parse_seeds


def unit(dim, seed):
    v = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def test_alpha_zero_reproduces_the_original_exactly(tiny_generator_of_each_family):
    G = tiny_generator_of_each_family
    w = w_from_seed(G, 4)
    original = G.synthesis(w[None, None].repeat(1, G.num_ws, 1), noise_mode="const")[0]
    ws = edited_ws(G, w, unit(G.w_dim, 0), [-2.0, 0.0, 2.0])
    assert torch.equal(ws[0, 1], w.expand(G.num_ws, -1))  # the latent is exactly the original
    images = edit(G, w, unit(G.w_dim, 0), [-2.0, 0.0, 2.0])
    assert images.shape == (3, 3, 16, 16)
    # batched convolutions may round differently from a batch of one, by float32 epsilon only
    torch.testing.assert_close(images[1], original, rtol=0, atol=1e-5)
    assert torch.equal(edit(G, w, unit(G.w_dim, 0), [0.0])[0], edit(G, w, unit(G.w_dim, 5), [0.0])[0])
    assert not torch.allclose(images[0], original)


def test_composition_is_additive_in_latent_space(tiny_generator):
    G = tiny_generator
    w = w_from_seed(G, 1)
    n1, n2 = unit(G.w_dim, 1), unit(G.w_dim, 2)
    composed = edited_ws(G, w, torch.stack([n1, n2]), [1.5, -2.0])
    manual = (w + 1.5 * n1 - 2.0 * n2)[None, None].repeat(1, G.num_ws, 1)
    torch.testing.assert_close(composed[0, 0], manual[0])
    sweeps = edited_ws(G, w, torch.stack([n1, n2]), [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    torch.testing.assert_close(sweeps[0, 2] - sweeps[0, 0] - sweeps[0, 1], -w.expand(G.num_ws, -1))


def test_layer_range_edits_only_those_layers(tiny_generator):
    G = tiny_generator
    w = w_from_seed(G, 2)
    ws = edited_ws(G, w, unit(G.w_dim, 3), [3.0], layers=[0, 1])
    assert not torch.allclose(ws[0, 0, :2], w.expand(2, -1))
    torch.testing.assert_close(ws[0, 0, 2:], w.expand(G.num_ws - 2, -1))


def test_w_plus_batches_and_z_space(tiny_generator_of_each_family):
    G = tiny_generator_of_each_family
    wplus = torch.stack([ws_from_seed(G, s, truncation_psi=0.7) for s in (0, 1)])  # [2, num_ws, w_dim]
    images = edit(G, wplus, unit(G.w_dim, 4), [0.0, 1.0])
    assert images.shape == (2, 2, 3, 16, 16)
    z = z_from_seed(G, 3)
    z_images = edit(G, z, unit(G.z_dim, 5), [0.0, 2.0], space="z", truncation_psi=0.7)
    original = G(z[None], truncation_psi=0.7, noise_mode="const")[0]
    torch.testing.assert_close(z_images[0], original)


def test_deterministic_from_seeds(tiny_generator):
    G = tiny_generator
    a = edit(G, w_from_seed(G, 7), unit(G.w_dim, 1), [1.0])
    b = edit(G, w_from_seed(G, 7), unit(G.w_dim, 1), [1.0])
    assert torch.equal(a, b)
    assert torch.equal(z_from_seed(G, 7), z_from_seed(G, 7))


def test_bad_input_is_named(tiny_generator):
    G = tiny_generator
    w = w_from_seed(G, 0)
    with pytest.raises(ValueError, match="directions have dimension 7"):
        edit(G, w, torch.ones(7), [1.0])
    with pytest.raises(ValueError, match="out of range"):
        edit(G, w, unit(G.w_dim, 0), [1.0], layers=[0, 40])
    with pytest.raises(ValueError, match=r"2 directions need strengths of shape \[2\] or \[A, 2\]"):
        edit(G, w, torch.stack([unit(G.w_dim, 0), unit(G.w_dim, 1)]), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="NaN"):
        edit(G, w, unit(G.w_dim, 0), [float("nan")])
    with pytest.raises(ValueError, match="unknown edit space"):
        edit(G, w, unit(G.w_dim, 0), [1.0], space="s")
    with pytest.raises(ValueError, match="a w latent has shape"):
        edit(G, torch.zeros(3, 5), unit(G.w_dim, 0), [1.0])


def test_parse_seeds():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    for bad in ("3-1", "a", "", "-2"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_latents_directions_and_strengths(tiny_generator, dtype):
    G = tiny_generator
    w, z, n = w_from_seed(G, 0), z_from_seed(G, 0), unit(G.w_dim, 1)
    expected = edit(G, w, n, alphas=[-2.0, 2.0])
    got = edit(G, w.numpy().astype(dtype), n.numpy().astype(dtype), alphas=np.array([-2.0, 2.0], dtype))
    assert got.shape == expected.shape and torch.equal(got, expected)
    ws = torch.stack([ws_from_seed(G, 0), ws_from_seed(G, 1)])  # W+ [2, num_ws, w_dim]
    assert torch.equal(edit(G, ws.numpy().astype(dtype), n.numpy(), alphas=[1.0]), edit(G, ws, n, alphas=[1.0]))
    assert torch.allclose(edit(G, z.numpy().astype(dtype), n.numpy(), alphas=[1.0], space="z"),
                          edit(G, z, n, alphas=[1.0], space="z"), atol=1e-6)


def test_edits_compose_scale_and_keep_the_original_at_zero(tiny_generator):
    from otresefa.editing import (REGION_UNIT_RMS, ComposedEdit, LinearEdit, ScaledEdit, alpha_per_unit, compose,
                                  edited_ws, region_units)
    from otresefa.metrics.locality import rms_change_inside
    from otresefa.regions import box_region

    G = tiny_generator
    w = w_from_seed(G, 3)
    a, b = LinearEdit(unit(G.w_dim, 1)), LinearEdit(unit(G.w_dim, 2))
    both = compose([a, b])
    assert isinstance(both, LinearEdit) and len(both) == 2
    torch.testing.assert_close(edited_ws(G, w, both, [[1.5, -2.0]]),
                               edited_ws(G, w, a.vectors * 1.5 - b.vectors * 2.0, [1.0]))
    region = box_region([8, 8, 8, 8], 16, reference_size=16)
    scaled = region_units(G, w, both, region)
    assert isinstance(scaled, ScaledEdit) and scaled.in_region_units
    torch.testing.assert_close(scaled.scale, alpha_per_unit(G, w, both, region))
    mixed = compose([scaled.select(0), b])  # region units and raw side by side
    assert isinstance(mixed, ComposedEdit) and not mixed.in_region_units
    original = edit(G, w, mixed, [[0.0, 0.0]])[0]
    assert torch.equal(original, edit(G, w, a, [0.0])[0])  # zero strengths: the original, exactly
    step = edit(G, w, scaled.select(0), [0.25])[0]
    assert float(rms_change_inside(original, step, region)) == pytest.approx(0.25 * REGION_UNIT_RMS, rel=0.1)
    with pytest.raises(ValueError, match="do not change the region"):
        alpha_per_unit(G, w, LinearEdit(torch.zeros(1, G.w_dim) + 1e-30), region)
