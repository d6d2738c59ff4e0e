"""Shared test helpers: tiny generators and paths to the NVIDIA reference fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from otresefa.models import Generator

torch.set_num_threads(min(2, os.cpu_count() or 1))

FIXTURES = Path(os.environ.get("OTRESEFA_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
REFERENCE_DIR = FIXTURES / "stylegan2_reference"


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


def reference_dirs() -> list[Path]:
    if not REFERENCE_DIR.is_dir():
        return []
    return sorted(p for p in REFERENCE_DIR.iterdir() if (p / "state_dict.pt").is_file())
