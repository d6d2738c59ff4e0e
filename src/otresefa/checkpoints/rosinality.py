"""rosinality/stylegan2-pytorch checkpoints (``.pt`` with a ``g_ema`` state dict).

Read with ``torch.load(weights_only=True)`` (``argparse.Namespace``, which training checkpoints
store as ``args``, is the only extra type allowed: it holds plain values).  The two implementations
share the architecture and the equalised-lr parameterisation, so converting is renaming and
reshaping (the correspondence below); the channel widths, depth and resolution are read off the
tensors' shapes.

==============================================  =========================================
rosinality ``g_ema``                            NVIDIA / otresefa
==============================================  =========================================
``style.{i}.weight/bias`` (i = 1..n_mlp)        ``mapping.fc{i-1}.weight/bias``
``input.input`` ``[1, C, 4, 4]``                ``synthesis.b4.const`` ``[C, 4, 4]``
``conv1.*``, ``to_rgb1.*``                      ``synthesis.b4.conv1.*``, ``synthesis.b4.torgb.*``
``convs.{2k}.*``, ``convs.{2k+1}.*``            ``synthesis.b{8*2^k}.conv0.*``, ``.conv1.*``
``to_rgbs.{k}.*``                               ``synthesis.b{8*2^k}.torgb.*``
``*.conv.weight`` ``[1, O, I, k, k]``           ``*.weight`` ``[O, I, k, k]``
``*.conv.modulation.weight/bias``               ``*.affine.weight/bias``
``*.noise.weight`` ``[1]``                      ``*.noise_strength`` ``[]``
``*.activate.bias`` ``[O]``, rgb ``bias``       ``*.bias`` ``[O]``
``noises.noise_{j}`` ``[1, 1, r, r]``           ``noise_const`` of the j-th conv ``[r, r]``
``latent_avg`` (when stored)                    ``mapping.w_avg``
==============================================  =========================================
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import torch

from otresefa.checkpoints.errors import CheckpointError, UnsupportedCheckpointError
from otresefa.models import Generator


def read_rosinality(path: str | Path) -> dict:
    """``torch.load`` the file with ``weights_only=True`` (plus ``argparse.Namespace``)."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path} holds objects that a weights-only load refuses ({error})") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(f"{path} could not be read as a PyTorch file ({error})") from None


def _conv_names(num_blocks: int) -> list[tuple[str, str]]:
    """(rosinality prefix, NVIDIA prefix) of every modulated conv, in noise-buffer order."""
    names = [("conv1", "synthesis.b4.conv1")]
    for k in range(num_blocks - 1):
        res = 8 * 2**k
        names += [(f"convs.{2 * k}", f"synthesis.b{res}.conv0"), (f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1")]
    return names


def _channel_config(channels: dict[int, int]) -> tuple[int, int]:
    """(channel_base, channel_max) with ``min(channel_base // res, channel_max) == channels[res]``."""
    channel_max = channels[4]
    resolutions = sorted(channels)
    narrower = [res for res in resolutions if channels[res] < channel_max]
    channel_base = channels[narrower[0]] * narrower[0] if narrower else channel_max * resolutions[-1]
    if any(min(channel_base // res, channel_max) != channels[res] for res in resolutions):
        raise UnsupportedCheckpointError(f"channel widths {channels} do not follow StyleGAN2's channel_base/res rule")
    return channel_base, channel_max


def generator_from_rosinality(checkpoint: dict, source: str = "the checkpoint", lr_multiplier: float = 0.01) -> Generator:
    """Build our Generator from a rosinality checkpoint dict (``g_ema`` preferred, else ``g``).

    ``lr_multiplier`` must be the mapping network's ``lr_mlp`` used in training (rosinality's default
    0.01); it only matters for training further, not for the image, because both codes store the
    same scaled weights.
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{source} is not a rosinality checkpoint (expected a dict with 'g_ema')")
    state = checkpoint.get("g_ema", checkpoint.get("g"))
    if not isinstance(state, dict) or "input.input" not in state:
        raise CheckpointError(f"{source} has no rosinality generator state ('g_ema' with 'input.input')")
    n_mlp = sum(1 for key in state if key.startswith("style.") and key.endswith(".weight"))
    num_blocks = 1 + sum(1 for key in state if key.startswith("to_rgbs.") and key.endswith(".conv.weight"))
    w_dim = state["style.1.weight"].shape[0]
    resolution = 4 * 2 ** (num_blocks - 1)
    channels = {4: state["input.input"].shape[1]}
    for k in range(num_blocks - 1):
        channels[8 * 2**k] = state[f"convs.{2 * k}.conv.weight"].shape[1]
    channel_base, channel_max = _channel_config(channels)
    G = Generator(
        z_dim=state["style.1.weight"].shape[1], c_dim=0, w_dim=w_dim, img_resolution=resolution,
        img_channels=state["to_rgb1.conv.weight"].shape[1],
        mapping_kwargs=dict(num_layers=n_mlp, lr_multiplier=lr_multiplier),
        synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max, architecture="skip"),
    )
    converted = {"synthesis.b4.const": state["input.input"][0]}
    for i in range(1, n_mlp + 1):
        converted[f"mapping.fc{i - 1}.weight"] = state[f"style.{i}.weight"]
        converted[f"mapping.fc{i - 1}.bias"] = state[f"style.{i}.bias"]
    for j, (src, dst) in enumerate(_conv_names(num_blocks)):
        converted[f"{dst}.weight"] = state[f"{src}.conv.weight"][0]
        converted[f"{dst}.affine.weight"] = state[f"{src}.conv.modulation.weight"]
        converted[f"{dst}.affine.bias"] = state[f"{src}.conv.modulation.bias"]
        converted[f"{dst}.noise_strength"] = state[f"{src}.noise.weight"].reshape([])
        converted[f"{dst}.bias"] = state[f"{src}.activate.bias"].reshape(-1)
        converted[f"{dst}.noise_const"] = state[f"noises.noise_{j}"][0, 0]
    rgb_names = [("to_rgb1", "synthesis.b4.torgb")] + [
        (f"to_rgbs.{k}", f"synthesis.b{8 * 2**k}.torgb") for k in range(num_blocks - 1)
    ]
    for src, dst in rgb_names:
        converted[f"{dst}.weight"] = state[f"{src}.conv.weight"][0]
        converted[f"{dst}.affine.weight"] = state[f"{src}.conv.modulation.weight"]
        converted[f"{dst}.affine.bias"] = state[f"{src}.conv.modulation.bias"]
        converted[f"{dst}.bias"] = state[f"{src}.bias"].reshape(-1)
    latent_avg = checkpoint.get("latent_avg")
    converted["mapping.w_avg"] = latent_avg.reshape(-1) if latent_avg is not None else G.mapping.w_avg
    # FIR filters are fixed buffers, identical in both codes.
    for name, buffer in G.state_dict().items():
        if name.endswith("resample_filter"):
            converted[name] = buffer
    missing, unexpected = G.load_state_dict(converted, strict=False)
    if missing or unexpected:
        raise UnsupportedCheckpointError(f"{source}: could not map every tensor (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return G
