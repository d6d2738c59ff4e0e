"""Writers of every third-party checkpoint format the library reads, built from a known generator.

Nothing can be downloaded, so the tests make the files themselves, with the features the real files
have (each writer's docstring lists them).  Every test that needs such a file uses these writers.

- NVIDIA PyTorch pickles (stylegan2-ada-pytorch, stylegan3 repository): ``write_nvidia_pickle``;
- TensorFlow StyleGAN2 pickles (NVlabs/stylegan2): ``write_tf_pickle``;
- genforce ``.pth`` (ReSeFa's Hammer code, the SeFa model zoo's v1 code): ``write_genforce_file``;
- rosinality ``.pt``: ``to_rosinality``.

The name tables here are written from the formats' descriptions independently of the library's
readers, so a reader that renames or re-orients a tensor wrongly fails the image comparison.
"""

from __future__ import annotations

import json
import pickle
import sys
import types
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from otresefa.models import Generator
from otresefa.models.discriminator import Discriminator

NEVER_RUN = "raise RuntimeError('the pickled source code was executed')\n"
# Text each repository's network module contains (the loader must not need it; it is there to be real).
MODULE_SRC = {
    "stylegan2-ada-pytorch": NEVER_RUN + "# training/networks.py\ndef forward(self, z, c, skip_w_avg_update=False): ...\n",
    "stylegan3": NEVER_RUN + "# training/networks_stylegan2.py\ndef forward(self, z, c, update_emas=False): ...\n",
    "stylegan3 (StyleGAN3)": NEVER_RUN + "# training/networks_stylegan3.py\nclass SynthesisInput(torch.nn.Module): ...\n",
}
# NVIDIA's names of the classes whose names differ here (StyleGAN2's are the same).
NVIDIA_CLASS_NAMES = {"StyleGAN3Generator": "Generator", "AliasFreeSynthesis": "SynthesisNetwork",
                      "FourierInput": "SynthesisInput", "AliasFreeLayer": "SynthesisLayer"}
# Attributes NVIDIA computes with numpy, so that they pickle as numpy values: the gains (np.sqrt),
# StyleGAN3's sizes (np.broadcast_to(np.asarray(size), [2])) and paddings (numpy integers).
NUMPY_ATTRIBUTES = {
    "_gain": lambda v: np.float64(v) if isinstance(v, float) else v,
    "_size": lambda v: np.broadcast_to(np.asarray(v), [2]) if isinstance(v, int) else v,
    "padding": lambda v: [np.int64(p) for p in v] if isinstance(v, (tuple, list)) else v,
}


# ----------------------------------------------------------------------------- pickling machinery


@contextmanager
def fake_modules():
    """Modules named like NVIDIA's (``torch_utils.persistence``, ``dnnlib.util``,
    ``dnnlib.tflib.network``), so that objects pickle under the official global names."""
    persistence = types.ModuleType("torch_utils.persistence")
    dnnlib_util = types.ModuleType("dnnlib.util")
    tf_network = types.ModuleType("dnnlib.tflib.network")

    def _reconstruct_persistent_obj(meta):  # never called: loading goes through the library's unpickler
        raise AssertionError

    class EasyDict(dict):
        pass

    class Network:
        """Pickles like dnnlib.tflib.network.Network: NEWOBJ + BUILD with its __getstate__ dict."""

        def __init__(self, state: dict):
            self._state = state

        def __getstate__(self) -> dict:
            return dict(self._state)

    for obj, module in ((_reconstruct_persistent_obj, persistence), (EasyDict, dnnlib_util), (Network, tf_network)):
        obj.__module__, obj.__qualname__ = module.__name__, obj.__name__
        setattr(module, obj.__name__, obj)
    modules = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
               "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": dnnlib_util,
               "dnnlib.tflib": types.ModuleType("dnnlib.tflib"), "dnnlib.tflib.network": tf_network}
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield types.SimpleNamespace(reconstruct=_reconstruct_persistent_obj, EasyDict=EasyDict, Network=Network)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class _Numpy1Pickler(pickle._Pickler):
    """Writes numpy's globals as numpy 1 did (``numpy.core.multiarray.scalar``, ...): numpy 2 names
    them ``numpy._core...``.  The opcodes are numpy's own; only the module string differs."""

    # the base class dispatches Python functions (numpy's _frombuffer) to its own save_global
    dispatch = {**pickle._Pickler.dispatch, types.FunctionType: lambda self, obj: self.save_global(obj)}

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", None) or ""
        if not module.startswith("numpy._core"):
            return super().save_global(obj, name)
        module, name = module.replace("numpy._core", "numpy.core", 1), name or obj.__qualname__
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)


def dump(obj, path: str | Path, protocol: int = 4, numpy_version: int = 2) -> Path:
    """Pickle ``obj`` with ``protocol``, spelling numpy's globals as numpy ``numpy_version`` does."""
    with open(path, "wb") as handle:
        if numpy_version == 1:
            _Numpy1Pickler(handle, protocol).dump(obj)
        else:
            pickle.dump(obj, handle, protocol=protocol)
    return Path(path)


# ----------------------------------------------------------------------------- NVIDIA PyTorch pickles


class Persisted:
    """Pickles exactly like a ``torch_utils.persistence`` object: ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, reconstruct, meta):
        self.reconstruct, self.meta = reconstruct, meta

    def __reduce__(self):
        return self.reconstruct, (self.meta,)


def persisted(fake, class_name: str, state: dict, module_src: str, init_kwargs: dict | None = None) -> Persisted:
    state = {"_init_args": (), "_init_kwargs": fake.EasyDict(init_kwargs or {}), **state}
    meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)
    return Persisted(fake.reconstruct, meta)


def persisted_module(fake, module: torch.nn.Module, module_src: str, init_kwargs: dict | None = None) -> Persisted:
    """A module as NVIDIA's persistence pickles it: its ``__dict__`` as the state (``training``,
    ``_parameters``, ``_buffers``, ``_modules``, hooks, plain attributes), every submodule persisted
    in turn, and the attributes NVIDIA computes with numpy as numpy values (:data:`NUMPY_ATTRIBUTES`)."""
    state = {}
    for name, value in module.__dict__.items():
        if name == "init_kwargs":  # ours; NVIDIA's modules keep it as _init_kwargs
            continue
        for suffix, to_numpy in NUMPY_ATTRIBUTES.items():
            if name.endswith(suffix):
                value = to_numpy(value)
        state[name] = value
    state["_parameters"] = OrderedDict(module._parameters)
    state["_buffers"] = OrderedDict(module._buffers)
    state["_modules"] = OrderedDict((k, persisted_module(fake, m, module_src)) for k, m in module._modules.items())
    class_name = type(module).__name__
    return persisted(fake, NVIDIA_CLASS_NAMES.get(class_name, class_name), state, module_src, init_kwargs)


def nvidia_init_kwargs(fake, G, repository: str) -> dict:
    """``G``'s constructor kwargs as each repository records them: stylegan2-ada-pytorch with
    ``synthesis_kwargs``; the stylegan3 repository with the synthesis options top-level (its
    StyleGAN3's are top-level already)."""
    kwargs = json.loads(json.dumps(G.init_kwargs))
    mapping = fake.EasyDict(kwargs.pop("mapping_kwargs"))
    if G.family == "stylegan3":
        return fake.EasyDict(kwargs, mapping_kwargs=mapping)
    synthesis = fake.EasyDict(kwargs.pop("synthesis_kwargs"))
    if repository == "stylegan2-ada-pytorch":
        return fake.EasyDict(kwargs, mapping_kwargs=mapping, synthesis_kwargs=synthesis)
    if repository == "stylegan3":
        return fake.EasyDict(kwargs, mapping_kwargs=mapping, fused_modconv_default="inference_only", **synthesis)
    raise ValueError(repository)


def augment_pipe(fake, module_src: str) -> Persisted:
    """An ``AugmentPipe`` record: buffers, numpy scalars and arrays among its attributes."""
    state = {"training": False, "_parameters": OrderedDict(), "_modules": OrderedDict(),
             "_buffers": OrderedDict(p=torch.tensor(0.2), Hz_geom=torch.randn(12)),
             "xflip": np.float64(1.0), "rotate90": 1, "imgfilter_std": np.float64(1.0),
             "imgfilter_bands": [1, 1, 1, 1], "Hz_fbank_np": np.linspace(0, 1, 8).astype(np.float32),
             "seed": np.int64(7), "name": np.str_("ada")}
    return persisted(fake, "AugmentPipe", state, module_src, dict(xflip=1, rotate90=1))


def write_nvidia_pickle(path, G, *, repository: str = "stylegan2-ada-pytorch", numpy_version: int = 2, protocol: int = 4,
                        G_train: Generator | None = None, module_src: str | None = None, generator_record=None,
                        extra: dict | None = None) -> Path:
    """An NVIDIA network snapshot as the training loop writes it: ``training_set_kwargs`` (a plain
    dict), then ``G`` (``G_train``, default ``G``), ``D`` (a persisted discriminator), ``G_ema``
    (``G``) and ``augment_pipe``, every network a ``torch_utils.persistence`` record.

    ``G`` may be a StyleGAN3 (``repository="stylegan3"``).  ``generator_record(fake)`` replaces the
    ``G_ema`` record (for unusual networks); ``extra`` entries are added (or replace ones) as they are.
    """
    if module_src is None:
        module_src = MODULE_SRC[repository if G.family == "stylegan2" else f"{repository} (StyleGAN3)"]
    with fake_modules() as fake:
        def record(generator: Generator) -> Persisted:
            return persisted_module(fake, generator, module_src, nvidia_init_kwargs(fake, generator, repository))

        D = Discriminator(c_dim=0, img_resolution=G.img_resolution, img_channels=G.img_channels, channel_base=64, channel_max=8)
        data = {
            "training_set_kwargs": dict(class_name="training.dataset.ImageFolderDataset", path="ffhq.zip",
                                        use_labels=False, max_size=70000, xflip=True, resolution=G.img_resolution),
            "G": record(G_train if G_train is not None else G),
            "D": persisted_module(fake, D, module_src, dict(c_dim=0, img_resolution=G.img_resolution, img_channels=3)),
            "G_ema": generator_record(fake) if generator_record is not None else record(G),
            "augment_pipe": augment_pipe(fake, module_src),
        }
        data.update(extra or {})
        return dump(data, path, protocol, numpy_version)


# ----------------------------------------------------------------------------- TensorFlow pickles


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _tf_conv(weight: torch.Tensor, flip: bool = False) -> np.ndarray:
    """Ours ``[out, in, kh, kw]`` -> TF ``[kh, kw, in, out]``; transposed (up-sampling) convs flipped."""
    w = _np(weight).transpose(2, 3, 1, 0)
    return np.ascontiguousarray(w[::-1, ::-1] if flip else w)


def tf_generator_variables(G: Generator, lod_names: bool = False) -> tuple[list, list, list]:
    """The ``variables`` of G (own), G_mapping and G_synthesis in NVlabs/stylegan2's names and
    layouts (creation order); 0-d variables are numpy float32 scalars, as ``tf.Session.run`` returns
    them.  ``lod_names``: RGB layers named ``ToRGB_lod{n}`` (progressive-growing configs B-D)."""
    sd = G.state_dict()
    own = [("lod", np.float32(0.0)), ("dlatent_avg", _np(sd["mapping.w_avg"]))]
    mapping = []
    if G.c_dim:
        mapping += [("LabelEmbed/weight", _np(sd["mapping.embed.weight"]).T.copy()), ("LabelEmbed/bias", _np(sd["mapping.embed.bias"]))]
    for i in range(G.mapping.num_layers):
        mapping += [(f"Dense{i}/weight", _np(sd[f"mapping.fc{i}.weight"]).T.copy()), (f"Dense{i}/bias", _np(sd[f"mapping.fc{i}.bias"]))]

    convs = [("4x4/Conv", "synthesis.b4.conv1", False)]
    for res in G.synthesis.block_resolutions[1:]:
        convs += [(f"{res}x{res}/Conv0_up", f"synthesis.b{res}.conv0", True), (f"{res}x{res}/Conv1", f"synthesis.b{res}.conv1", False)]
    synthesis = [(f"noise{j}", _np(sd[f"{ours}.noise_const"])[None, None]) for j, (_, ours, _) in enumerate(convs)]
    synthesis.append(("4x4/Const/const", _np(sd["synthesis.b4.const"])[None]))

    def modulated(scope: str, ours: str, flip: bool, noise: bool) -> list:
        items = [(f"{scope}/weight", _tf_conv(sd[f"{ours}.weight"], flip)),
                 (f"{scope}/mod_weight", _np(sd[f"{ours}.affine.weight"]).T.copy()),
                 (f"{scope}/mod_bias", _np(sd[f"{ours}.affine.bias"]) - 1)]
        if noise:
            items.append((f"{scope}/noise_strength", np.float32(sd[f"{ours}.noise_strength"].item())))
        return items + [(f"{scope}/bias", _np(sd[f"{ours}.bias"]))]

    log2 = int(np.log2(G.img_resolution))
    for scope, ours, flip in convs:
        res = int(ours.split(".")[1][1:])
        synthesis += modulated(scope, ours, flip, noise=True)
        block = getattr(G.synthesis, f"b{res}")
        if ours.endswith("conv1") and hasattr(block, "skip"):
            synthesis.append((f"{res}x{res}/Skip/weight", _tf_conv(sd[f"synthesis.b{res}.skip.weight"], flip=True)))
        if ours.endswith("conv1") and hasattr(block, "torgb"):
            rgb_scope = f"ToRGB_lod{log2 - int(np.log2(res))}" if lod_names else f"{res}x{res}/ToRGB"
            synthesis += modulated(rgb_scope, f"synthesis.b{res}.torgb", False, noise=False)
        elif ours.endswith("conv1") and lod_names:  # the coarser levels of progressive growing, unused at lod 0
            channels, rng = sd[f"{ours}.bias"].shape[0], np.random.default_rng(res)
            shapes = {"weight": [1, 1, channels, G.img_channels], "mod_weight": [G.w_dim, channels],
                      "mod_bias": [channels], "bias": [G.img_channels]}
            synthesis += [(f"ToRGB_lod{log2 - int(np.log2(res))}/{name}", rng.standard_normal(shape).astype(np.float32))
                          for name, shape in shapes.items()]
    return own, mapping, synthesis


def tf_static_kwargs(G: Generator) -> dict:
    """The options NVIDIA's training passes to G_main for this configuration."""
    syn, mapping = G.init_kwargs["synthesis_kwargs"], G.init_kwargs["mapping_kwargs"]
    kwargs = dict(num_channels=G.img_channels, resolution=G.img_resolution, label_size=G.c_dim,
                  fmap_base=syn.get("channel_base", 32768) // 2, fmap_max=syn.get("channel_max", 512),
                  latent_size=G.z_dim, dlatent_size=G.w_dim, mapping_layers=G.mapping.num_layers,
                  mapping_fmaps=mapping.get("layer_features") or G.w_dim, architecture=syn.get("architecture", "skip"))
    for ours, tf_name in (("conv_clamp", "conv_clamp"), ("num_fp16_res", "num_fp16_res")):
        if ours in syn:
            kwargs[tf_name] = syn[ours]
    return kwargs


def tf_discriminator_variables(resolution: int, channels: int = 8) -> list:
    rng = np.random.default_rng(0)
    r = resolution
    shapes = {f"{r}x{r}/FromRGB/weight": [1, 1, 3, channels], f"{r}x{r}/FromRGB/bias": [channels],
              f"{r}x{r}/Conv0/weight": [3, 3, channels, channels], f"{r}x{r}/Conv1_down/weight": [3, 3, channels, channels],
              f"{r}x{r}/Skip/weight": [1, 1, channels, channels], "4x4/Conv/weight": [3, 3, channels + 1, channels],
              "4x4/Dense0/weight": [16 * channels, channels], "Output/weight": [channels, 1], "Output/bias": [1]}
    return [(name, rng.standard_normal(shape).astype(np.float32)) for name, shape in shapes.items()]


def tf_network(fake, name: str, func: str, variables: list, static_kwargs: dict | None = None,
               components: dict | None = None, version: int = 4):
    """One ``dnnlib.tflib.network.Network`` with the state its ``__getstate__`` returns."""
    return fake.Network(dict(version=version, name=name, static_kwargs=dict(static_kwargs or {}), components=components or {},
                             build_module_src=NEVER_RUN + "import tensorflow as tf\n", build_func_name=func,
                             variables=variables))


def write_tf_network(path, name: str, variables: list, components: dict[str, list] | None = None, version: int = 4) -> Path:
    """A pickle of one TensorFlow network ``name`` (components: name -> their variables)."""
    with fake_modules() as fake:
        parts = {part: tf_network(fake, part, part, part_variables) for part, part_variables in (components or {}).items()}
        return dump(tf_network(fake, name, name, variables, components=parts, version=version), path, 3, 1)


def write_tf_pickle(path, G: Generator, *, G_train: Generator | None = None, protocol: int = 3, numpy_version: int = 1,
                    networks: str = "G,D,Gs", lod_names: bool = False, static_kwargs: dict | None = None) -> Path:
    """A TensorFlow StyleGAN2 pickle as NVlabs/stylegan2 writes it: the tuple ``(G, D, Gs)`` of
    ``dnnlib.tflib.network.Network`` objects (``G`` from ``G_train``, ``Gs`` from ``G``), each
    pickled as its ``__getstate__`` dict with ``version`` 4, ``build_module_src`` (TF code that must
    never run) and ``variables`` as numpy values.  Written by Python 3.6/3.7 (protocol 3) and numpy 1
    by default.  ``networks``: which of G, D, Gs to store (``"D"``: a discriminator only)."""
    kwargs = {**tf_static_kwargs(G), **(static_kwargs or {})}
    with fake_modules() as fake:
        def network(name: str, func: str, variables: list, components: dict | None = None, extra: dict | None = None):
            return tf_network(fake, name, func, variables, {**kwargs, **(extra or {})}, components)

        def generator(name: str, source: Generator):
            own, mapping, synthesis = tf_generator_variables(source, lod_names)
            components = {"synthesis": network("G_synthesis", "G_synthesis_stylegan2", synthesis),
                          "mapping": network("G_mapping", "G_mapping", mapping, extra=dict(dlatent_broadcast=source.num_ws))}
            return network(name, "G_main", own, components)

        made = {"G": lambda: generator("G", G_train if G_train is not None else G),
                "D": lambda: network("D", "D_stylegan2", tf_discriminator_variables(G.img_resolution)),
                "Gs": lambda: generator("Gs", G)}
        items = tuple(made[name]() for name in networks.split(","))
        return dump(items if len(items) > 1 else items[0], path, protocol, numpy_version)


# ----------------------------------------------------------------------------- genforce / Hammer .pth


def genforce_state_dict(G: Generator, layout: str = "hammer") -> dict[str, torch.Tensor]:
    """G's tensors in the genforce layouts: ``"hammer"`` (ReSeFa) or ``"v1"`` (SeFa model zoo).

    Hammer: ``w_avg``, style biases initialised to 1, up-sampling weights as NVIDIA's PyTorch, FIR
    filters as normalised 2-D buffers.  v1: ``truncation.w_avg``, style biases without the 1 it adds
    at run time, up-sampling weights flipped (it flips them back, as TF does), filters as
    ``UpsamplingLayer`` kernels ``[1, 1, 4, 4]`` carrying a gain of 4.
    """
    sd = G.state_dict()
    v1 = layout == "v1"
    fir = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1]))
    fir = fir / fir.sum()
    out = {"truncation.w_avg" if v1 else "w_avg": sd["mapping.w_avg"].clone()}
    for i in range(G.mapping.num_layers):
        out[f"mapping.dense{i}.weight"] = sd[f"mapping.fc{i}.weight"].clone()
        out[f"mapping.dense{i}.bias"] = sd[f"mapping.fc{i}.bias"].clone()
    if G.c_dim:
        out["mapping.embedding.weight"] = sd["mapping.embed.weight"].clone()
        out["mapping.embedding.bias"] = sd["mapping.embed.bias"].clone()
    out["synthesis.early_layer.const"] = sd["synthesis.b4.const"][None].clone()

    def modulated(ours: str, theirs: str) -> None:
        out[f"{theirs}.weight"] = sd[f"{ours}.weight"].clone()
        out[f"{theirs}.bias"] = sd[f"{ours}.bias"].clone()
        out[f"{theirs}.style.weight"] = sd[f"{ours}.affine.weight"].clone()
        out[f"{theirs}.style.bias"] = sd[f"{ours}.affine.bias"] - (1.0 if v1 else 0.0)

    index = 0
    for k, res in enumerate(G.synthesis.block_resolutions):
        block = getattr(G.synthesis, f"b{res}")
        for conv in ("conv0", "conv1"):
            if not hasattr(block, conv):
                continue
            theirs, ours = f"synthesis.layer{index}", f"synthesis.b{res}.{conv}"
            modulated(ours, theirs)
            out[f"{theirs}.noise"] = sd[f"{ours}.noise_const"][None, None].clone()
            out[f"{theirs}.noise_strength"] = sd[f"{ours}.noise_strength"].clone()
            if conv == "conv0":
                if v1:
                    out[f"{theirs}.weight"] = out[f"{theirs}.weight"].flip([2, 3])
                    out[f"{theirs}.filter.kernel"] = (fir * 4)[None, None]
                else:
                    out[f"{theirs}.filter"] = fir.clone()
            index += 1
        if hasattr(block, "torgb"):
            modulated(f"synthesis.b{res}.torgb", f"synthesis.output{k}")
        if hasattr(block, "skip"):
            out[f"synthesis.residual{k}.weight"] = sd[f"synthesis.b{res}.skip.weight"].clone()
            out[f"synthesis.residual{k}.filter"] = fir.clone()
    if G.synthesis.b4.architecture == "skip":
        out["synthesis.upsample.kernel" if v1 else "synthesis.filter"] = (fir * 4)[None, None] if v1 else fir.clone()
    return out


def write_genforce_file(path, G: Generator, *, G_train: Generator | None = None, layout: str = "hammer",
                        networks: tuple[str, ...] = ("generator", "discriminator", "generator_smooth")) -> Path:
    """A genforce checkpoint: Hammer (ReSeFa) nests the state dicts under ``models`` (next to other
    training state); v1 (SeFa model zoo) keeps them at the top level.  ``generator_smooth`` is
    ``G``, ``generator`` is ``G_train`` (default ``G``)."""
    D = Discriminator(c_dim=0, img_resolution=G.img_resolution, img_channels=G.img_channels, channel_base=64, channel_max=8)
    made = {"generator": lambda: genforce_state_dict(G_train if G_train is not None else G, layout),
            "generator_smooth": lambda: genforce_state_dict(G, layout), "discriminator": D.state_dict}
    models = {name: made[name]() for name in networks}
    torch.save({"models": models, "running_stats": {"iter": 10000}} if layout == "hammer" else models, path)
    return Path(path)


# ----------------------------------------------------------------------------- rosinality .pt


def to_rosinality(G: Generator) -> dict:
    """G's tensors under rosinality's names and layouts."""
    sd = G.state_dict()
    out = {"input.input": sd["synthesis.b4.const"][None]}
    for i in range(G.mapping.num_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    convs = [("conv1", "synthesis.b4.conv1")]
    rgbs = [("to_rgb1", "synthesis.b4.torgb")]
    for k, res in enumerate(G.synthesis.block_resolutions[1:]):
        convs += [(f"convs.{2 * k}", f"synthesis.b{res}.conv0"), (f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1")]
        rgbs.append((f"to_rgbs.{k}", f"synthesis.b{res}.torgb"))
    for j, (dst, src) in enumerate(convs):
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]
        out[f"noises.noise_{j}"] = sd[f"{src}.noise_const"][None, None]
    for dst, src in rgbs:
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)
    return out
