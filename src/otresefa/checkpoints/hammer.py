"""genforce StyleGAN2 checkpoints (``.pth``): ReSeFa's (genforce/Hammer code, e.g.
``stylegan2_ffhq1024.pth``) and the earlier genforce/SeFa model zoo's.

The file holds state dicts under ``generator_smooth`` (the moving average, preferred) and/or
``generator`` (and maybe ``discriminator``), at the top level or under ``models``; it is read with
:func:`~otresefa.checkpoints.common.read_torch_file`.  It stores no configuration: resolution,
widths, depth and architecture are read off the tensors.  The two code versions name the tensors
alike but differ in two conventions (found in their model code, ``models/stylegan2_generator.py``):

=================================================  ==========================================
genforce (Hammer: ReSeFa; v1: SeFa model zoo)       otresefa
=================================================  ==========================================
``w_avg`` (Hammer), ``truncation.w_avg`` (v1)       ``mapping.w_avg``
``mapping.dense{i}.weight/bias``                    ``mapping.fc{i}.weight/bias``
``mapping.embedding.weight/bias`` (Hammer)          ``mapping.embed.weight/bias``
``synthesis.early_layer.const`` ``[1, C, 4, 4]``    ``synthesis.b4.const`` ``[C, 4, 4]``
``synthesis.layer0.*``                              ``synthesis.b4.conv1.*``
``synthesis.layer{2k-1}.*``, ``layer{2k}.*``        ``synthesis.b{4*2^k}.conv0.*``, ``.conv1.*``
``synthesis.output{k}.*``                           ``synthesis.b{4*2^k}.torgb.*``
``synthesis.residual{k}.weight`` (Hammer resnet)    ``synthesis.b{4*2^k}.skip.weight``
``*.style.weight``                                  ``*.affine.weight``
``*.style.bias``: Hammer initialises it to 1        ``*.affine.bias``
``*.style.bias``: v1 adds the 1 at run time         ``*.affine.bias`` minus 1
``layer{2k-1}.weight``: Hammer as ours; v1 flips    ``*.weight`` ``[out, in, 3, 3]``
it in (kh, kw) at run time, as TensorFlow does
``*.noise`` ``[1, 1, r, r]``, ``*.noise_strength``  ``*.noise_const`` ``[r, r]``, ``*.noise_strength``
``*.filter``, ``*.filter.kernel``, ``*.kernel``      the fixed [1, 3, 3, 1] FIR filter (checked)
=================================================  ==========================================

What the file cannot say is taken at the codes' defaults (which ReSeFa's models use): the mapping
network's learning-rate multiplier 0.01, the synthesis network's 1, no output ``tanh``, no
``conv_clamp``.
"""

from __future__ import annotations

import re

import torch

from otresefa.checkpoints.common import channel_config, load_converted, synthesis_layers
from otresefa.checkpoints.errors import CheckpointError, UnsupportedCheckpointError
from otresefa.models import Generator, ops

FORMAT_HAMMER = "hammer-pth"
FORMAT_GENFORCE = "genforce-pth"

_NETWORK_KEYS = ("generator_smooth", "generator", "discriminator")
_FILTER = re.compile(r".*(\.filter|\.filter\.kernel|upsample\.kernel)$")


def hammer_models(checkpoint: object) -> dict | None:
    """The networks of a genforce/Hammer checkpoint (under ``models`` or at the top level), else None."""
    if not isinstance(checkpoint, dict):
        return None
    models = checkpoint.get("models", checkpoint)
    return models if isinstance(models, dict) and any(key in models for key in _NETWORK_KEYS) else None


def _check_filters(state: dict[str, torch.Tensor], source: str) -> None:
    """Every stored FIR filter must be StyleGAN2's [1, 3, 3, 1] (up to its gain), which ours uses."""
    expected = ops.setup_filter((1, 3, 3, 1))
    for name in [n for n in state if _FILTER.fullmatch(n)]:
        kernel = state[name].to(torch.float32).squeeze()
        if kernel.shape != expected.shape or not torch.allclose(kernel / kernel.sum(), expected, atol=1e-6):
            raise UnsupportedCheckpointError(f"{source}: the resampling filter '{name}' is not StyleGAN2's [1, 3, 3, 1]")


def generator_from_hammer(checkpoint: dict, source: str = "the checkpoint", lr_multiplier: float = 0.01) -> Generator:
    """Build our Generator from a genforce/Hammer checkpoint (``generator_smooth`` preferred).

    ``lr_multiplier``: the mapping network's learning-rate multiplier in training (not stored;
    genforce's default 0.01).  It sets the run-time gain of the stored mapping weights.
    """
    models = hammer_models(checkpoint)
    if models is None:
        raise CheckpointError(f"{source} is not a genforce/Hammer checkpoint (no generator_smooth, generator or discriminator)")
    state = models.get("generator_smooth", models.get("generator"))
    if state is None:
        raise UnsupportedCheckpointError(
            f"{source} is a genforce/Hammer checkpoint without a generator (it has {sorted(map(str, models))}); "
            "a 'generator_smooth' or 'generator' state dict is needed"
        )
    if not isinstance(state, dict) or "synthesis.early_layer.const" not in state:
        raise UnsupportedCheckpointError(
            f"{source}: the generator is not a StyleGAN2 in the genforce/Hammer layout (no 'synthesis.early_layer.const'); "
            "their StyleGAN3 and other models are not supported"
        )
    state = dict(state)
    v1 = "truncation.w_avg" in state
    if "mapping.label_weight" in state:
        raise UnsupportedCheckpointError(f"{source}: label conditioning by concatenation (label_weight) is not supported")
    _check_filters(state, source)

    num_mapping = sum(1 for key in state if re.fullmatch(r"mapping\.dense\d+\.weight", key))
    num_convs = sum(1 for key in state if re.fullmatch(r"synthesis\.layer\d+\.weight", key))
    num_blocks = (num_convs + 1) // 2
    if num_mapping == 0 or num_convs != 2 * num_blocks - 1:
        raise UnsupportedCheckpointError(f"{source}: incomplete generator ({num_mapping} mapping and {num_convs} synthesis layers)")
    try:
        G = Generator(**_generator_kwargs(state, num_mapping, num_blocks, lr_multiplier, source))
        converted = _convert(state, G, v1)
    except KeyError as error:
        raise UnsupportedCheckpointError(f"{source}: the generator has no tensor {error} (not a genforce/Hammer StyleGAN2)") from None
    except CheckpointError:
        raise
    except (TypeError, ValueError) as error:
        raise UnsupportedCheckpointError(f"{source}: unsupported generator layout ({error})") from None
    G = load_converted(G, converted, source)
    G.checkpoint_format = FORMAT_GENFORCE if v1 else FORMAT_HAMMER
    return G


def _generator_kwargs(state: dict[str, torch.Tensor], num_mapping: int, num_blocks: int, lr_multiplier: float,
                      source: str) -> dict:
    """Our constructor kwargs, read off the tensors' names and shapes."""
    embed = state.get("mapping.embedding.weight")  # [embed_features, c_dim]
    embed_features = 0 if embed is None else embed.shape[0]
    first, last = state["mapping.dense0.weight"], state[f"mapping.dense{num_mapping - 1}.weight"]
    channels = {4: state["synthesis.early_layer.const"].shape[1]}
    for k in range(1, num_blocks):
        channels[4 * 2**k] = state[f"synthesis.layer{2 * k - 1}.weight"].shape[0]
    channel_base, channel_max = channel_config(channels, source)
    noise = state.get("synthesis.layer0.noise")
    if noise is not None and noise.shape[-1] != 4:
        raise UnsupportedCheckpointError(f"{source}: per-channel noise ({list(noise.shape)}) is not supported")
    num_outputs = sum(1 for key in state if re.fullmatch(r"synthesis\.output\d+\.weight", key))
    architecture = "resnet" if any(k.startswith("synthesis.residual") for k in state) else (
        "skip" if num_outputs == num_blocks else "orig")
    return dict(
        z_dim=first.shape[1] - embed_features, c_dim=0 if embed is None else embed.shape[1], w_dim=last.shape[0],
        img_resolution=4 * 2 ** (num_blocks - 1), img_channels=state[f"synthesis.output{num_blocks - 1}.weight"].shape[0],
        mapping_kwargs=dict(num_layers=num_mapping, embed_features=embed_features or None,
                            layer_features=first.shape[0] if num_mapping > 1 else None, lr_multiplier=lr_multiplier),
        synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max, architecture=architecture,
                              use_noise="synthesis.layer0.noise_strength" in state),
    )


def _convert(state: dict[str, torch.Tensor], G: Generator, v1: bool) -> dict[str, torch.Tensor]:
    """Rename (and, for v1, re-orient) the tensors; the non-filter leftovers stay in the result
    under their own names, so that :func:`load_converted` reports them as unexpected."""
    style_offset = 1.0 if v1 else 0.0
    rest = {name: value for name, value in state.items() if not _FILTER.fullmatch(name)}
    converted = {"mapping.w_avg": rest.pop("truncation.w_avg" if v1 else "w_avg")}
    for name in [n for n in rest if n.startswith("mapping.")]:
        converted[name.replace("mapping.dense", "mapping.fc").replace("mapping.embedding", "mapping.embed")] = rest.pop(name)
    converted["synthesis.b4.const"] = rest.pop("synthesis.early_layer.const")[0]

    def modulated(src: str, dst: str) -> None:
        converted[f"{dst}.weight"] = rest.pop(f"{src}.weight")
        converted[f"{dst}.affine.weight"] = rest.pop(f"{src}.style.weight")
        converted[f"{dst}.affine.bias"] = rest.pop(f"{src}.style.bias") + style_offset
        converted[f"{dst}.bias"] = rest.pop(f"{src}.bias")

    for layer in synthesis_layers(len(G.synthesis.block_resolutions)):
        src = f"synthesis.layer{layer.index}"
        modulated(src, layer.name)
        if v1 and layer.up:
            converted[f"{layer.name}.weight"] = converted[f"{layer.name}.weight"].flip([2, 3])
        if f"{src}.noise" in rest:
            converted[f"{layer.name}.noise_const"] = rest.pop(f"{src}.noise")[0, 0]
            converted[f"{layer.name}.noise_strength"] = rest.pop(f"{src}.noise_strength")
    for k, block in enumerate(G.synthesis.blocks()):
        if hasattr(block, "torgb"):
            modulated(f"synthesis.output{k}", f"synthesis.b{block.resolution}.torgb")
        if hasattr(block, "skip"):
            converted[f"synthesis.b{block.resolution}.skip.weight"] = rest.pop(f"synthesis.residual{k}.weight")
    return {**rest, **converted}
