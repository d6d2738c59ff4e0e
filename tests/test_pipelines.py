"""The CLI's and web UI's entry points: edit and compare reports, and their text inputs."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from otresefa.parsing import parse_alphas, parse_layers
from otresefa.pipelines import compare_methods, compare_report, edit_report, region_from_spec
from otresefa.regions import box_region, preset_region

FAST = dict(display_size=32, num_frames=3, sweep_tiles=3, progress=False)


class StandInDirections:
    """Just what the reports use of a Directions: vectors, metadata and a ``save``."""

    def __init__(self, vectors, metadata=None):
        self.vectors = torch.nn.functional.normalize(torch.as_tensor(vectors, dtype=torch.float32), dim=-1)
        self.metadata = dict(metadata or {})

    def save(self, path):
        np.save(f"{path}.npy", self.vectors.numpy())
        with open(f"{path}.json", "w") as file:
            json.dump(self.metadata, file)


def random_directions(dim, count, seed=0, **metadata):
    return StandInDirections(torch.randn(count, dim, generator=torch.Generator().manual_seed(seed)), metadata)


class LinkCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links.extend(value for name, value in attrs if name in ("src", "href"))


def index_links(folder):
    parser = LinkCollector()
    parser.feed((folder / "index.html").read_text(encoding="utf-8"))
    return parser.links


def test_parse_alphas_reads_ranges_and_lists():
    assert parse_alphas("-4:4:9") == [-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0]
    assert parse_alphas("-3:3:5") == [-3.0, -1.5, 0.0, 1.5, 3.0]
    assert parse_alphas("-3, 0,3") == [-3.0, 0.0, 3.0]
    assert parse_alphas("2") == [2.0]
    assert parse_alphas([1, -1]) == [1.0, -1.0]
    for text, message in [("-4:4", "start:stop:count"), ("a:4:9", "whole number"), ("-4:4:1", "at least 2"),
                          ("1,x", "cannot read"), ("", "no edit strengths"), ("nan", "finite")]:
        with pytest.raises(ValueError, match=message):
            parse_alphas(text)


def test_parse_layers_reads_ranges_and_checks_the_generator():
    assert parse_layers("0-3", 6) == [0, 1, 2, 3]
    assert parse_layers("4,0-1", 6) == [0, 1, 4]
    assert parse_layers("all", 6) is None and parse_layers(None, 6) is None
    with pytest.raises(ValueError, match=r"layers 0\.\.5"):
        parse_layers("0-7", 6)
    with pytest.raises(ValueError, match="runs backwards"):
        parse_layers("5-2", 6)
    with pytest.raises(ValueError, match="cannot read layers"):
        parse_layers("first", 6)


def test_region_specs_from_metadata_are_rebuilt_when_they_determine_the_mask():
    mouth = preset_region("mouth", 64)
    assert torch.equal(region_from_spec(mouth.spec, 64).mask, mouth.mask)
    assert torch.equal(region_from_spec("mouth", 64).mask, mouth.mask)
    union = mouth | box_region([100, 100, 40, 40], 64)
    assert torch.equal(region_from_spec(union.to_json(), 64).mask, union.mask)
    assert region_from_spec({"kind": "parts", "name": "hair", "labels": [3]}, 64) is None


def test_edit_report_writes_every_figure_and_an_index(tiny_generator_of_each_family, tmp_path):
    G = tiny_generator_of_each_family
    region = box_region([8, 8, 8, 8], 16, reference_size=16)
    directions = random_directions(G.w_dim, 3, region=region.spec)
    out = edit_report(G, directions, tmp_path / "edits", seeds="1-2", alphas="-2:2:3", index=[0, 2], **FAST)
    for seed in (1, 2):
        for i in (0, 2):
            for suffix in ("strip.png", "sweep.png", "sweep.gif", "sweep.mp4", "locality.png"):
                assert (out / f"seed{seed}" / f"d{i}_{suffix}").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["files"]) == 20
    assert manifest["run_params"]["region"] == "box"
    assert all((out / link).is_file() for link in index_links(out))


def test_edit_report_skips_locality_without_a_region_and_refuses_to_clobber(tiny_generator, tmp_path):
    G = tiny_generator
    with pytest.raises(ValueError, match="region units need a region.*--units alpha"):
        edit_report(G, random_directions(G.w_dim, 1), tmp_path / "edits", seeds=[0], video=False, **FAST)
    out = edit_report(G, random_directions(G.w_dim, 1), tmp_path / "edits", seeds=[0], video=False, units="alpha",
                      **FAST)
    names = sorted(p.name for p in (out / "seed0").iterdir())
    assert names == ["d0_strip.png", "d0_sweep.gif", "d0_sweep.png"]
    assert "no locality views" in json.loads((out / "manifest.json").read_text())["run_params"]["notes"][0]
    with pytest.raises(FileExistsError, match="--overwrite"):
        edit_report(G, random_directions(G.w_dim, 1), out, seeds=[0], units="alpha", **FAST)


def test_edit_report_names_both_dimensions_of_mismatched_directions(tiny_generator, tmp_path):
    G = tiny_generator
    with pytest.raises(ValueError, match=f"dimension {G.w_dim + 8}.*dimension {G.w_dim}"):
        edit_report(G, random_directions(G.w_dim + 8, 2), tmp_path / "edits", seeds=[0], **FAST)
    with pytest.raises(ValueError, match=r"out of range: there are 2 directions \(0\.\.1\)"):
        edit_report(G, random_directions(G.w_dim, 2), tmp_path / "edits", seeds=[0], index=5, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_compare_report_saves_directions_grid_strips_and_locality(tiny_generator, tmp_path):
    G = tiny_generator
    calls = []

    def discover(method, **options):
        calls.append((method, options))
        return random_directions(G.w_dim, 2, seed=len(calls), method=method)

    region = box_region([8, 8, 8, 8], 16, reference_size=16)
    out = compare_report(G, 3, region, "sefa,ot_resefa", tmp_path / "compare", discover, num_directions=2,
                         alphas="-2,2", method_options={"ot_resefa": {"lam": 2.0}}, display_size=32, progress=False)
    assert calls == [("sefa", {}), ("ot_resefa", {"lam": 2.0})]
    for name in ("sefa", "ot_resefa"):
        assert (out / "directions" / f"{name}.npy").is_file()
        for k in (0, 1):
            assert (out / "strips" / f"{name}_d{k}.png").is_file()
            assert (out / "locality" / f"{name}_d{k}.png").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    grid = next(entry for entry in manifest["files"] if entry["path"] == "comparison.png")
    assert "signs are each method's own" in grid["caption"].lower()
    scales = {entry["params"]["heat_scale"] for entry in manifest["files"] if entry["section"] == "locality"}
    assert len(scales) == 1  # one heat scale for every method
    assert all((out / link).is_file() for link in index_links(out))


def test_compare_methods_discovers_on_a_stylegan3(tiny_stylegan3, tmp_path):
    G = tiny_stylegan3
    region = box_region([8, 8, 8, 8], 16, reference_size=16)
    out = compare_methods(G, 3, region, "resefa,sefa", tmp_path / "compare", size=16, layers=[1, 2, 3],
                          cache=False, progress=False, num_directions=2, alphas="-2,2", display_size=32)
    for name in ("resefa", "sefa"):
        vectors = np.load(out / "directions" / f"{name}.npy")
        assert vectors.shape == (2, G.w_dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        metadata = json.loads((out / "directions" / f"{name}.json").read_text())["metadata"]
        assert metadata["method"] == name and metadata["jacobian_size"] == [16, 16, G.w_dim]
    assert metadata["info"]["layers"] == G.synthesis.layer_names[:-1]  # SeFa: the modulated convolutions
    assert all((out / link).is_file() for link in index_links(out))


def test_compare_report_names_a_method_with_mismatched_directions(tiny_generator, tmp_path):
    G = tiny_generator
    with pytest.raises(ValueError, match=f"sefa's directions have dimension {G.w_dim + 1}.*w_dim\\) has dimension {G.w_dim}"):
        compare_report(G, 0, box_region([8, 8, 8, 8], 16, reference_size=16), ["sefa"], tmp_path / "compare",
                       lambda method: torch.ones(1, G.w_dim + 1), progress=False)
    assert list(tmp_path.iterdir()) == []
