"""Checkpoint formats: every file is written here (``checkpoint_files``) from a known generator; nothing is downloaded."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch

from checkpoint_files import (
    persisted,
    persisted_module,
    to_rosinality,
    write_genforce_file,
    write_nvidia_pickle,
    write_tf_network,
    write_tf_pickle,
)
from conftest import STYLEGAN3_REFERENCE_DIR, make_tiny_generator, max_rel_error, reference_dirs, tiny_generator_kwargs
from otresefa import checkpoints
from otresefa.checkpoints import (
    CheckpointError,
    UnsafeCheckpointError,
    UnsupportedCheckpointError,
    load_generator,
)
from otresefa.models import Generator, StyleGAN3Generator


def image_difference(G1: Generator, G2: Generator, seed: int = 0) -> float:
    """Max difference of the images of both generators for 3 latents (psi 0.7, constant noise)."""
    z = torch.randn([3, G1.z_dim], generator=torch.Generator().manual_seed(seed))
    c = torch.eye(G1.c_dim)[:1].repeat(3, 1) if G1.c_dim else None
    with torch.no_grad():
        a = G1(z, c, truncation_psi=0.7, noise_mode="const")
        b = G2(z, c, truncation_psi=0.7, noise_mode="const")
    return (a - b).abs().max().item()


def matches_reference_outputs(G: Generator, folder) -> bool:
    ref = torch.load(folder / "reference_outputs.pt", weights_only=True)
    with torch.no_grad():
        img = G.synthesis(G.mapping(ref["z"], truncation_psi=0.7), noise_mode="const", force_fp32=True)
    return bool((img - ref["img_psi07"]).abs().max() <= 1e-4 * (ref["img_psi07"].max() - ref["img_psi07"].min()))


def reference_generator(folder) -> Generator:
    G = Generator(**json.loads((folder / "init_kwargs.json").read_text()))
    G.load_state_dict(torch.load(folder / "state_dict.pt", weights_only=True))
    return G.eval()


needs_reference = pytest.mark.skipif(not reference_dirs(), reason="reference fixtures not found")
REFERENCE = reference_dirs()[0] if reference_dirs() else None  # sg2_res32_skip: 8-layer 512-wide mapping
SG3_REFERENCE = reference_dirs(STYLEGAN3_REFERENCE_DIR)


# ----------------------------------------------------------------------------- native format


def test_native_round_trip(tmp_path, tiny_generator):
    path = tiny_generator.save(tmp_path / "g.safetensors", metadata={"note": "tiny"})
    G = load_generator(path)
    assert G.init_kwargs == tiny_generator.init_kwargs
    assert G.training_metadata == {"note": "tiny"}
    assert image_difference(G, tiny_generator) == 0.0
    assert G.checkpoint_id.startswith("g-") and G.checkpoint_format == "otresefa-safetensors"


def test_native_save_refuses_to_overwrite(tmp_path, tiny_generator):
    path = tiny_generator.save(tmp_path / "g.safetensors")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_tiny_generator(seed=1).save(path)
    assert path.read_bytes() == before


def test_architecture_summary():
    G = make_tiny_generator(resolution=32, architecture="resnet")
    assert G.architecture() == {"family": "stylegan2", "config": "resnet", "resolution": 32, "num_ws": 8, "z_dim": 32,
                                "w_dim": 32, "c_dim": 0, "mapping_layers": 2, "channel_base": 512, "channel_max": 16}


# ----------------------------------------------------------------------------- NVIDIA PyTorch pickles


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("numpy_version", [1, 2])
@pytest.mark.parametrize("repository", ["stylegan2-ada-pytorch", "stylegan3"])
def test_nvidia_pickle_with_numpy_scalars_loads_without_running_its_code(tmp_path, repository, numpy_version, protocol):
    G_src = make_tiny_generator()
    path = write_nvidia_pickle(tmp_path / "network-snapshot-000100.pkl", G_src, repository=repository,
                               numpy_version=numpy_version, protocol=protocol)
    raw = path.read_bytes()
    # the file really holds numpy scalars and arrays, spelled as that numpy writes them
    assert (b"numpy.core.multiarray" if numpy_version == 1 else b"numpy._core.multiarray") in raw
    assert (b"numpy._core" not in raw) if numpy_version == 1 else (b"numpy.core" not in raw)
    G = load_generator(path)  # module_src raises if anything imports or executes it
    assert image_difference(G, G_src) == 0.0
    assert G.checkpoint_format == ("nvidia-pickle (stylegan3 repository)" if repository == "stylegan3"
                                   else "nvidia-pickle (stylegan2-ada-pytorch)")
    assert G.init_kwargs["synthesis_kwargs"]["channel_base"] == G_src.init_kwargs["synthesis_kwargs"]["channel_base"]
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules


@pytest.mark.parametrize("architecture", ["resnet", "orig"])
def test_nvidia_pickle_of_other_architectures(tmp_path, architecture):
    G_src = make_tiny_generator(architecture=architecture)
    G = load_generator(write_nvidia_pickle(tmp_path / "g.pkl", G_src))
    assert G.architecture()["config"] == architecture and image_difference(G, G_src) == 0.0


def test_nvidia_pickle_G_and_G_ema_are_told_apart(tmp_path):
    G_ema, G_train = make_tiny_generator(seed=0), make_tiny_generator(seed=1)
    path = write_nvidia_pickle(tmp_path / "g.pkl", G_ema, G_train=G_train)
    assert image_difference(load_generator(path), G_ema) == 0.0
    assert image_difference(load_generator(path, network="G"), G_train) == 0.0


@needs_reference
@pytest.mark.parametrize("repository", ["stylegan2-ada-pytorch", "stylegan3"])
def test_official_pickle_of_reference_generator_matches_reference_outputs(tmp_path, repository):
    path = write_nvidia_pickle(tmp_path / "ffhq.pkl", reference_generator(REFERENCE), repository=repository, numpy_version=1)
    assert matches_reference_outputs(load_generator(path), REFERENCE)


class Malicious:
    def __init__(self, func, *args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "subprocess.Popen"])
def test_malicious_pickle_is_refused_without_side_effect(tmp_path, payload):
    marker = tmp_path / "pwned"
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


# Abuses of the allowed numpy globals: each would make numpy read raw bytes as Python object
# pointers (or hand numpy objects), so each must stop the load.
NUMPY_ABUSES = {
    # float64 whose pickled state claims "holds objects" (flags 63): numpy's own __setstate__ accepts it
    "object flags on float64": lambda: Malicious(np.dtype, "f8", False, True, state=(3, "<", None, None, None, -1, -1, 63)),
    "object dtype": lambda: np.dtype(object),
    "object array": lambda: np.array([1, "x", None], dtype=object),
    "structured dtype": lambda: np.dtype([("a", "f8"), ("b", "O")]),
    "_reconstruct of another class": lambda: Malicious(np._core.multiarray._reconstruct, set, (0,), b"b"),
    "array data given as objects": lambda: Malicious(np._core.multiarray._reconstruct, np.ndarray, (0,), b"b",
                                                     state=(1, (2,), np.dtype("f8"), False, [1.0, 2.0])),
    "object scalar": lambda: Malicious(np._core.multiarray.scalar, np.dtype(object), "os"),
}


MALFORMED_NUMPY = {
    "array state of another form": lambda: Malicious(np._core.multiarray._reconstruct, np.ndarray, (0,), b"b", state=(1, 2)),
    "negative array shape": lambda: Malicious(np._core.multiarray._reconstruct, np.ndarray, (0,), b"b",
                                              state=(1, (-1,), np.dtype("f8"), False, b"")),
    "scalar of the wrong size": lambda: Malicious(np._core.multiarray.scalar, np.dtype("f8"), b"\x00" * 3),
    "protocol-5 array in another order": lambda: Malicious(np._core.numeric._frombuffer, b"\x00" * 8, np.dtype("f8"),
                                                           (1,), "X"),
}


def numpy_value_in_a_generator(tmp_path, generator, value):
    """A pickle whose G_ema keeps ``value`` among its attributes, where real pickles keep numpy values."""
    return write_nvidia_pickle(tmp_path / "evil.pkl", generator, generator_record=lambda fake: persisted(
        fake, "Generator", {"act_gain": value, "_modules": {}}, "# networks.py", {}))


@pytest.mark.parametrize("abuse", sorted(NUMPY_ABUSES))
def test_numpy_globals_are_refused_for_anything_but_numbers(tmp_path, tiny_generator, abuse):
    with pytest.raises(UnsafeCheckpointError, match="refusing numpy data"):
        load_generator(numpy_value_in_a_generator(tmp_path, tiny_generator, NUMPY_ABUSES[abuse]()))


@pytest.mark.parametrize("case", sorted(MALFORMED_NUMPY))
def test_malformed_numpy_values_are_named(tmp_path, tiny_generator, case):
    with pytest.raises(CheckpointError, match="malformed numpy"):
        load_generator(numpy_value_in_a_generator(tmp_path, tiny_generator, MALFORMED_NUMPY[case]()))


def test_numpy_ndarray_is_not_callable_from_a_pickle(tmp_path):
    # numpy.ndarray(shape) would hand out uninitialised memory
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Malicious(np.ndarray, (1 << 20,))}, protocol=2))
    with pytest.raises(CheckpointError, match="could not be read"):
        load_generator(path)


@pytest.mark.skipif(not SG3_REFERENCE, reason="StyleGAN3 reference fixtures not found")
@pytest.mark.parametrize("folder", SG3_REFERENCE, ids=lambda p: p.name)
def test_stylegan3_pickle_matches_reference_outputs(tmp_path, folder):
    init_kwargs = json.loads((folder / "init_kwargs.json").read_text())
    G_src = StyleGAN3Generator.for_loading(**init_kwargs)
    G_src.load_state_dict(torch.load(folder / "state_dict.pt", weights_only=True))
    path = write_nvidia_pickle(tmp_path / "stylegan3-t-ffhq-1024x1024.pkl", G_src, repository="stylegan3", numpy_version=1)
    assert b"_reconstruct" in path.read_bytes()  # the layers' sizes are numpy arrays, as in NVIDIA's
    G = load_generator(path)
    assert isinstance(G, StyleGAN3Generator) and G.checkpoint_format == "nvidia-pickle (stylegan3 repository)"
    assert G.init_kwargs == init_kwargs  # the pickle's constructor kwargs, verbatim
    assert G.architecture()["family"] == "stylegan3" and G.architecture()["config"] == G_src.config
    ref = torch.load(folder / "reference_outputs.pt", weights_only=True)
    with torch.no_grad():
        img = G.synthesis(G.mapping(ref["z"], None, truncation_psi=0.7), noise_mode="const", force_fp32=True)
    assert max_rel_error(img, ref["img_psi07"]) <= 1e-4


def test_tiny_stylegan3_pickle_round_trip(tmp_path, tiny_stylegan3):
    G = load_generator(write_nvidia_pickle(tmp_path / "sg3.pkl", tiny_stylegan3, repository="stylegan3", protocol=5))
    assert isinstance(G, StyleGAN3Generator) and image_difference(G, tiny_stylegan3) == 0.0


def test_stylegan3_record_of_another_architecture_is_named(tmp_path, tiny_generator):
    # StyleGAN2 layers recorded as if from networks_stylegan3 (say, a StyleGAN-XL variant)
    path = write_nvidia_pickle(tmp_path / "xl.pkl", tiny_generator, module_src="class SynthesisInput(torch.nn.Module): ...")
    with pytest.raises(UnsupportedCheckpointError, match="not a StyleGAN3 generator this library implements"):
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
    with pytest.raises(UnsupportedCheckpointError, match="'D' .* is a persisted 'Discriminator', not a Generator"):
        load_generator(path, network="D")
    with pytest.raises(CheckpointError, match="'training_set_kwargs' .* is not a network \\(it is a dict\\)"):
        load_generator(path, network="training_set_kwargs")
    positional = write_nvidia_pickle(tmp_path / "args.pkl", tiny_generator, generator_record=lambda fake: persisted(
        fake, "Generator", {"_init_args": (512,), "_modules": {}}, "# networks.py", {}))
    with pytest.raises(CheckpointError, match="unexpected positional constructor arguments"):
        load_generator(positional)


def test_pickle_of_an_unknown_network_class(tmp_path, tiny_generator):
    path = write_nvidia_pickle(tmp_path / "g.pkl", tiny_generator, generator_record=lambda fake: persisted_module(
        fake, torch.nn.Linear(4, 4), "# my_networks.py"))
    with pytest.raises(UnsupportedCheckpointError, match="persisted 'Linear', not a Generator"):
        load_generator(path)


def test_unknown_generator_architectures_are_named(tmp_path, tiny_generator):
    # a StyleGAN-XL-like generator: constructor options this library does not have ...
    def stylegan_xl(fake):
        kwargs = dict(tiny_generator.init_kwargs, superres=True, path_stem="stem.pkl", head_layers=4)
        return persisted_module(fake, tiny_generator, "# pg_modules/networks_stylegan2.py", kwargs)

    path = write_nvidia_pickle(tmp_path / "xl.pkl", tiny_generator, generator_record=stylegan_xl)
    with pytest.raises(UnsupportedCheckpointError, match="not a StyleGAN2 generator this library implements.*superres"):
        load_generator(path)

    # ... or the usual options but layers of its own
    class WithHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mapping, self.synthesis, self.head = tiny_generator.mapping, tiny_generator.synthesis, torch.nn.Linear(2, 2)

    def other(fake):
        record = persisted_module(fake, WithHead(), "# other.py", json.loads(json.dumps(tiny_generator.init_kwargs)))
        record.meta["class_name"] = "Generator"
        return record

    path = write_nvidia_pickle(tmp_path / "other.pkl", tiny_generator, generator_record=other)
    with pytest.raises(UnsupportedCheckpointError, match=r"do not match a StyleGAN2 generator.*head\.bias"):
        load_generator(path)


# ----------------------------------------------------------------------------- TensorFlow pickles


@pytest.mark.parametrize("numpy_version,protocol", [(1, 3), (1, 2), (2, 4), (2, 5)])
@pytest.mark.parametrize("architecture", ["skip", "resnet", "orig"])
def test_tensorflow_pickle_round_trip(tmp_path, architecture, numpy_version, protocol):
    Gs, G_train = make_tiny_generator(seed=0, architecture=architecture), make_tiny_generator(seed=1, architecture=architecture)
    path = write_tf_pickle(tmp_path / "stylegan2-tiny-config-f.pkl", Gs, G_train=G_train, numpy_version=numpy_version,
                           protocol=protocol)
    G = load_generator(path)  # build_module_src raises if anything executes it
    assert G.checkpoint_format == "tensorflow-pickle"
    assert G.architecture() == Gs.architecture()
    assert image_difference(G, Gs) < 1e-6
    assert image_difference(load_generator(path, network="G"), G_train) < 1e-6


@needs_reference
def test_tensorflow_pickle_of_reference_generator_matches_reference_outputs(tmp_path):
    path = write_tf_pickle(tmp_path / "stylegan2-ffhq-config-f.pkl", reference_generator(REFERENCE))
    assert matches_reference_outputs(load_generator(path), REFERENCE)


def test_tensorflow_conditional_generator(tmp_path):
    torch.manual_seed(0)
    Gs = Generator(**{**tiny_generator_kwargs(), "c_dim": 3})
    G = load_generator(write_tf_pickle(tmp_path / "cond.pkl", Gs))
    assert G.c_dim == 3 and image_difference(G, Gs) < 1e-6


def test_tensorflow_progressive_growing_names(tmp_path):
    # configs B-D name their RGB layers ToRGB_lod{n}; at full resolution only lod 0 is drawn
    Gs = make_tiny_generator(architecture="orig")
    G = load_generator(write_tf_pickle(tmp_path / "config-d.pkl", Gs, lod_names=True))
    assert G.architecture()["config"] == "orig" and image_difference(G, Gs) < 1e-6


def test_tensorflow_bad_files_are_named(tmp_path, tiny_generator):
    with pytest.raises(UnsupportedCheckpointError, match="discriminator only"):
        load_generator(write_tf_pickle(tmp_path / "d.pkl", tiny_generator, networks="D"))
    with pytest.raises(UnsupportedCheckpointError, match=r"unknown TensorFlow generator option\(s\) \['fmap_decay'\]"):
        load_generator(write_tf_pickle(tmp_path / "decay.pkl", tiny_generator, static_kwargs={"fmap_decay": 0.5}))
    write_tf_network(tmp_path / "encoder.pkl", "Encoder", [("Dense0/weight", np.zeros((2, 2), np.float32))])
    with pytest.raises(UnsupportedCheckpointError, match=r"networks \['Encoder'\] but no StyleGAN2 generator"):
        load_generator(tmp_path / "encoder.pkl")
    write_tf_network(tmp_path / "stylegan1.pkl", "Gs", [], components={"mapping": [], "synthesis": []}, version=3)
    with pytest.raises(UnsupportedCheckpointError, match="version 3 predates StyleGAN2"):
        load_generator(tmp_path / "stylegan1.pkl")
    concat = [("LabelConcat/weight", np.zeros((3, 4), np.float32))]
    write_tf_network(tmp_path / "concat.pkl", "Gs", [], components={"mapping": concat, "synthesis": []})
    with pytest.raises(UnsupportedCheckpointError, match="LabelConcat"):
        load_generator(tmp_path / "concat.pkl")
    with pytest.raises(CheckpointError, match="networks are 'G_ema' \\(Gs\\) and 'G', not 'G_smooth'"):
        load_generator(write_tf_pickle(tmp_path / "g.pkl", tiny_generator), network="G_smooth")


# ----------------------------------------------------------------------------- genforce / Hammer .pth


# (genforce v1's resnet registers its skip layer under a conv's name: no such v1 files exist)
@pytest.mark.parametrize("layout,architecture", [("hammer", "skip"), ("hammer", "resnet"), ("hammer", "orig"),
                                                 ("v1", "skip"), ("v1", "orig")])
def test_genforce_file_round_trip_prefers_generator_smooth(tmp_path, layout, architecture):
    G_smooth = make_tiny_generator(seed=0, architecture=architecture)
    G_train = make_tiny_generator(seed=1, architecture=architecture)
    G = load_generator(write_genforce_file(tmp_path / "stylegan2_tiny.pth", G_smooth, G_train=G_train, layout=layout))
    assert G.checkpoint_format == ("hammer-pth" if layout == "hammer" else "genforce-pth")
    assert G.architecture() == G_smooth.architecture()
    assert image_difference(G, G_smooth) < 1e-6
    only_train = write_genforce_file(tmp_path / "train.pth", G_train, layout=layout, networks=("generator",))
    assert image_difference(load_generator(only_train), G_train) < 1e-6


@needs_reference
def test_hammer_file_of_reference_generator_matches_reference_outputs(tmp_path):
    path = write_genforce_file(tmp_path / "stylegan2_ffhq1024.pth", reference_generator(REFERENCE))
    assert matches_reference_outputs(load_generator(path), REFERENCE)


def test_genforce_bad_files_are_named(tmp_path, tiny_generator):
    with pytest.raises(UnsupportedCheckpointError, match="without a generator.*'discriminator'"):
        load_generator(write_genforce_file(tmp_path / "d.pth", tiny_generator, networks=("discriminator",)))
    torch.save({"models": {"generator_smooth": {"synthesis.input.freqs": torch.zeros(4, 2)}}}, tmp_path / "sg3.pth")
    with pytest.raises(UnsupportedCheckpointError, match="not a StyleGAN2 in the genforce/Hammer layout"):
        load_generator(tmp_path / "sg3.pth")
    path = write_genforce_file(tmp_path / "box.pth", tiny_generator)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["models"]["generator_smooth"]["synthesis.filter"] = torch.ones(4, 4) / 16
    torch.save(checkpoint, path)
    with pytest.raises(UnsupportedCheckpointError, match="'synthesis.filter' is not StyleGAN2's"):
        load_generator(path)
    state = checkpoint["models"]["generator_smooth"]
    del state["synthesis.filter"]
    for change, message in [
        (lambda sd: sd.pop("synthesis.layer2.style.bias"), "no tensor 'synthesis.layer2.style.bias'"),
        (lambda sd: sd.update({"mapping.label_weight": torch.zeros(3, 32)}), "label_weight"),
        (lambda sd: sd.update({"synthesis.layer0.noise": torch.zeros(1, 16, 1, 1)}), "per-channel noise"),
        (lambda sd: sd.pop("synthesis.layer1.weight"), "incomplete generator"),
        (lambda sd: sd.update({"synthesis.layer0.extra": torch.zeros(2)}), "unexpected \\['synthesis.layer0.extra'\\]"),
        (lambda sd: sd.update({"synthesis.layer0.bias": torch.zeros(3)}), "unexpected shape"),
    ]:
        broken = dict(state)
        change(broken)
        torch.save({"models": {"generator_smooth": broken}}, path)
        with pytest.raises(UnsupportedCheckpointError, match=message):
            load_generator(path)


# ----------------------------------------------------------------------------- rosinality


def test_rosinality_checkpoint_loads(tmp_path):
    G_src = make_tiny_generator(resolution=32, channel_base=256, channel_max=16)  # widths 16,16,16,8
    path = tmp_path / "550000.pt"
    torch.save({"g_ema": to_rosinality(G_src), "latent_avg": G_src.mapping.w_avg.clone(),
                "args": argparse.Namespace(size=32, channel_multiplier=2)}, path)
    G = load_generator(path)
    assert G.synthesis.img_resolution == 32 and G.checkpoint_format == "rosinality-pt"
    assert image_difference(G, G_src) < 1e-5


def test_rosinality_file_missing_a_tensor_is_named(tmp_path):
    state = to_rosinality(make_tiny_generator())
    del state["convs.1.conv.modulation.bias"]
    torch.save({"g_ema": state}, tmp_path / "cut.pt")
    with pytest.raises(UnsupportedCheckpointError, match="has no tensor 'convs.1.conv.modulation.bias'"):
        load_generator(tmp_path / "cut.pt")


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


def test_folder_empty_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder"):
        load_generator(tmp_path)
    (tmp_path / "ffhq.pkl").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        load_generator(tmp_path / "ffhq.pkl")
    junk = tmp_path / "image.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    with pytest.raises(CheckpointError, match="not a generator checkpoint"):
        load_generator(junk)
    truncated = tmp_path / "cut.pkl"
    truncated.write_bytes(pickle.dumps({"a": list(range(100))})[:40])
    with pytest.raises(CheckpointError, match="could not be read"):
        load_generator(truncated)
    torch.save({"state_dict": OrderedDict(weight=torch.zeros(2))}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="neither a rosinality checkpoint.*nor a genforce/Hammer one"):
        load_generator(tmp_path / "other.pt")


def test_builtin_registry_points_into_the_package():
    assert checkpoints.BUILTIN_MODELS["synthfaces"].parent.name == "data"
