"""Shared test helpers: tiny generators and paths to the NVIDIA reference fixtures."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from otresefa.models import Generator, StyleGAN3Generator

torch.set_num_threads(min(2, os.cpu_count() or 1))

FIXTURES = Path(os.environ.get("OTRESEFA_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
REFERENCE_DIR = FIXTURES / "stylegan2_reference"
STYLEGAN3_REFERENCE_DIR = FIXTURES / "stylegan3_reference"


def tiny_generator_kwargs(resolution: int = 16, architecture: str = "skip", w_dim: int = 32, **synthesis) -> dict:
    """Constructor kwargs of a generator small enough for fast tests."""
    return dict(
        z_dim=w_dim, c_dim=0, w_dim=w_dim, img_resolution=resolution, img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs={"channel_base": 16 * resolution, "channel_max": 16, "architecture": architecture, **synthesis},
    )


def make_tiny_generator(seed: int = 0, **kwargs) -> Generator:
    """A randomly initialised tiny generator whose noise strengths, biases and w_avg are non-zero."""
    torch.manual_seed(seed)
    G = Generator(**tiny_generator_kwargs(**kwargs))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(("noise_strength", "bias")) and "affine" not in name:
                p.copy_(torch.randn_like(p) * 0.1)
        G.mapping.w_avg.copy_(torch.randn_like(G.mapping.w_avg) * 0.3)
    return G.eval()


@pytest.fixture
def tiny_generator() -> Generator:
    return make_tiny_generator()


def tiny_stylegan3_kwargs(config: str = "T", resolution: int = 16, w_dim: int = 32, **synthesis) -> dict:
    """Constructor kwargs of a small StyleGAN3: 16 channels, 4-pixel margins, 6 layers instead of 14
    (num_ws 8; Jacobians through 14 layers take ~4x as long on two cores)."""
    layer = {"T": {}, "R": {"conv_kernel": 1, "use_radial_filters": True}}[config]
    return dict(z_dim=w_dim, c_dim=0, w_dim=w_dim, img_resolution=resolution, img_channels=3,
                mapping_kwargs=dict(num_layers=2), **{"channel_base": 256, "channel_max": 16, "margin_size": 4,
                                                      "num_layers": 6, **layer, **synthesis})


def make_tiny_stylegan3(seed: int = 0, config: str = "T", **kwargs) -> StyleGAN3Generator:
    """A random tiny StyleGAN3 whose biases, magnitude EMAs, input transform and w_avg are not the
    initial constants, and whose w moves the input's frame (its affine starts at zero)."""
    torch.manual_seed(seed)
    G = StyleGAN3Generator(**tiny_stylegan3_kwargs(config, **kwargs))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("bias") and "affine" not in name:
                p.copy_(torch.randn_like(p) * 0.1)
        for name, b in G.named_buffers():
            if name.endswith("magnitude_ema"):
                b.uniform_(0.5, 2.0)
        G.synthesis.input.affine.weight.normal_(0, 0.3)
        angle, shift = 0.3, (0.1, -0.05)
        G.synthesis.input.transform.copy_(torch.tensor([[math.cos(angle), math.sin(angle), shift[0]],
                                                        [-math.sin(angle), math.cos(angle), shift[1]], [0, 0, 1]]))
        G.mapping.w_avg.copy_(torch.randn_like(G.mapping.w_avg) * 0.3)
    return G.eval()


@pytest.fixture
def tiny_stylegan3() -> StyleGAN3Generator:
    return make_tiny_stylegan3()


@pytest.fixture(params=["stylegan2", "stylegan3"])
def tiny_generator_of_each_family(request):
    """The tiny StyleGAN2, then the tiny StyleGAN3 (both 16 px, w_dim 32): for code that must work
    with every generator."""
    return make_tiny_generator() if request.param == "stylegan2" else make_tiny_stylegan3()


def reference_dirs(root: Path = REFERENCE_DIR) -> list[Path]:
    """The fixture folders under ``root`` (StyleGAN2's by default); empty when it is absent."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "state_dict.pt").is_file())


def max_rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute difference relative to the expected output's range."""
    value_range = (expected.max() - expected.min()).item()
    return (actual - expected).abs().max().item() / value_range
