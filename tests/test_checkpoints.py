"""Checkpoint formats: each file is built here from a small random generator; nothing is downloaded."""

from __future__ import annotations

import json
import os
import pickle
import sys
import types
from collections import OrderedDict
from contextlib import contextmanager

import pytest
import torch

from conftest import REFERENCE_DIR, make_tiny_generator, reference_dirs
from otresefa import checkpoints
from otresefa.checkpoints import (
    CheckpointError,
    UnsafeCheckpointError,
    UnsupportedCheckpointError,
    load_generator,
)
from otresefa.models import Generator


def same_images(G1: Generator, G2: Generator, seed: int = 0) -> float:
    z = torch.randn([3, G1.z_dim], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        a = G1(z, truncation_psi=0.7, noise_mode="const")
        b = G2(z, truncation_psi=0.7, noise_mode="const")
    return (a - b).abs().max().item()


# ----------------------------------------------------------------------------- native format


def test_native_round_trip(tmp_path, tiny_generator):
    path = tiny_generator.save(tmp_path / "g.safetensors", metadata={"note": "tiny"})
    G = load_generator(path)
    assert G.init_kwargs == tiny_generator.init_kwargs
    assert G.training_metadata == {"note": "tiny"}
    assert same_images(G, tiny_generator) == 0.0
    assert G.checkpoint_id.startswith("g-")


def test_native_save_refuses_to_overwrite(tmp_path, tiny_generator):
    path = tiny_generator.save(tmp_path / "g.safetensors")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_tiny_generator(seed=1).save(path)
    assert path.read_bytes() == before


# ----------------------------------------------------------------------------- NVIDIA pickles


@contextmanager
def fake_nvidia_modules():
    """Modules named like NVIDIA's, so that objects pickle with the official global names."""
    persistence = types.ModuleType("torch_utils.persistence")
    dnnlib_util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):  # never called: loading goes through our unpickler
        raise AssertionError

    _reconstruct_persistent_obj.__module__ = persistence.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj

    class EasyDict(dict):
        pass

    EasyDict.__module__ = dnnlib_util.__name__
    EasyDict.__qualname__ = "EasyDict"
    dnnlib_util.EasyDict = EasyDict
    saved = {name: sys.modules.get(name) for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")}
    sys.modules.update({"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
                        "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": dnnlib_util})
    try:
        yield persistence, dnnlib_util
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class Persisted:
    """Pickles exactly like a ``torch_utils.persistence`` object: ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, reconstruct, meta):
        self.reconstruct, self.meta = reconstruct, meta

    def __reduce__(self):
        return self.reconstruct, (self.meta,)


def persisted_module(module: torch.nn.Module, reconstruct, easydict, init_kwargs=None, module_src="# networks.py"):
    state = {
        "_init_args": (),
        "_init_kwargs": easydict(init_kwargs or {}),
        "training": False,
        "_parameters": OrderedDict((k, v) for k, v in module._parameters.items()),
        "_buffers": OrderedDict((k, v) for k, v in module._buffers.items()),
        "_modules": OrderedDict(
            (k, persisted_module(m, reconstruct, easydict, module_src=module_src)) for k, m in module._modules.items()
        ),
        "_backward_hooks": OrderedDict(),
        "_forward_hooks": OrderedDict(),
    }
    meta = dict(type="class", version=6, module_src=module_src, class_name=type(module).__name__, state=state)
    return Persisted(reconstruct, meta)


def write_nvidia_pickle(path, G: Generator, module_src="# networks.py", extra=None):
    with fake_nvidia_modules() as (persistence, dnnlib_util):
        easydict = dnnlib_util.EasyDict
        kwargs = json.loads(json.dumps(G.init_kwargs))
        kwargs["synthesis_kwargs"] = easydict(kwargs["synthesis_kwargs"])
        g = persisted_module(G, persistence._reconstruct_persistent_obj, easydict, kwargs, module_src)
        data = {"G": g, "D": None, "G_ema": g, "training_set_kwargs": easydict(path="faces.zip", resolution=16)}
        data.update(extra or {})
        with open(path, "wb") as handle:
            pickle.dump(data, handle)
    return path


def test_nvidia_pickle_loads_without_running_its_code(tmp_path, tiny_generator):
    # module_src would raise if anything imported or executed it
    path = write_nvidia_pickle(tmp_path / "network-snapshot-000100.pkl", tiny_generator,
                               module_src="raise RuntimeError('module_src was executed')")
    G = load_generator(path)
    assert same_images(G, tiny_generator) == 0.0
    assert "torch_utils" not in sys.modules


@pytest.mark.skipif(not reference_dirs(), reason="reference fixtures not found")
@pytest.mark.parametrize("folder", reference_dirs(), ids=lambda p: p.name)
def test_official_pickle_of_reference_generator_matches_reference_outputs(tmp_path, folder):
    G_ref = Generator(**json.loads((folder / "init_kwargs.json").read_text()))
    G_ref.load_state_dict(torch.load(folder / "state_dict.pt", weights_only=True))
    path = write_nvidia_pickle(tmp_path / "ffhq.pkl", G_ref)
    G = load_generator(path)
    ref = torch.load(folder / "reference_outputs.pt", weights_only=True)
    with torch.no_grad():
        img = G.synthesis(G.mapping(ref["z"], truncation_psi=0.7), noise_mode="const", force_fp32=True)
    assert (img - ref["img_psi07"]).abs().max() <= 1e-4 * (ref["img_psi07"].max() - ref["img_psi07"].min())


class Malicious:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "subprocess.Popen"])
def test_malicious_pickle_is_refused_without_side_effect(tmp_path, payload):
    marker = tmp_path / "pwned"
    import subprocess

    func, args = {
        "os.system": (os.system, (f"touch {marker}",)),
        "builtins.eval": (eval, (f"open({str(marker)!r}, 'w')",)),
        "subprocess.Popen": (subprocess.Popen, (["touch", str(marker)],)),
    }[payload]
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"G_ema": Malicious(func, *args)}, handle)
    with pytest.raises(UnsafeCheckpointError, match="not on the allow-list"):
        load_generator(path)
    assert not marker.exists()


def test_malicious_global_inside_a_network_is_refused(tmp_path, tiny_generator):
    marker = tmp_path / "pwned"
    path = write_nvidia_pickle(tmp_path / "evil.pkl", tiny_generator,
                               extra={"augment_pipe": Malicious(os.system, f"touch {marker}")})
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system"):
        load_generator(path)
    assert not marker.exists()


def test_stylegan3_pickle_is_refused_clearly(tmp_path, tiny_generator):
    path = write_nvidia_pickle(tmp_path / "stylegan3-t.pkl", tiny_generator,
                               module_src="class SynthesisInput(torch.nn.Module): ...")
    with pytest.raises(UnsupportedCheckpointError, match="StyleGAN3.*not supported yet"):
        load_generator(path)


def test_plain_pickle_without_networks_is_refused(tmp_path):
    path = tmp_path / "numbers.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="not an NVIDIA network pickle"):
        load_generator(path)


def test_pickle_without_requested_network(tmp_path, tiny_generator):
    path = write_nvidia_pickle(tmp_path / "g.pkl", tiny_generator)
    with pytest.raises(CheckpointError, match="no 'G_smooth' network"):
        load_generator(path, network="G_smooth")


# ----------------------------------------------------------------------------- rosinality


def to_rosinality(G: Generator) -> dict:
    """Write G's tensors under rosinality's names and layouts (inverse of the loader's table)."""
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


def test_rosinality_checkpoint_loads(tmp_path):
    G_src = make_tiny_generator(resolution=32, channel_base=256, channel_max=16)  # widths 16,16,16,8
    import argparse

    path = tmp_path / "550000.pt"
    torch.save({"g_ema": to_rosinality(G_src), "latent_avg": G_src.mapping.w_avg.clone(),
                "args": argparse.Namespace(size=32, channel_multiplier=2)}, path)
    G = load_generator(path)
    assert G.synthesis.img_resolution == 32
    assert same_images(G, G_src) < 1e-5


def test_rosinality_file_with_code_is_refused(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"g_ema": Malicious(os.system, "true")}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_generator(path)


# ----------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_generator(tmp_path / "nope.pkl")


def test_unknown_builtin_name_hints_builtins():
    with pytest.raises(FileNotFoundError, match="built-in models: synthfaces"):
        load_generator("ffhq")


def test_folder_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder"):
        load_generator(tmp_path)
    junk = tmp_path / "image.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    with pytest.raises(CheckpointError, match="not a generator checkpoint"):
        load_generator(junk)
    truncated = tmp_path / "cut.pkl"
    truncated.write_bytes(pickle.dumps({"a": list(range(100))})[:40])
    with pytest.raises(CheckpointError, match="could not be read"):
        load_generator(truncated)


def test_tensorflow_pickle_is_refused_with_conversion_hint(tmp_path):
    path = tmp_path / "stylegan2-ffhq-config-f.pkl"
    # protocol-2 GLOBAL opcode naming dnnlib.tflib.network.Network, as TF pickles do
    path.write_bytes(b"\x80\x02cdnnlib.tflib.network\nNetwork\nq\x00.")
    with pytest.raises(UnsupportedCheckpointError, match="TensorFlow"):
        load_generator(path)


def test_builtin_registry_points_into_the_package():
    assert checkpoints.BUILTIN_MODELS["synthfaces"].parent.name == "data"
