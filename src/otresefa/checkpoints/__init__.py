"""Loading generators from the checkpoint formats users bring, safely.

``load_generator(source)`` accepts a built-in model name (``"synthfaces"``) or a path, and tells the
format from the file's content, not its name:

- the project's own safetensors file (``G.save(path)``);
- NVIDIA stylegan2-ada-pytorch / stylegan3 network pickles (restricted unpickler, no code runs);
- rosinality stylegan2-pytorch ``.pt`` files (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import torch

from otresefa.checkpoints.errors import CheckpointError, UnsafeCheckpointError, UnsupportedCheckpointError
from otresefa.checkpoints.native import load_native, save_generator
from otresefa.checkpoints.nvidia import generator_from_pickle, read_network_pickle
from otresefa.checkpoints.rosinality import generator_from_rosinality, read_rosinality
from otresefa.models import Generator

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
BUILTIN_MODELS = {"synthfaces": DATA_DIR / "synthfaces_generator.safetensors"}

__all__ = [
    "BUILTIN_MODELS",
    "CheckpointError",
    "UnsafeCheckpointError",
    "UnsupportedCheckpointError",
    "detect_format",
    "load_generator",
    "save_generator",
]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def detect_format(path: str | Path) -> str:
    """``"native"``, ``"nvidia-pickle"`` or ``"torch"`` from the first bytes of the file."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(16)
    if len(head) >= 9 and head[8:9] == b"{":
        return "native"  # safetensors: 8-byte little-endian header length, then a JSON header
    if zipfile.is_zipfile(path):
        return "torch"
    if head[:1] == b"\x80":
        return "nvidia-pickle"
    raise CheckpointError(
        f"{path} is not a generator checkpoint this library reads (expected an otresefa .safetensors file, "
        "an NVIDIA network pickle or a rosinality .pt file)"
    )


def load_generator(source: str | Path = "synthfaces", device: str | torch.device | None = None, network: str = "G_ema") -> Generator:
    """Load a StyleGAN2 generator, in eval mode, on ``device`` (default: CPU).

    Args:
        source: a built-in model name (``"synthfaces"``) or a checkpoint path.
        network: which network of an NVIDIA pickle to take (``"G_ema"`` or ``"G"``).
    Raises:
        FileNotFoundError, CheckpointError (not a checkpoint), UnsafeCheckpointError (the pickle
        asks for code), UnsupportedCheckpointError (StyleGAN3, TensorFlow pickles, ...).
    """
    if isinstance(source, str) and source in BUILTIN_MODELS:
        path = BUILTIN_MODELS[source]
        if not path.is_file():
            raise FileNotFoundError(f"the built-in model '{source}' is missing from the installation ({path})")
    else:
        path = Path(source).expanduser()
        if not path.exists():
            hint = f" (built-in models: {', '.join(BUILTIN_MODELS)})" if not path.suffix else ""
            raise FileNotFoundError(f"checkpoint not found: {path}{hint}")
        if path.is_dir():
            raise CheckpointError(f"{path} is a folder; give the checkpoint file inside it")
    fmt = detect_format(path)
    if fmt == "native":
        G = load_native(path)
    elif fmt == "nvidia-pickle":
        with open(path, "rb") as handle:
            data = read_network_pickle(io.BufferedReader(handle), source=str(path))
        if data == _LEGACY_TORCH_MAGIC:  # torch.save's pre-1.6 format also starts as a pickle
            G = generator_from_rosinality(read_rosinality(path), source=str(path))
        else:
            G = generator_from_pickle(data, source=str(path), key=network)
    else:
        G = generator_from_rosinality(read_rosinality(path), source=str(path))
    G.checkpoint_id = f"{path.stem}-{_file_digest(path)}"
    G.checkpoint_source = str(source)
    G.eval().requires_grad_(False)
    return G.to(device) if device is not None else G
