"""The command line, run as a user would (in-process), on a tiny checkpoint written by the test."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from checkpoint_files import write_nvidia_pickle, write_tf_pickle
from conftest import make_tiny_generator, make_tiny_stylegan3
from otresefa.checkpoints import load_generator
from otresefa.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    make_tiny_generator().save(path)
    return str(path)


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_discover_then_edit(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("OTRESEFA_CACHE", str(tmp_path / "cache"))
    code, output = run("discover", checkpoint, "--seed", "4", "--region", "box:8,8,6,6", "--method", "resefa",
                       "--num-directions", "3", "--size", "16", "-o", tmp_path / "found")
    assert code == 0, output
    assert (tmp_path / "found" / "directions.npy").is_file() and (tmp_path / "found" / "preview.png").is_file()
    meta = json.loads((tmp_path / "found" / "directions.json").read_text())["metadata"]
    assert meta["method"] == "resefa" and meta["seeds"] == [4]
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1  # the Jacobian was cached

    code, output = run("edit", checkpoint, "--directions", tmp_path / "found" / "directions.npy", "--seeds", "0-1",
                       "--alphas", "-2:2:3", "--no-video", "-o", tmp_path / "edits")
    assert code == 0, output
    assert (tmp_path / "edits" / "index.html").is_file()
    assert (tmp_path / "edits" / "seed1" / "d0_locality.png").is_file()


def test_compare(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("OTRESEFA_CACHE", str(tmp_path / "cache"))
    code, output = run("compare", checkpoint, "--seed", "2", "--region", "box:8,8,6,6", "--methods", "resefa,sefa",
                       "--size", "16", "--alphas", "-2,0,2", "-o", tmp_path / "cmp")
    assert code == 0, output
    assert (tmp_path / "cmp" / "comparison.png").is_file()
    assert (tmp_path / "cmp" / "locality" / "sefa_d0.png").is_file()


def test_errors_are_one_line_and_exit_2(checkpoint, tmp_path):
    code, output = run("discover", tmp_path / "missing.pkl", "-o", tmp_path / "x")
    assert code == 2 and "checkpoint not found" in output and "Traceback" not in output
    code, output = run("discover", checkpoint, "--region", "ears", "--size", "16", "-o", tmp_path / "x")
    assert code == 2 and "unknown region 'ears'" in output
    code, output = run("discover", checkpoint, "--method", "resefa", "--option", "lamda=3", "--size", "16",
                       "--region", "box:8,8,6,6", "-o", tmp_path / "x")
    assert code == 2 and "unknown option" in output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("earlier results")
    code, output = run("compare", checkpoint, "--region", "box:8,8,6,6", "--methods", "resefa", "--size", "16",
                       "-o", tmp_path / "taken")
    assert code == 2 and "--overwrite" in output
    assert (tmp_path / "taken" / "keep.txt").read_text() == "earlier results"
    code, output = run("edit", checkpoint, "--directions", tmp_path / "nope.npy", "-o", tmp_path / "y")
    assert code == 2 and "nope.npy" in output


def test_methods_and_info(checkpoint):
    code, output = run("methods")
    assert code == 0 and "ot-resefa" in output and "lam=2.0" in output
    code, output = run("info", checkpoint)
    info = json.loads(output)
    assert code == 0 and info["format"] == "otresefa-safetensors" and info["init_kwargs"]["img_resolution"] == 16
    assert info["architecture"] == {"family": "stylegan2", "config": "skip", "resolution": 16, "num_ws": 6, "z_dim": 32,
                                    "w_dim": 32, "c_dim": 0, "mapping_layers": 2, "channel_base": 256, "channel_max": 16}


def test_convert_then_info(tmp_path):
    G_src = make_tiny_generator(architecture="resnet")
    source = write_tf_pickle(tmp_path / "stylegan2-tiny.pkl", G_src)
    code, output = run("info", source)
    assert code == 0 and json.loads(output)["format"] == "tensorflow-pickle"
    code, output = run("convert", source, tmp_path / "tiny.safetensors")
    assert code == 0 and "tensorflow-pickle ->" in output, output
    converted = load_generator(tmp_path / "tiny.safetensors")
    assert converted.architecture() == G_src.architecture()
    assert converted.training_metadata["source_format"] == "tensorflow-pickle"
    z = torch.randn(2, G_src.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (converted(z, noise_mode="const") - G_src(z, noise_mode="const")).abs().max() < 1e-6
    code, output = run("info", tmp_path / "tiny.safetensors")
    assert code == 0 and json.loads(output)["format"] == "otresefa-safetensors"


def test_convert_refuses_bad_targets(tmp_path, checkpoint):
    (tmp_path / "taken.safetensors").write_bytes(b"keep")
    code, output = run("convert", checkpoint, tmp_path / "taken.safetensors")
    assert code == 2 and "--overwrite" in output and (tmp_path / "taken.safetensors").read_bytes() == b"keep"
    code, output = run("convert", checkpoint, tmp_path / "taken.safetensors", "--overwrite")
    assert code == 0 and load_generator(tmp_path / "taken.safetensors").img_resolution == 16
    code, output = run("convert", checkpoint, tmp_path / "g.pkl")
    assert code == 2 and "must be a .safetensors file" in output
    (tmp_path / "empty.pkl").write_bytes(b"")
    code, output = run("convert", tmp_path / "empty.pkl", tmp_path / "out.safetensors")
    assert code == 2 and "is empty" in output and "Traceback" not in output
    assert not (tmp_path / "out.safetensors").exists()


def test_benchmark_reports_bad_settings(checkpoint, tmp_path):
    code, output = run("benchmark", checkpoint, "--quick", "--regions", "ears", "-o", tmp_path / "bench")
    assert code == 2 and "ears" in output and "Traceback" not in output


def test_convert_a_stylegan3_pickle(tmp_path):
    G_src = make_tiny_stylegan3()
    source = write_nvidia_pickle(tmp_path / "stylegan3-t-tiny.pkl", G_src, repository="stylegan3")
    code, output = run("convert", source, tmp_path / "sg3.safetensors")
    assert code == 0 and "nvidia-pickle (stylegan3 repository) ->" in output, output
    code, output = run("info", tmp_path / "sg3.safetensors")
    info = json.loads(output)
    assert code == 0 and info["architecture"]["family"] == "stylegan3" and info["architecture"]["config"] == "T"
    assert info["init_kwargs"] == G_src.init_kwargs
