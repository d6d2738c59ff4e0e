"""Files: atomic writes, JSON, fingerprints, safetensors headers, and resumable-run logs.

Everything the library writes goes through :func:`atomic_path`: a temporary file beside the target,
renamed over it only when writing succeeded, so an interrupted or failed write never leaves a
half-written file nor damages an earlier one.  Written files get the permissions a plain ``open``
would give them (``tempfile.mkstemp``'s 0600 does not leak into the user's outputs).

Values recorded as parameters become JSON through :func:`json_ready` (tensors, arrays, numpy
scalars, paths and tuples to JSON types; NaN and inf to ``null``).  Weights, files and settings are
identified by short SHA-256 fingerprints.  The two training loops (the GAN's and the perception
networks') share :func:`batch_seed` and the JSON-lines log helpers, which make their runs resume
exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file

__all__ = [
    "FINGERPRINT_LENGTH", "append_jsonl", "atomic_path", "batch_seed", "dataclass_from_dict", "file_fingerprint",
    "file_mode", "json_ready", "read_safetensors_header", "save_module", "save_torch", "settings_fingerprint",
    "tensors_fingerprint", "truncate_jsonl", "write_json", "write_safetensors", "write_text",
]

FINGERPRINT_LENGTH = 16
"""Hex digits kept of a SHA-256 digest: short enough for file names, long enough never to collide here."""

T = TypeVar("T")


# --- atomic writes ----------------------------------------------------------------------------------

def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: ``0o666`` less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` and rename it over ``path`` when the block succeeds.

    The temporary file has ``path``'s suffix, so writers that choose a format by suffix pick the
    right one.  On an error it is removed and an earlier ``path`` is left as it was.

    Parameters
    ----------
    path : str or PathLike
        The file to write; its folder is created when missing.

    Yields
    ------
    Path
        Where to write the content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    try:
        yield Path(temp_name)
        os.chmod(temp_name, file_mode())
        os.replace(temp_name, path)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def write_json(path: str | os.PathLike, value: Any, indent: int | None = 2) -> Path:
    """Write ``json_ready(value)`` as JSON to ``path`` atomically (NaN and inf become ``null``)."""
    return write_text(path, json.dumps(json_ready(value), indent=indent, allow_nan=False))


def save_torch(value: Any, path: str | os.PathLike) -> Path:
    """``torch.save(value)`` to ``path`` atomically (training checkpoints, feature caches)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        torch.save(value, temporary)
    return path


# --- JSON -------------------------------------------------------------------------------------------

def json_ready(value: Any) -> Any:
    """``value`` with JSON types only.

    Tensors and arrays become (nested) lists, numpy scalars numbers, paths strings, tuples lists,
    mapping keys strings, and non-finite floats ``None`` (JSON has no NaN: an undefined number is
    recorded as ``null``).

    Raises
    ------
    TypeError
        For a value of another type (an object cannot be recorded as a parameter).
    """
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"a {type(value).__name__} cannot be recorded as a parameter; convert it to text or numbers")


def dataclass_from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """``cls(**data)`` for a dataclass, refusing field names it does not have.

    Raises
    ------
    ValueError
        Naming the unknown fields and the known ones.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {', '.join(sorted(known))}")
    return cls(**data)


# --- fingerprints -----------------------------------------------------------------------------------

def tensors_fingerprint(tensors: Mapping[str, torch.Tensor]) -> str:
    """A short SHA-256 of named tensors (a state dict): names and bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


def file_fingerprint(path: str | os.PathLike) -> str:
    """A short SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


def settings_fingerprint(settings: Any, length: int = 20) -> str:
    """A short SHA-256 of ``json_ready(settings)`` with sorted keys: equal settings, equal id."""
    text = json.dumps(json_ready(settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# --- safetensors ------------------------------------------------------------------------------------

def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], header: Mapping[str, Any]) -> Path:
    """Write ``tensors`` to a safetensors file atomically; ``header`` values go to its
    ``__metadata__``, strings as they are and anything else as JSON text."""
    metadata = {key: value if isinstance(value, str) else json.dumps(json_ready(value)) for key, value in header.items()}
    plain = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    path = Path(path)
    with atomic_path(path) as temporary:
        save_file(plain, str(temporary), metadata=metadata)
    return path


def save_module(module: torch.nn.Module, path: str | os.PathLike, format_name: str, format_version: int,
                metadata: Mapping[str, Any] | None = None, extra_header: Mapping[str, str] | None = None) -> Path:
    """Write a module that has ``init_kwargs`` as one safetensors file, atomically: its state dict,
    and in the header ``format``, ``format_version``, ``init_kwargs`` and ``metadata`` (JSON), plus
    ``extra_header``.  One file is the whole network: it is rebuilt from ``init_kwargs``."""
    header = {"format": format_name, "format_version": str(format_version), "init_kwargs": module.init_kwargs,
              "metadata": dict(metadata or {}), **(extra_header or {})}
    return write_safetensors(path, module.state_dict(), header)


def read_safetensors_header(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (strings).

    Raises
    ------
    ValueError
        When the file is empty or not a readable safetensors file; the message names it.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error})") from None


# --- resumable runs ---------------------------------------------------------------------------------

def batch_seed(run_seed: int, index: int, salt: str = "data") -> int:
    """A stable 63-bit seed for minibatch ``index`` of the run seeded ``run_seed``.

    Training data are drawn from these seeds rather than from a running RNG, so a resumed run sees
    the same minibatches; ``salt`` separates independent streams (data, augmentation, ...).
    """
    digest = hashlib.blake2b(f"{salt}:{run_seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def append_jsonl(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line (a training log)."""
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(json_ready(record)) + "\n")


def truncate_jsonl(path: str | os.PathLike, keep: Callable[[dict], bool]) -> None:
    """Drop the JSON lines of ``path`` for which ``keep(record)`` is false.

    A run resumed from a checkpoint drops the log lines written after it (a crash between the two
    writes), which the resumed run writes again.
    """
    path = Path(path)
    if not path.is_file():
        return
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [line for line in lines if keep(json.loads(line))]
    if len(kept) != len(lines):
        write_text(path, "".join(line + "\n" for line in kept))
