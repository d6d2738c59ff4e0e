"""TensorFlow StyleGAN2 pickles (NVlabs/stylegan2, e.g. ``stylegan2-ffhq-config-f.pkl``; also the
TensorFlow version of stylegan2-ada), read without TensorFlow and without running their code.

The file is a pickled tuple ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` objects, each stored as
its ``__getstate__`` dict, which :class:`~otresefa.checkpoints.nvidia.TFNetworkRecord` records:
``version`` (4), ``name`` (``G``, ``D``, ``Gs``), ``static_kwargs`` (the build function's options),
``components`` (a generator's ``mapping`` and ``synthesis`` networks), ``build_module_src`` and
``build_func_name`` (the TensorFlow code: recorded, never run) and ``variables``, a list of
``(name, numpy value)``.  ``Gs`` is the moving average of ``G`` (``network="G_ema"`` reads it).

Variables (prefixed by their component) and how they become ours:

=============================================  ==============================================
TensorFlow                                     otresefa
=============================================  ==============================================
``dlatent_avg`` ``[w]``                        ``mapping.w_avg``
``mapping/Dense{i}/weight`` ``[in, out]``      ``mapping.fc{i}.weight`` ``[out, in]``
``mapping/LabelEmbed/weight`` ``[c, e]``       ``mapping.embed.weight`` ``[e, c]``
``synthesis/4x4/Const/const`` ``[1, C, 4, 4]`` ``synthesis.b4.const`` ``[C, 4, 4]``
``synthesis/4x4/Conv/*``                       ``synthesis.b4.conv1.*``
``synthesis/{r}x{r}/Conv0_up/*``, ``Conv1/*``  ``synthesis.b{r}.conv0.*``, ``.conv1.*``
``synthesis/{r}x{r}/ToRGB/*``                  ``synthesis.b{r}.torgb.*`` (``ToRGB_lod0``: the last, 'orig')
``synthesis/{r}x{r}/Skip/weight``              ``synthesis.b{r}.skip.weight`` (resnet)
``*/weight`` ``[kh, kw, in, out]``             ``*.weight`` ``[out, in, kh, kw]``; ``Conv0_up`` and ``Skip``
                                               flipped in ``kh, kw`` (TF's transposed convolution
                                               flips the kernel, PyTorch's does not)
``*/mod_weight`` ``[w, in]``                   ``*.affine.weight`` ``[in, w]``
``*/mod_bias``                                 ``*.affine.bias`` minus 1 (TF adds the 1 at run time)
``*/noise_strength`` ``[]``, ``*/bias``         ``*.noise_strength``, ``*.bias``
``synthesis/noise{j}`` ``[1, 1, r, r]``        ``noise_const`` ``[r, r]`` of the j-th modulated conv
=============================================  ==============================================

Both codes store equalised-lr weights unscaled and scale them at run time by the same gains, so no
value is rescaled.  ``fmap_base`` counts feature maps per half resolution: ``channel_base = 2 *
fmap_base``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from otresefa.checkpoints.common import load_converted, synthesis_layers
from otresefa.checkpoints.errors import CheckpointError, UnsupportedCheckpointError
from otresefa.checkpoints.nvidia import TFNetworkRecord, plain_data
from otresefa.models import Generator

FORMAT = "tensorflow-pickle"

# static_kwargs -> (our constructor group, our name, TensorFlow's default).
_KWARGS: dict[str, tuple[str, str, Any]] = {
    "latent_size": ("", "z_dim", 512),
    "label_size": ("", "c_dim", 0),
    "dlatent_size": ("", "w_dim", 512),
    "resolution": ("", "img_resolution", 1024),
    "num_channels": ("", "img_channels", 3),
    "mapping_layers": ("mapping_kwargs", "num_layers", 8),
    "label_fmaps": ("mapping_kwargs", "embed_features", None),
    "mapping_fmaps": ("mapping_kwargs", "layer_features", None),
    "mapping_nonlinearity": ("mapping_kwargs", "activation", "lrelu"),
    "mapping_lrmul": ("mapping_kwargs", "lr_multiplier", 0.01),
    "w_avg_beta": ("mapping_kwargs", "w_avg_beta", 0.995),
    "fmap_max": ("synthesis_kwargs", "channel_max", 512),
    "num_fp16_res": ("synthesis_kwargs", "num_fp16_res", 0),
    "conv_clamp": ("synthesis_kwargs", "conv_clamp", None),
    "architecture": ("synthesis_kwargs", "architecture", "skip"),
    "resample_kernel": ("synthesis_kwargs", "resample_filter", [1, 3, 3, 1]),
    "use_noise": ("synthesis_kwargs", "use_noise", True),
    "nonlinearity": ("synthesis_kwargs", "activation", "lrelu"),
}
# Options that only steer training or the TF graph, not the image of a given latent.
_IGNORED = ("truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure", "conditioning", "fused_modconv")


def tensorflow_networks(data: Any) -> list[TFNetworkRecord] | None:
    """The TensorFlow networks of an unpickled file (one, or a tuple of them), else None."""
    items = list(data) if isinstance(data, (tuple, list)) else [data]
    return items if items and all(isinstance(item, TFNetworkRecord) for item in items) else None


def _components(net: TFNetworkRecord) -> dict:
    components = net.state.get("components") or {}
    return components if isinstance(components, dict) else {}


def _is_generator(net: TFNetworkRecord) -> bool:
    return all(isinstance(_components(net).get(name), TFNetworkRecord) for name in ("mapping", "synthesis"))


def _is_discriminator(net: TFNetworkRecord) -> bool:
    return net.name.startswith("D") or str(net.state.get("build_func_name", "")).startswith("D_")


def _select(networks: list[TFNetworkRecord], source: str, key: str) -> TFNetworkRecord:
    """``Gs`` (key ``G_ema``) or ``G`` of a ``(G, D, Gs)`` tuple, or the one generator of the file."""
    names = [net.name for net in networks]
    generators = [net for net in networks if _is_generator(net)]
    if not generators:
        if any(_is_discriminator(net) for net in networks):
            raise UnsupportedCheckpointError(
                f"{source} is a TensorFlow pickle of a discriminator only (networks {names}); a generator (G or Gs) is needed"
            )
        raise UnsupportedCheckpointError(
            f"{source} holds TensorFlow networks {names} but no StyleGAN2 generator (one with mapping and synthesis components)"
        )
    if len(networks) == 3:  # (G, D, Gs), as NVIDIA's training loop writes it
        positions = {"G_ema": 2, "G": 0}
        if key not in positions:
            raise CheckpointError(f"{source} is a TensorFlow (G, D, Gs) pickle; its networks are 'G_ema' (Gs) and 'G', not '{key}'")
        chosen = networks[positions[key]]
        if not _is_generator(chosen):
            raise UnsupportedCheckpointError(f"{source}: the TensorFlow network '{chosen.name}' in place of {key} is not a generator")
        return chosen
    if len(generators) > 1:
        raise CheckpointError(f"{source} holds several TensorFlow generators {names}; expected a (G, D, Gs) tuple or one network")
    return generators[0]


def _variables(net: TFNetworkRecord, prefix: str = "") -> dict[str, np.ndarray]:
    """All variables of ``net`` and its components, named ``component/.../variable``."""
    found = {}
    for item in net.state.get("variables") or []:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise CheckpointError("malformed TensorFlow network: its variables are not (name, value) pairs")
        found[prefix + item[0]] = np.asarray(item[1])
    for name, component in _components(net).items():
        if isinstance(component, TFNetworkRecord):
            found.update(_variables(component, f"{prefix}{name}/"))
    return found


def _generator_kwargs(static_kwargs: dict, source: str) -> dict:
    """Our constructor kwargs from the generator's ``static_kwargs`` (unknown options are refused:
    they might change the network in a way this conversion does not know)."""
    unknown = sorted(set(static_kwargs) - set(_KWARGS) - {"fmap_base"} - set(_IGNORED))
    if unknown:
        raise UnsupportedCheckpointError(f"{source}: unknown TensorFlow generator option(s) {unknown}")
    kwargs: dict[str, Any] = {"mapping_kwargs": {}, "synthesis_kwargs": {}}
    for tf_name, (group, name, default) in _KWARGS.items():
        value = static_kwargs.get(tf_name, default)
        if tf_name == "w_avg_beta" and value is None:
            value = default  # TF keeps dlatent_avg even when it does not track it
        (kwargs[group] if group else kwargs)[name] = value
    kwargs["synthesis_kwargs"]["channel_base"] = 2 * static_kwargs.get("fmap_base", 16384)
    return plain_data(kwargs)


def _weight(value: np.ndarray, flip: bool = False) -> np.ndarray:
    """TF conv weight ``[kh, kw, in, out]`` -> ``[out, in, kh, kw]`` (flipped for transposed convs)."""
    return (value[::-1, ::-1] if flip else value).transpose(3, 2, 0, 1)


def _convert(params: dict[str, np.ndarray], G: Generator, source: str) -> dict[str, torch.Tensor]:
    def take(name: str) -> np.ndarray:
        if name not in params:
            raise UnsupportedCheckpointError(
                f"{source}: no TensorFlow variable '{name}': not a StyleGAN2 (config E/F) generator this library reads"
            )
        return params[name]

    converted = {"mapping.w_avg": take("dlatent_avg")}
    for i in range(G.mapping.num_layers):
        converted[f"mapping.fc{i}.weight"] = take(f"mapping/Dense{i}/weight").T
        converted[f"mapping.fc{i}.bias"] = take(f"mapping/Dense{i}/bias")
    if G.c_dim:
        converted["mapping.embed.weight"] = take("mapping/LabelEmbed/weight").T
        converted["mapping.embed.bias"] = take("mapping/LabelEmbed/bias")
    converted["synthesis.b4.const"] = take("synthesis/4x4/Const/const")[0]

    def modulated(scope: str, dst: str, flip: bool = False) -> None:
        converted[f"{dst}.weight"] = _weight(take(f"{scope}/weight"), flip)
        converted[f"{dst}.affine.weight"] = take(f"{scope}/mod_weight").T
        converted[f"{dst}.affine.bias"] = take(f"{scope}/mod_bias") + 1
        converted[f"{dst}.bias"] = take(f"{scope}/bias")

    use_noise = G.synthesis.b4.conv1.use_noise
    for layer in synthesis_layers(len(G.synthesis.block_resolutions)):
        r = layer.block
        scope = "synthesis/4x4/Conv" if layer.index == 0 else f"synthesis/{r}x{r}/{'Conv0_up' if layer.up else 'Conv1'}"
        modulated(scope, layer.name, flip=layer.up)
        if use_noise:
            converted[f"{layer.name}.noise_strength"] = take(f"{scope}/noise_strength")
            converted[f"{layer.name}.noise_const"] = take(f"synthesis/noise{layer.index}")[0, 0]
    for block in G.synthesis.blocks():
        r = block.resolution
        if hasattr(block, "torgb"):
            modulated(f"synthesis/{r}x{r}/ToRGB", f"synthesis.b{r}.torgb")
        if hasattr(block, "skip"):
            converted[f"synthesis.b{r}.skip.weight"] = _weight(take(f"synthesis/{r}x{r}/Skip/weight"), flip=True)
    return {name: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)) for name, value in converted.items()}


def generator_from_tensorflow(data: Any, source: str = "the pickle", key: str = "G_ema") -> Generator:
    """Build our Generator from an unpickled TensorFlow StyleGAN2 file (``key``: ``G_ema`` = Gs, or ``G``)."""
    networks = tensorflow_networks(data)
    if networks is None:
        raise CheckpointError(f"{source} is not a TensorFlow network pickle")
    net = _select(networks, source, key)
    version = net.state.get("version")
    if not isinstance(version, int) or version < 4:
        raise UnsupportedCheckpointError(
            f"{source}: TensorFlow network format version {version!r} predates StyleGAN2's (4); StyleGAN (v1) is not supported"
        )
    params = _variables(net)
    static_kwargs = dict(net.state.get("static_kwargs") or {})
    # Progressive-growing synthesis (StyleGAN2 configs B-D) names its RGB layers by level of detail;
    # at full resolution (lod 0) only the last one reaches the image: the 'orig' architecture.
    resolution = static_kwargs.get("resolution", _KWARGS["resolution"][2])
    if "synthesis/ToRGB_lod0/weight" in params:
        static_kwargs["architecture"] = "orig"
        for name in [n for n in params if n.startswith("synthesis/ToRGB_lod0/")]:
            params[name.replace("ToRGB_lod0", f"{resolution}x{resolution}/ToRGB")] = params[name]
    if "mapping/LabelConcat/weight" in params:
        raise UnsupportedCheckpointError(f"{source}: label conditioning by concatenation (LabelConcat) is not supported")
    init_kwargs = _generator_kwargs(static_kwargs, source)
    if init_kwargs["mapping_kwargs"]["num_layers"] > 1 and "mapping/Dense0/weight" in params:
        # TF's hidden width defaults to 512 whatever dlatent_size is: the tensor says which it is
        init_kwargs["mapping_kwargs"]["layer_features"] = int(params["mapping/Dense0/weight"].shape[1])
    try:
        G = Generator(**init_kwargs)
    except (TypeError, ValueError, KeyError) as error:
        raise UnsupportedCheckpointError(f"{source}: unsupported TensorFlow generator configuration ({error})") from None
    G = load_converted(G, _convert(params, G, source), source)
    G.checkpoint_format = FORMAT
    return G
