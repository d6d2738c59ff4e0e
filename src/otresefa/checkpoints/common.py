"""What the converters from other StyleGAN2 layouts (rosinality, TensorFlow, genforce/Hammer) share.

Each converter reads the configuration off the tensors' names and shapes, renames and reshapes the
tensors into ours, and loads them with :func:`load_converted`.  The layouts all order the synthesis
layers the same way, so :func:`synthesis_layers` names ours once for all of them.
"""

from __future__ import annotations

import argparse
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from otresefa.checkpoints.errors import CheckpointError, UnsupportedCheckpointError
from otresefa.models import Generator


def read_torch_file(path: str | Path) -> object:
    """``torch.load`` the file with ``weights_only=True`` (plus ``argparse.Namespace``, which
    rosinality's training checkpoints store as ``args``: it holds plain values)."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path} holds objects that a weights-only load refuses ({error})") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(f"{path} could not be read as a PyTorch file ({error})") from None


def channel_config(channels: dict[int, int], source: str) -> tuple[int, int]:
    """(channel_base, channel_max) with ``min(channel_base // res, channel_max) == channels[res]``."""
    channel_max = channels[4]
    resolutions = sorted(channels)
    narrower = [res for res in resolutions if channels[res] < channel_max]
    channel_base = channels[narrower[0]] * narrower[0] if narrower else channel_max * resolutions[-1]
    if any(min(channel_base // res, channel_max) != channels[res] for res in resolutions):
        raise UnsupportedCheckpointError(f"{source}: channel widths {channels} do not follow StyleGAN2's channel_base/res rule")
    return channel_base, channel_max


@dataclass(frozen=True)
class SynthesisConv:
    """One modulated convolution of our synthesis network, in ws order.

    ``index``: its position among the modulated 3x3 convolutions (= its ws index = the index of its
    constant-noise buffer in every layout); ``block``: its resolution.
    """

    index: int
    block: int
    name: str  # e.g. "synthesis.b8.conv0"

    @property
    def up(self) -> bool:
        return self.name.endswith("conv0")


def synthesis_layers(num_blocks: int) -> list[SynthesisConv]:
    """The modulated convolutions of a ``4 * 2**(num_blocks - 1)`` pixel synthesis network."""
    layers = [SynthesisConv(0, 4, "synthesis.b4.conv1")]
    for k in range(1, num_blocks):
        res = 4 * 2**k
        layers += [SynthesisConv(2 * k - 1, res, f"synthesis.b{res}.conv0"), SynthesisConv(2 * k, res, f"synthesis.b{res}.conv1")]
    return layers


def load_converted(G: Generator, converted: dict[str, torch.Tensor], source: str) -> Generator:
    """Load renamed tensors into ``G``, every tensor accounted for.  The FIR filters are fixed
    buffers, identical in every layout, so they keep ``G``'s own values."""
    converted = dict(converted)
    for name, buffer in G.state_dict().items():
        if name.endswith("resample_filter"):
            converted[name] = buffer
    try:
        missing, unexpected = G.load_state_dict(converted, strict=False)
    except RuntimeError as error:  # a shape mismatch
        raise UnsupportedCheckpointError(f"{source}: a tensor has an unexpected shape ({str(error).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        raise UnsupportedCheckpointError(f"{source}: could not map every tensor (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return G
