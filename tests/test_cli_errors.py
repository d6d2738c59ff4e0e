"""Bad input on the command line: one clear line naming the problem, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_tiny_generator
from otresefa.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    make_tiny_generator().save(path)
    return str(path)


@pytest.fixture(scope="module")
def discovered(checkpoint, tmp_path_factory):
    """The output folder of a real `otresefa discover` run."""
    folder = tmp_path_factory.mktemp("found") / "out"
    cache = tmp_path_factory.mktemp("cache")
    result = runner.invoke(app, ["discover", checkpoint, "--region", "box:128,128,96,96", "--method", "resefa",
                                 "-k", "2", "--size", "16", "-o", str(folder)], env={"OTRESEFA_CACHE": str(cache)})
    assert result.exit_code == 0, result.output
    return folder


def fails(*args, message: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert message in " ".join(result.output.split()), result.output
    return result.output


def test_read_only_output_folder(checkpoint, tmp_path):
    if os.geteuid() == 0:  # root writes through permissions: take a folder nobody can write to
        parent = "/sys"
    else:
        (tmp_path / "locked").mkdir()
        os.chmod(tmp_path / "locked", 0o555)
        parent = tmp_path / "locked"
    fails("discover", checkpoint, "--region", "box:128,128,96,96", "-o", f"{parent}/otresefa-out",
          message="is not writable")


def test_strengths_devices_and_ports(checkpoint, discovered, tmp_path):
    fails("edit", checkpoint, "-d", discovered, "--fps", "0", "-o", tmp_path / "e", message="--fps must be positive")
    fails("discover", checkpoint, "--device", "banana", "-o", tmp_path / "d", message="unknown device 'banana'")
    fails("ui", "--port", "99999", message="Invalid value for '--port'")
    fails("ui", "--port", "-5", message="Invalid value for '--port'")
    import torch

    if not torch.cuda.is_available():
        fails("discover", checkpoint, "--device", "cuda", "--region", "box:128,128,96,96", "-o", tmp_path / "c",
              message="CUDA is not available")


def test_directions_given_as_a_folder_an_image_or_a_sidecar(checkpoint, discovered, tmp_path, monkeypatch):
    monkeypatch.setenv("OTRESEFA_CACHE", str(tmp_path / "cache"))
    result = runner.invoke(app, ["edit", checkpoint, "-d", str(discovered), "--seeds", "0", "--alphas", "-1,0,1",
                                 "--no-video", "-o", str(tmp_path / "edits")])
    assert result.exit_code == 0, result.output  # the folder's directions.npy
    (tmp_path / "img.png").write_bytes(b"\x89PNG")
    fails("edit", checkpoint, "-d", tmp_path / "img.png", "-o", tmp_path / "e1", message="img.png is not a directions file")
    (tmp_path / "lonely.json").write_text("{}")
    fails("edit", checkpoint, "-d", tmp_path / "lonely.json", "-o", tmp_path / "e2",
          message="directions file not found")
    fails("edit", checkpoint, "-d", tmp_path, "-o", tmp_path / "e3", message="is a folder without a directions.npy")
    np.save(tmp_path / "wide.npy", np.ones((1, 7), np.float32))
    fails("edit", checkpoint, "-d", tmp_path / "wide.npy", "-o", tmp_path / "e4", message="have dimension 7")


def test_indices_seeds_and_regions(checkpoint, discovered, tmp_path):
    fails("edit", checkpoint, "-d", discovered, "--index", "abc", "-o", tmp_path / "e",
          message="cannot read indices from 'abc' (--index)")
    fails("edit", checkpoint, "-d", discovered, "--index", "5", "--seeds", "0", "-o", tmp_path / "e",
          message="out of range")
    fails("discover", checkpoint, "--seed", "5-2", "-o", tmp_path / "d", message="the range '5-2' (--seed) runs backwards")
    fails("edit", checkpoint, "-d", discovered, "--seeds", "x", "-o", tmp_path / "e",
          message="cannot read seeds from 'x' (--seeds)")
    fails("discover", checkpoint, "--region", "box:250,128,40,40", "--size", "16", "-o", tmp_path / "d",
          message="beyond the 256x256 frame")
    fails("discover", checkpoint, "--layers", "3-1", "-o", tmp_path / "d", message="(--layers) runs backwards")
    fails("discover", checkpoint, "--layers", "0-99", "--region", "box:128,128,96,96", "-o", tmp_path / "d",
          message="layer indices")


def test_arguments_are_checked_before_the_model_is_loaded(tmp_path):
    missing = tmp_path / "never-loaded.pkl"
    fails("compare", missing, "--methods", "resefa,magic", "-o", tmp_path / "c", message="unknown method 'magic'")
    fails("discover", missing, "--method", "resefa", "--option", "tau=big", "-o", tmp_path / "d",
          message="option 'tau' of method 'resefa' takes float")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    fails("discover", missing, "-o", tmp_path / "taken", message="--overwrite")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_help_and_argument_errors_answer_without_loading_torch():
    code = ("import sys, otresefa.cli as c; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(c.app, ['discover', '--seed', '5-2']); "
            "assert r.exit_code == 2, r.output; assert 'torch' not in sys.modules, 'torch was imported'")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    shown = subprocess.run([sys.executable, "-m", "otresefa.cli", "--help"], check=True, capture_output=True, text=True)
    assert "discover" in shown.stdout
    assert time.perf_counter() - started < 10  # measured well under 1 s each on an idle machine
