"""``otresefa demo`` end to end in quick mode."""

from __future__ import annotations

import json

import pytest

from otresefa import demo
from otresefa.checkpoints import load_generator
from otresefa.demo import pick_seed, run_demo


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_generator):
    return str(tiny_generator.save(tmp_path / "tiny.safetensors"))


def test_demo_writes_every_figure_and_replaces_only_its_own_output(tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("OTRESEFA_CACHE", str(tmp_path / "cache"))
    out = run_demo(tmp_path / "demo", checkpoint=tiny_checkpoint, quick=True, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    written = {entry["path"] for entry in manifest["files"]}
    for region in ("mouth", "eyes"):
        for name in ("comparison.png", "ot-resefa_sweep.gif", "strips/ot-resefa.png", "strips/resefa.png",
                     "locality/ot-resefa.png", "locality/resefa.png", "directions/ot-resefa.npy",
                     "directions/resefa.json"):
            assert f"{region}/{name}" in written and (out / region / name).is_file()
    assert (out / "index.html").is_file()
    # running the demo again replaces the earlier demo output ...
    run_demo(tmp_path / "demo", checkpoint=tiny_checkpoint, quick=True, progress=False)
    # ... but never a folder the demo did not write
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_demo(tmp_path / "mine", checkpoint=tiny_checkpoint, quick=True, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_demo_on_the_builtin_model(tmp_path, monkeypatch):
    monkeypatch.setenv("OTRESEFA_CACHE", str(tmp_path / "cache"))
    out = run_demo(tmp_path / "demo", quick=True, progress=False)
    run_params = json.loads((out / "manifest.json").read_text())["run_params"]
    assert any("mouth" in note for note in run_params["notes"]) and any("eyes" in note for note in run_params["notes"])
    assert run_params["seed"] >= demo.DEMO_SEED and run_params["seed_choice"].startswith("first seed")


def test_the_demo_seed_is_the_first_with_every_region_or_a_clear_error(tiny_checkpoint, monkeypatch):
    G = load_generator(tiny_checkpoint)
    assert pick_seed(G, 0.7) == demo.DEMO_SEED  # FFHQ preset boxes exist on every image
    monkeypatch.setattr(demo, "DEMO_REGIONS", ("mouth", "no-such-region"))
    with pytest.raises(ValueError, match="none of the seeds 4-7 shows every demo region"):
        pick_seed(G, 0.7, tries=4)
