"""The StyleGAN3 generator reproduces NVIDIA's stylegan3 outputs on the shared fixtures (configs T, R)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import STYLEGAN3_REFERENCE_DIR, max_rel_error, reference_dirs
from otresefa.models import StyleGAN3Generator

FOLDERS = reference_dirs(STYLEGAN3_REFERENCE_DIR)
pytestmark = pytest.mark.skipif(not FOLDERS, reason=f"reference fixtures not found in {STYLEGAN3_REFERENCE_DIR}")


def load_reference(folder):
    kwargs = json.loads((folder / "init_kwargs.json").read_text())
    G = StyleGAN3Generator.for_loading(**kwargs)
    G.load_state_dict(torch.load(folder / "state_dict.pt", weights_only=True), strict=True)
    return G.eval(), torch.load(folder / "reference_outputs.pt", weights_only=True)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_mapping_matches_reference(folder):
    G, ref = load_reference(folder)
    with torch.no_grad():
        assert max_rel_error(G.mapping(ref["z"], None), ref["ws"]) <= 1e-4
        # The fixture README writes psi = 1 / 0.7; the data is psi = 0.7, as the name says.
        assert max_rel_error(G.mapping(ref["z"], None, truncation_psi=0.7), ref["ws_psi07"]) <= 1e-4


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_synthesis_matches_reference(folder):
    G, ref = load_reference(folder)
    with torch.no_grad():
        for ws, img in (("ws", "img"), ("ws_psi07", "img_psi07")):
            assert max_rel_error(G.synthesis(ref[ws], noise_mode="const", force_fp32=True), ref[img]) <= 1e-4


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_designed_filters_and_tensor_shapes_match_the_reference(folder):
    """A fresh network designs the checkpoint's filters: the layer schedule (sizes, sampling rates,
    cutoffs, half-widths, taps) and the Kaiser / jinc designs are the reference's."""
    G = StyleGAN3Generator(**json.loads((folder / "init_kwargs.json").read_text()))
    reference = torch.load(folder / "state_dict.pt", weights_only=True)
    mine = G.state_dict()
    assert {k: tuple(v.shape) for k, v in mine.items()} == {k: tuple(v.shape) for k, v in reference.items()}
    filters = [name for name in reference if name.endswith(("up_filter", "down_filter"))]
    assert len(filters) == 28
    for name in filters:
        torch.testing.assert_close(mine[name], reference[name], rtol=0, atol=1e-6, msg=name)
    assert G.config == ("R" if "use_radial_filters" in G.init_kwargs else "T")
