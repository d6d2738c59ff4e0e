"""Results folders: all or nothing, never clobbered without --overwrite, manifest and HTML index."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from otresefa.outputs import OutputFolder
from otresefa.render.images import to_pil


class LinkCollector(HTMLParser):
    """The page's relative links (``src``/``href``) and its visible text."""

    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.text: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.links.extend(value for name, value in attrs if name in ("src", "href"))

    def handle_data(self, data):
        self.text.append(data)


def parse_index(folder: Path) -> LinkCollector:
    parser = LinkCollector()
    parser.feed((folder / "index.html").read_text(encoding="utf-8"))
    return parser


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_results(out: Path, overwrite=False, caption="a <b>tile</b> & more", fail=False) -> None:
    with OutputFolder(out, overwrite=overwrite, title="test run", run_params={"seed": 4, "alphas": [-3.0, 3.0]}) as folder:
        folder.add_image("seed4/strip.png", to_pil(torch.zeros(3, 8, 8)), caption, {"alpha": 3.0}, "seed 4")
        folder.path_for("clip.mp4").write_bytes(b"not really a video")
        folder.add("clip.mp4", "a video", section="seed 4")
        folder.path_for("directions/a.npy").write_bytes(b"npy")
        folder.add("directions/a.npy", "directions", {"tensor": torch.tensor([1.0, float("nan")])}, "directions")
        if fail:
            raise RuntimeError("rendering failed")


def test_a_finished_folder_has_a_manifest_and_an_index_of_existing_files(tmp_path):
    out = tmp_path / "results"
    write_results(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # no temporary sibling left
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_params"] == {"seed": 4, "alphas": [-3.0, 3.0]}
    assert [entry["path"] for entry in manifest["files"]] == ["seed4/strip.png", "clip.mp4", "directions/a.npy"]
    assert manifest["files"][2]["params"] == {"tensor": [1.0, None]}  # NaN is not JSON
    page = parse_index(out)
    assert page.links and all((out / link).is_file() for link in page.links)
    assert {"seed4/strip.png", "clip.mp4", "directions/a.npy", "manifest.json"} <= set(page.links)
    assert "video" in page.tags and "script" not in page.tags
    text = "".join(page.text)
    assert "a <b>tile</b> & more" in text and "a video" in text  # captions, escaped (not parsed as tags)
    assert "b" not in page.tags


def test_an_existing_folder_is_refused_without_overwrite(tmp_path):
    out = tmp_path / "results"
    write_results(out, caption="first")
    before = snapshot(out)
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_results(out, caption="second")
    assert snapshot(out) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    write_results(empty)  # an empty folder holds no results to protect
    assert (empty / "index.html").is_file()


def test_a_failure_leaves_earlier_results_byte_identical_and_no_temporary_folder(tmp_path):
    out = tmp_path / "results"
    write_results(out, caption="first")
    before = snapshot(out)
    with pytest.raises(RuntimeError, match="rendering failed"):
        write_results(out, overwrite=True, caption="second", fail=True)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
    with pytest.raises(RuntimeError):
        write_results(tmp_path / "fresh", fail=True)
    assert not (tmp_path / "fresh").exists()


def test_overwrite_replaces_the_folder_whole(tmp_path):
    out = tmp_path / "results"
    write_results(out, caption="first")
    (out / "stale.txt").write_text("from an older run")
    write_results(out, overwrite=True, caption="second")
    assert not (out / "stale.txt").exists()
    assert "second" in (out / "index.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_files_must_exist_and_stay_inside_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        with OutputFolder(tmp_path / "out") as folder:
            folder.add("missing.png", "never written")
    with pytest.raises(ValueError, match="relative path inside"):
        with OutputFolder(tmp_path / "out") as folder:
            folder.path_for("../escape.png")
    assert sorted(tmp_path.iterdir()) == []
