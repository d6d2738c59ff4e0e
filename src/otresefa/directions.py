"""Editing directions in W: a ranked set of unit vectors with their provenance, and their files.

A :class:`Directions` is stored as two files side by side: ``NAME.npy`` (``[k, w_dim]`` float32,
one unit direction per row) and ``NAME.json`` (format tag, scores, metadata). Loading also accepts
bare ``.npy`` files from other tools, e.g. ReSeFa's published single ``[512]`` direction vectors.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from otresefa._version import __version__
from otresefa.editing import LinearEdit
from otresefa.io import atomic_path, json_ready

__all__ = ["Directions", "FORMAT", "FORMAT_VERSION"]

FORMAT = "otresefa-directions"
FORMAT_VERSION = 1


def _check_vectors(vectors: torch.Tensor, source: str) -> torch.Tensor:
    """``vectors`` [k, d] as float32 unit rows; ``ValueError`` naming ``source`` if unusable."""
    if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise ValueError(f"{source}: expected directions of shape [k, w_dim] or [w_dim], got "
                         f"{tuple(vectors.shape)}")
    vectors = vectors.detach().to(device="cpu", dtype=torch.float64)
    bad = (~torch.isfinite(vectors)).any(dim=1)  # [k]
    if bool(bad.any()):
        raise ValueError(f"{source}: direction rows {bad.nonzero().flatten().tolist()} contain NaN or inf")
    norms = vectors.norm(dim=1, keepdim=True)  # [k, 1]
    zero = norms.flatten() == 0
    if bool(zero.any()):
        raise ValueError(f"{source}: direction rows {zero.nonzero().flatten().tolist()} are zero vectors")
    return (vectors / norms).to(torch.float32).contiguous()


DIRECTIONS_NAME = "directions"
"""The file name ``otresefa discover`` gives its directions inside its output folder."""


def _file_pair(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(NAME.npy, NAME.json)`` for ``NAME``, ``NAME.npy`` or ``NAME.json``."""
    path = Path(path)
    if path.suffix in (".npy", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".npy"), path.with_name(path.name + ".json")


def _files_to_read(path: str | os.PathLike) -> tuple[Path, Path]:
    """The pair to load for what a user named: a ``.npy`` / ``.json`` file, their common stem, or a
    folder written by ``otresefa discover`` (its ``directions.npy``)."""
    path = Path(path)
    if path.is_dir():
        if not (path / f"{DIRECTIONS_NAME}.npy").is_file():
            raise FileNotFoundError(f"{path} is a folder without a {DIRECTIONS_NAME}.npy; give a directions file "
                                    "(.npy) or the output folder of otresefa discover")
        path = path / DIRECTIONS_NAME
    elif path.suffix and path.suffix not in (".npy", ".json"):
        raise ValueError(f"{path} is not a directions file: expected a .npy file (with its .json sidecar) or "
                         "the output folder of otresefa discover")
    npy_path, json_path = _file_pair(path)
    if not npy_path.is_file():
        raise FileNotFoundError(f"directions file not found: {npy_path}")
    return npy_path, json_path


@dataclass
class Directions(LinearEdit):
    """Ranked unit editing directions in W: a :class:`~otresefa.editing.LinearEdit` with provenance.

    ``vectors`` [k, w_dim] float32 unit rows (normalised on construction), ``scores`` [k] (the
    discovering method's ranking score), ``metadata``: method, options, region, checkpoint id,
    latent, seed, library version, ... (JSON-serialisable).
    """

    vectors: torch.Tensor  # [k, w_dim] float32
    scores: torch.Tensor  # [k]
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        vectors = torch.as_tensor(self.vectors)
        if vectors.ndim == 1:
            vectors = vectors[None]  # a single direction [w_dim] -> [1, w_dim]
        self.vectors = _check_vectors(vectors, "Directions")
        self.scores = torch.as_tensor(self.scores, dtype=torch.float64).reshape(-1).clone()
        if self.scores.shape[0] != self.vectors.shape[0]:
            raise ValueError(f"{self.vectors.shape[0]} directions but {self.scores.shape[0]} scores")
        self.metadata = dict(self.metadata)

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.vectors[index]  # [w_dim]

    @property
    def labels(self) -> list[str]:
        method = self.metadata.get("method")
        return [f"{method} #{i}" if method else f"direction {i}" for i in range(len(self))]

    def select(self, index: int | Sequence[int]) -> "Directions":
        """The directions ``index`` (one or several), with their scores and the same provenance."""
        indices = [index] if isinstance(index, int) else list(index)
        return Directions(self.vectors[indices], self.scores[indices], {**self.metadata, "selected": indices})

    @classmethod
    def from_result(cls, result, **metadata: Any) -> "Directions":
        """From a :class:`~otresefa.methods.MethodResult`; its ``info`` goes under ``metadata["info"]``."""
        return cls(result.vectors, result.scores, {**metadata, "info": result.info})

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> tuple[Path, Path]:
        """Write ``path.npy`` ([k, w_dim] float32) and the ``path.json`` sidecar, each atomically.

        Refuses (``FileExistsError``) to replace an existing file unless ``overwrite=True``.
        """
        npy_path, json_path = _file_pair(path)
        if not overwrite:
            existing = [str(p) for p in (npy_path, json_path) if p.exists()]
            if existing:
                raise FileExistsError(f"{', '.join(existing)} already exist(s); pass overwrite=True")
        metadata = {"library_version": __version__, **self.metadata}
        sidecar = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "num_directions": len(self),
            "w_dim": self.w_dim,
            "scores": [None if math.isnan(s) else s for s in self.scores.tolist()],
            "metadata": metadata,
        }
        text = json.dumps(json_ready(sidecar), indent=2, allow_nan=False)  # before writing
        npy_path.parent.mkdir(parents=True, exist_ok=True)
        array = self.vectors.numpy().astype(np.float32)
        with atomic_path(npy_path) as temporary:
            np.save(temporary, array, allow_pickle=False)
        with atomic_path(json_path) as temporary:
            temporary.write_text(text, encoding="utf-8")
        return npy_path, json_path

    @classmethod
    def load(cls, path: str | os.PathLike, w_dim: int | None = None) -> "Directions":
        """Read ``path.npy`` and, when present, its ``path.json`` sidecar.

        ``path`` may name the ``.npy`` file, the ``.json`` sidecar, their common stem, or the output
        folder of ``otresefa discover`` (its ``directions.npy``).  Accepts this library's files, ReSeFa's published single-direction files (a ``[w_dim]``
        vector: ``k = 1``, ``metadata["source"] = "resefa-file"``) and bare ``[k, w_dim]`` arrays.
        Without a sidecar the scores are unknown (NaN). Rows are normalised to unit length.
        Raises ``ValueError`` for a dimension other than ``w_dim``, NaN/inf or zero rows, or a
        pickled object array (never unpickled).
        """
        npy_path, json_path = _files_to_read(path)
        try:
            array = np.load(npy_path, allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"direction file {npy_path} holds a pickled object array, which is "
                             f"refused (allow_pickle=False): {error}") from None
        if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number) \
                or np.iscomplexobj(array):
            raise ValueError(f"direction file {npy_path} does not hold a real numeric array")
        if array.ndim not in (1, 2):
            raise ValueError(f"direction file {npy_path} has shape {array.shape}; expected "
                             "[w_dim] or [k, w_dim]")
        file_dim = array.shape[-1]
        if w_dim is not None and file_dim != w_dim:
            raise ValueError(f"direction file {npy_path} has dimension {file_dim}, the model's "
                             f"w_dim is {w_dim}")
        vectors = _check_vectors(torch.from_numpy(np.atleast_2d(array).astype(np.float64)),
                                 f"direction file {npy_path}")
        count = vectors.shape[0]
        if json_path.exists():
            sidecar = json.loads(json_path.read_text(encoding="utf-8"))
            if sidecar.get("format") != FORMAT:
                raise ValueError(f"{json_path} is not an {FORMAT} sidecar")
            scores = [math.nan if s is None else s for s in sidecar.get("scores", [])]
            if len(scores) != count:
                raise ValueError(f"{json_path} lists {len(scores)} scores for {count} directions")
            metadata = sidecar.get("metadata", {})
        else:
            scores = [math.nan] * count
            metadata = {"source": "resefa-file" if array.ndim == 1 else "npy-file"}
        metadata["loaded_from"] = str(npy_path)
        return cls(vectors, torch.tensor(scores, dtype=torch.float64), metadata)
