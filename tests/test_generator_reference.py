"""The generator reproduces NVIDIA's stylegan2-ada-pytorch outputs on the shared fixtures."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import REFERENCE_DIR, max_rel_error, reference_dirs
from otresefa.models import Generator

pytestmark = pytest.mark.skipif(not reference_dirs(), reason=f"reference fixtures not found in {REFERENCE_DIR}")


def load_reference(folder):
    G = Generator(**json.loads((folder / "init_kwargs.json").read_text()))
    G.load_state_dict(torch.load(folder / "state_dict.pt", weights_only=True), strict=True)
    return G.eval(), torch.load(folder / "reference_outputs.pt", weights_only=True)


@pytest.mark.parametrize("folder", reference_dirs(), ids=lambda p: p.name)
def test_mapping_matches_reference(folder):
    G, ref = load_reference(folder)
    with torch.no_grad():
        assert max_rel_error(G.mapping(ref["z"]), ref["ws"]) <= 1e-4
        assert max_rel_error(G.mapping(ref["z"], truncation_psi=0.7), ref["ws_psi07"]) <= 1e-4


@pytest.mark.parametrize("folder", reference_dirs(), ids=lambda p: p.name)
def test_synthesis_matches_reference(folder):
    G, ref = load_reference(folder)
    with torch.no_grad():
        assert max_rel_error(G.synthesis(ref["ws"], noise_mode="const", force_fp32=True), ref["img"]) <= 1e-4
        assert max_rel_error(G.synthesis(ref["ws_psi07"], noise_mode="const", force_fp32=True), ref["img_psi07"]) <= 1e-4


def test_conv_clamp_is_honoured():
    """The clamp fixture's toRGB is scaled so that ignoring conv_clamp changes the image by hundreds."""
    folder = REFERENCE_DIR / "sg2_res64_clamp"
    kwargs = json.loads((folder / "init_kwargs.json").read_text())
    kwargs["synthesis_kwargs"]["conv_clamp"] = None
    G = Generator(**kwargs)
    G.load_state_dict(torch.load(folder / "state_dict.pt", weights_only=True))
    ref = torch.load(folder / "reference_outputs.pt", weights_only=True)
    with torch.no_grad():
        unclamped = G.synthesis(ref["ws"], noise_mode="const")
    assert (unclamped - ref["img"]).abs().max() > 10
