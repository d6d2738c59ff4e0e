"""Loading generators from the checkpoint formats users bring, safely.

``load_generator(source)`` accepts a built-in model name (``"synthfaces"``) or a path, and tells the
format from the file's content, not its name:

- the project's own safetensors file (``G.save(path)``), ``"otresefa-safetensors"``;
- NVIDIA PyTorch network pickles, stylegan2-ada-pytorch and stylegan3 repository (StyleGAN2 and
  StyleGAN3 generators; restricted unpickler, no code runs), ``"nvidia-pickle (...)"``;
- TensorFlow StyleGAN2 pickles (NVlabs/stylegan2), ``"tensorflow-pickle"``, read by the same
  unpickler without TensorFlow;
- rosinality stylegan2-pytorch ``.pt`` files, ``"rosinality-pt"``, and genforce ``.pth`` files
  (ReSeFa's Hammer code, ``"hammer-pth"``; the SeFa model zoo's, ``"genforce-pth"``), both read
  with ``torch.load(weights_only=True)``.

The generator records the format it was read from as ``G.checkpoint_format``.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import torch

from otresefa.checkpoints.common import read_torch_file
from otresefa.checkpoints.errors import CheckpointError, UnsafeCheckpointError, UnsupportedCheckpointError
from otresefa.checkpoints.hammer import generator_from_hammer, hammer_models
from otresefa.checkpoints.native import load_native
from otresefa.checkpoints.nvidia import generator_from_pickle, read_network_pickle
from otresefa.checkpoints.rosinality import generator_from_rosinality, is_rosinality
from otresefa.checkpoints.tensorflow import generator_from_tensorflow, tensorflow_networks

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
]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def detect_format(path: str | Path) -> str:
    """``"native"``, ``"pickle"`` or ``"torch"`` (a zip) from the first bytes of the file."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes): the download or copy did not finish?")
    if len(head) >= 9 and head[8:9] == b"{":
        return "native"  # safetensors: 8-byte little-endian header length, then a JSON header
    if zipfile.is_zipfile(path):
        return "torch"
    if head[:1] == b"\x80":
        return "pickle"
    raise CheckpointError(
        f"{path} is not a generator checkpoint this library reads (expected an otresefa .safetensors file, "
        "an NVIDIA or TensorFlow network pickle, a rosinality .pt or a genforce/Hammer .pth file)"
    )


def _generator_from_torch_file(path: Path):
    """A ``torch.save`` file: rosinality's ``g_ema`` or genforce's ``generator_smooth``/``generator``."""
    checkpoint = read_torch_file(path)
    if is_rosinality(checkpoint):
        return generator_from_rosinality(checkpoint, source=str(path))
    if hammer_models(checkpoint) is not None:
        return generator_from_hammer(checkpoint, source=str(path))
    keys = sorted(map(str, checkpoint))[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise CheckpointError(
        f"{path} is a PyTorch file but neither a rosinality checkpoint ('g_ema') nor a genforce/Hammer one "
        f"('generator_smooth' or 'generator'); it holds {keys}"
    )


def load_generator(source: str | Path = "synthfaces", device: str | torch.device | None = None, network: str = "G_ema"):
    """Load a generator (StyleGAN2 or StyleGAN3), in eval mode, on ``device`` (default: CPU).

    Args:
        source: a built-in model name (``"synthfaces"``) or a checkpoint path.
        network: which network of an NVIDIA pickle to take (``"G_ema"`` or ``"G"``; of a
            TensorFlow pickle, ``"G_ema"`` is ``Gs``).
    Returns:
        The generator, with ``checkpoint_format`` (see the module docstring), ``checkpoint_id``
        (file stem and content hash) and ``checkpoint_source`` set.
    Raises:
        FileNotFoundError, CheckpointError (not a checkpoint, empty, ...), UnsafeCheckpointError
        (the pickle asks for code), UnsupportedCheckpointError (an architecture or layout this
        library does not implement).
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
    elif fmt == "pickle":
        with open(path, "rb") as handle:
            data = read_network_pickle(handle, source=str(path))
        if isinstance(data, int) and data == _LEGACY_TORCH_MAGIC:  # torch.save's pre-1.6 format also starts as a pickle
            G = _generator_from_torch_file(path)
        elif tensorflow_networks(data) is not None:
            G = generator_from_tensorflow(data, source=str(path), key=network)
        else:
            G = generator_from_pickle(data, source=str(path), key=network)
    else:
        G = _generator_from_torch_file(path)
    G.checkpoint_id = f"{path.stem}-{_file_digest(path)}"
    G.checkpoint_source = str(source)
    G.eval().requires_grad_(False)
    return G.to(device) if device is not None else G
