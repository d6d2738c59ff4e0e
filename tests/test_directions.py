"""Directions: container invariants and the .npy + .json file format, including foreign files."""

import json
import math

import numpy as np
import pytest
import torch

import otresefa
from otresefa.directions import FORMAT, Directions
from otresefa.methods.base import MethodResult


def make_directions(count=3, dim=8, seed=0):
    vectors = torch.randn(count, dim, generator=torch.Generator().manual_seed(seed))
    return Directions(vectors, torch.arange(count, 0, -1, dtype=torch.float64),
                      {"method": "resefa", "options": {"tau": None}, "region": "mouth", "seed": seed})


def test_container_normalises_and_indexes():
    directions = make_directions()
    assert len(directions) == 3 and directions.w_dim == 8
    assert directions.vectors.dtype == torch.float32
    torch.testing.assert_close(directions.vectors.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(directions[1], directions.vectors[1])
    single = Directions(torch.ones(4), [1.0], {})
    assert single.vectors.shape == (1, 4)
    with pytest.raises(ValueError, match="3 directions but 2 scores"):
        Directions(torch.ones(3, 4), [1.0, 2.0], {})
    with pytest.raises(ValueError, match=r"rows \[1\] are zero vectors"):
        Directions(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), [1.0, 0.0], {})


def test_from_method_result():
    result = MethodResult(torch.eye(2, 5), torch.tensor([2.0, 1.0], dtype=torch.float64), {"tau": 0.0})
    directions = Directions.from_result(result, method="resefa", region="nose")
    assert directions.metadata == {"method": "resefa", "region": "nose", "info": {"tau": 0.0}}


def test_save_load_round_trip(tmp_path):
    directions = make_directions()
    npy_path, json_path = directions.save(tmp_path / "mouth_resefa")
    assert npy_path.name == "mouth_resefa.npy" and json_path.name == "mouth_resefa.json"
    array = np.load(npy_path, allow_pickle=False)
    assert array.dtype == np.float32 and array.shape == (3, 8)
    sidecar = json.loads(json_path.read_text())
    assert sidecar["format"] == FORMAT and sidecar["scores"] == [3.0, 2.0, 1.0]
    assert sidecar["metadata"]["library_version"] == otresefa.__version__
    loaded = Directions.load(tmp_path / "mouth_resefa.npy", w_dim=8)
    torch.testing.assert_close(loaded.vectors, directions.vectors)
    torch.testing.assert_close(loaded.scores, directions.scores)
    assert loaded.metadata["region"] == "mouth" and loaded.metadata["options"] == {"tau": None}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mouth_resefa.json", "mouth_resefa.npy"]


def test_save_refuses_to_overwrite(tmp_path):
    directions = make_directions()
    directions.save(tmp_path / "d")
    with pytest.raises(FileExistsError, match="already exist.*overwrite=True"):
        directions.save(tmp_path / "d.npy")
    replacement = make_directions(seed=1)
    replacement.save(tmp_path / "d", overwrite=True)
    torch.testing.assert_close(Directions.load(tmp_path / "d").vectors, replacement.vectors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json", "d.npy"]  # no temp files left


def test_save_rejects_unserialisable_metadata_before_writing(tmp_path):
    directions = Directions(torch.ones(1, 4), [1.0], {"generator": object()})
    with pytest.raises(TypeError, match="object cannot be recorded"):
        directions.save(tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_load_resefa_published_single_vector(tmp_path):
    vector = np.random.default_rng(0).standard_normal(512).astype(np.float32)
    np.save(tmp_path / "mouth.npy", vector)
    loaded = Directions.load(tmp_path / "mouth.npy", w_dim=512)
    assert len(loaded) == 1 and loaded.metadata["source"] == "resefa-file"
    torch.testing.assert_close(loaded[0], torch.from_numpy(vector / np.linalg.norm(vector)))
    assert math.isnan(float(loaded.scores[0]))


def test_load_bare_matrix_without_sidecar(tmp_path):
    np.save(tmp_path / "many.npy", np.eye(4, 16) * 3.0)
    loaded = Directions.load(tmp_path / "many")
    assert len(loaded) == 4 and loaded.w_dim == 16 and loaded.metadata["source"] == "npy-file"
    torch.testing.assert_close(loaded.vectors, torch.eye(4, 16))


def test_load_wrong_dimension(tmp_path):
    np.save(tmp_path / "small.npy", np.ones(256, dtype=np.float32))
    with pytest.raises(ValueError, match=r"direction file .*small\.npy has dimension 256, the model's w_dim is 512"):
        Directions.load(tmp_path / "small.npy", w_dim=512)


def test_load_rejects_nan_and_zero_rows(tmp_path):
    bad = np.ones((3, 8), dtype=np.float32)
    bad[1, 4] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match=r"rows \[1\] contain NaN or inf"):
        Directions.load(tmp_path / "nan.npy")
    zero = np.ones((2, 8), dtype=np.float32)
    zero[0] = 0
    np.save(tmp_path / "zero.npy", zero)
    with pytest.raises(ValueError, match=r"rows \[0\] are zero vectors"):
        Directions.load(tmp_path / "zero.npy")


def test_load_refuses_pickled_object_arrays(tmp_path):
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickled object array"):
        Directions.load(tmp_path / "evil.npy")


def test_load_rejects_other_shapes_and_types(tmp_path):
    np.save(tmp_path / "cube.npy", np.ones((2, 3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"has shape \(2, 3, 4\); expected \[w_dim\] or \[k, w_dim\]"):
        Directions.load(tmp_path / "cube.npy")
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    with pytest.raises(ValueError, match="does not hold a real numeric array"):
        Directions.load(tmp_path / "text.npy")


def test_load_checks_sidecar_consistency(tmp_path):
    make_directions().save(tmp_path / "d")
    sidecar = json.loads((tmp_path / "d.json").read_text())
    sidecar["scores"] = [1.0]
    (tmp_path / "d.json").write_text(json.dumps(sidecar))
    with pytest.raises(ValueError, match="lists 1 scores for 3 directions"):
        Directions.load(tmp_path / "d")
