"""rosinality/stylegan2-pytorch checkpoints (``.pt`` with a ``g_ema`` state dict).

Read with :func:`~otresefa.checkpoints.common.read_torch_file`.  The two implementations
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

from otresefa.checkpoints.common import channel_config, load_converted, synthesis_layers
from otresefa.checkpoints.errors import CheckpointError, UnsupportedCheckpointError
from otresefa.models import Generator

FORMAT = "rosinality-pt"


def is_rosinality(checkpoint: object) -> bool:
    """Whether a loaded ``.pt`` holds a rosinality generator state (``g_ema`` or ``g``)."""
    state = checkpoint.get("g_ema", checkpoint.get("g")) if isinstance(checkpoint, dict) else None
    return isinstance(state, dict) and "input.input" in state


def _rosinality_prefixes(num_blocks: int) -> list[str]:
    """rosinality's name of each modulated conv, in ws order (= noise-buffer order)."""
    return ["conv1"] + [f"convs.{j}" for j in range(2 * (num_blocks - 1))]


def generator_from_rosinality(checkpoint: dict, source: str = "the checkpoint", lr_multiplier: float = 0.01) -> Generator:
    """Build our Generator from a rosinality checkpoint dict (``g_ema`` preferred, else ``g``).

    ``lr_multiplier`` must be the mapping network's ``lr_mlp`` used in training (rosinality's default
    0.01); it only matters for training further, not for the image, because both codes store the
    same scaled weights.
    """
    if not is_rosinality(checkpoint):
        raise CheckpointError(f"{source} has no rosinality generator state ('g_ema' with 'input.input')")
    state = checkpoint.get("g_ema", checkpoint.get("g"))
    try:
        G = _convert(state, checkpoint.get("latent_avg"), source, lr_multiplier)
    except KeyError as error:
        raise UnsupportedCheckpointError(f"{source}: the rosinality generator has no tensor {error}") from None
    G.checkpoint_format = FORMAT
    return G


def _convert(state: dict, latent_avg, source: str, lr_multiplier: float) -> Generator:
    n_mlp = sum(1 for key in state if key.startswith("style.") and key.endswith(".weight"))
    num_blocks = 1 + sum(1 for key in state if key.startswith("to_rgbs.") and key.endswith(".conv.weight"))
    w_dim = state["style.1.weight"].shape[0]
    resolution = 4 * 2 ** (num_blocks - 1)
    channels = {4: state["input.input"].shape[1]}
    for k in range(num_blocks - 1):
        channels[8 * 2**k] = state[f"convs.{2 * k}.conv.weight"].shape[1]
    channel_base, channel_max = channel_config(channels, source)
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
    for layer, src in zip(synthesis_layers(num_blocks), _rosinality_prefixes(num_blocks)):
        dst = layer.name
        converted[f"{dst}.weight"] = state[f"{src}.conv.weight"][0]
        converted[f"{dst}.affine.weight"] = state[f"{src}.conv.modulation.weight"]
        converted[f"{dst}.affine.bias"] = state[f"{src}.conv.modulation.bias"]
        converted[f"{dst}.noise_strength"] = state[f"{src}.noise.weight"].reshape([])
        converted[f"{dst}.bias"] = state[f"{src}.activate.bias"].reshape(-1)
        converted[f"{dst}.noise_const"] = state[f"noises.noise_{layer.index}"][0, 0]
    rgb_names = [("to_rgb1", "synthesis.b4.torgb")] + [
        (f"to_rgbs.{k}", f"synthesis.b{8 * 2**k}.torgb") for k in range(num_blocks - 1)
    ]
    for src, dst in rgb_names:
        converted[f"{dst}.weight"] = state[f"{src}.conv.weight"][0]
        converted[f"{dst}.affine.weight"] = state[f"{src}.conv.modulation.weight"]
        converted[f"{dst}.affine.bias"] = state[f"{src}.conv.modulation.bias"]
        converted[f"{dst}.bias"] = state[f"{src}.bias"].reshape(-1)
    converted["mapping.w_avg"] = latent_avg.reshape(-1) if latent_avg is not None else G.mapping.w_avg
    return load_converted(G, converted, source)
