"""``otresefa.discover``: regions at the Jacobian's size, averaged Grams, provenance, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from otresefa.directions import Directions
from otresefa.discovery import discover
from otresefa.grams import region_grams
from otresefa.jacobian import jacobian
from otresefa.latents import w_from_seed
from otresefa.methods import run_method
from otresefa.methods.base import RegionProblem
from otresefa.regions import Region, box_region


def planted_jacobian(seed: int, size: int = 16, dim: int = 12) -> tuple[torch.Tensor, torch.Tensor, Region]:
    """A Jacobian whose direction 0 moves only a box; the other directions move everything."""
    g = torch.Generator().manual_seed(seed)
    region = box_region([8, 8, 6, 6], size, reference_size=size, name="box")
    J = torch.randn(size, size, dim, generator=g) * 0.05
    J[..., 1:] += torch.randn(1, 1, dim - 1, generator=g)  # global changes
    J[..., 0] = region.mask.float() * 2.0  # local change
    return J, torch.eye(dim)[0], region


def test_discover_recovers_a_planted_local_direction_and_records_provenance():
    J, planted, region = planted_jacobian(0)
    found = discover(J, region, "resefa", num_directions=2, seed=3, metadata={"seeds": [4]})
    assert isinstance(found, Directions) and found.vectors.shape == (2, 12)
    assert abs(float(found[0] @ planted)) > 0.99
    meta = found.metadata
    assert meta["method"] == "resefa" and meta["seed"] == 3 and meta["seeds"] == [4]
    assert meta["options"] == {"tau": None} and meta["num_jacobians"] == 1
    assert torch.equal(Region.from_json(meta["region"]).mask, region.mask)


def test_several_jacobians_average_their_grams():
    (J1, _, region), (J2, _, _) = planted_jacobian(1), planted_jacobian(2)
    found = discover([J1, J2], region, "resefa", num_directions=3)
    A1, B1 = region_grams(J1, region.mask)
    A2, B2 = region_grams(J2, region.mask)
    expected = run_method("resefa", RegionProblem((A1 + A2) / 2, (B1 + B2) / 2), num_directions=3)
    torch.testing.assert_close(found.vectors, expected.vectors)
    assert found.metadata["num_jacobians"] == 2


def test_region_is_resized_to_the_jacobian():
    J, planted, _ = planted_jacobian(0, size=16)
    big = box_region([8, 8, 6, 6], 64, reference_size=16, name="box")  # the same box at 64 px
    found = discover(J, big, "resefa")
    assert abs(float(found[0] @ planted)) > 0.99


def test_on_a_real_generator_jacobian(tiny_generator_of_each_family):
    G = tiny_generator_of_each_family
    J = jacobian(G, w_from_seed(G, 0), size=16)
    for method in ("ot-resefa", "resefa", "lowrankgan", "sefa"):
        k = 1 if method == "lowrankgan" else 2  # its L_F may have rank 1 on a tiny generator
        found = discover(J, "box:8,8,6,6", method, num_directions=k, generator=G, max_iter=5) if method == "ot-resefa" \
            else discover(J, [8, 8, 6, 6], method, num_directions=k, generator=G)
        assert found.vectors.shape == (k, G.w_dim)
        assert torch.allclose(found.vectors.norm(dim=1), torch.ones(k))
        assert found.metadata["checkpoint"]


def test_errors_are_clear(tiny_generator):
    J, _, region = planted_jacobian(0)
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        discover(J, region, "magic")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['lamda'\].*valid options"):
        discover(J, region, "ot-resefa", lamda=2)
    with pytest.raises(ValueError, match="needs the generator"):
        discover(J, region, "sefa")
    with pytest.raises(ValueError, match="needs Jacobians"):
        discover(None, region, "resefa")
    with pytest.raises(ValueError, match="covers the whole image"):
        discover(J, Region(torch.ones(16, 16), {"name": "all"}), "resefa")
    with pytest.raises(ValueError, match="is empty"):
        discover(J, Region(torch.zeros(16, 16), {"name": "none"}), "resefa")
    J_nan = J.clone()
    J_nan[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        discover(J_nan, region, "resefa")
    with pytest.raises(ValueError, match="same shape"):
        discover([J, J[:8, :8]], region, "resefa")
    with pytest.raises(ValueError, match=r"num_directions must be an integer in \[1, 12\]"):
        discover(J, region, "resefa", num_directions=13)


def test_numpy_jacobians_and_masks_give_the_torch_result():
    (J1, _, region), (J2, _, _) = planted_jacobian(1), planted_jacobian(2)
    expected = discover([J1, J2], region, "resefa", num_directions=2)
    mask = region.mask.numpy()
    jacobian_forms = {
        "list of numpy": [J1.numpy(), J2.numpy()],
        "stacked numpy": np.stack([J1.numpy(), J2.numpy()]),
        "stacked torch": torch.stack([J1, J2]),
        "ReSeFa's [S, S, 1, d], float64": [J1.double().numpy()[:, :, None], J2.double().numpy()[:, :, None]],
        "LowRankGAN's [N, S, S, 1, d]": np.stack([J1.numpy(), J2.numpy()])[:, :, :, None],
    }
    masks = {"bool": mask, "0/1 uint8": mask.astype(np.uint8), "float": mask * 0.9, "torch": torch.from_numpy(mask)}
    for jacobians in jacobian_forms.values():
        for values in masks.values():
            found = discover(jacobians, values, "resefa", num_directions=2)
            torch.testing.assert_close(found.vectors, expected.vectors)
            assert found.metadata["num_jacobians"] == 2
    single = discover(J1.numpy(), mask, "resefa")
    torch.testing.assert_close(single.vectors, discover(J1, region, "resefa").vectors)


def test_numpy_jacobian_errors_are_named():
    J, _, region = planted_jacobian(0)
    with pytest.raises(ValueError, match=r"a Jacobian has shape \[S, S, dim\].*got \[64, 512\]"):
        discover(np.zeros((64, 512), np.float32), region, "resefa")
    with pytest.raises(ValueError, match=r"square images\), got \[16, 8, 12\]"):
        discover(J[:, :8].numpy(), region, "resefa")
    J_nan = J.numpy().copy()
    J_nan[3, 3, 3] = np.nan
    with pytest.raises(ValueError, match="Jacobian 1 contains non-finite"):
        discover([J.numpy(), J_nan], region, "resefa")
    with pytest.raises(ValueError, match="floating-point numbers, got torch.int64"):
        discover(np.zeros((16, 16, 12), np.int64), region, "resefa")
    with pytest.raises(ValueError, match="cannot read a Jacobian from ndarray"):
        discover(np.array([None] * 4, dtype=object).reshape(2, 2, 1), region, "resefa")
    with pytest.raises(ValueError, match="16x8, but the images are square"):
        discover(J.numpy(), np.ones((16, 8), bool), "resefa")
    with pytest.raises(ValueError, match="selects no pixel"):
        discover(J.numpy(), np.zeros((16, 16)), "resefa")
