"""The project's own checkpoint format: one safetensors file whose header carries the JSON config.

The weights are plain tensors (safetensors never executes code); the header's ``__metadata__``
holds ``format``, ``format_version``, the generator family (``generator``: ``"stylegan2"`` or
``"stylegan3"``; files written before StyleGAN3 support lack it and are StyleGAN2), the constructor
kwargs (``init_kwargs``) and free-form ``metadata`` (training command, images seen, ...), all as
strings, so one file is the whole model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from otresefa.checkpoints.errors import CheckpointError
from otresefa.models import GENERATOR_CLASSES, GeneratorBase

FORMAT = "otresefa-generator"
FORMAT_VERSION = 1
FORMAT_NAME = "otresefa-safetensors"  # what G.checkpoint_format says of these files


def save_generator(G: GeneratorBase, path: str | Path, metadata: dict | None = None, overwrite: bool = False) -> Path:
    """Write ``G`` to ``path`` (``.safetensors``), atomically; refuse to replace a file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    return save_module(G, path, FORMAT, FORMAT_VERSION, metadata, extra_header={"generator": G.family})


def save_module(module: torch.nn.Module, path: str | Path, format_name: str, format_version: int,
                metadata: dict | None = None, extra_header: dict[str, str] | None = None) -> Path:
    """Write a module that has ``init_kwargs`` to ``path`` atomically: its state dict as safetensors,
    ``format``, ``format_version``, ``init_kwargs`` and ``metadata`` as JSON strings in the header
    (plus the strings of ``extra_header``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "format": format_name,
        "format_version": str(format_version),
        "init_kwargs": json.dumps(module.init_kwargs),
        "metadata": json.dumps(metadata or {}),
        **(extra_header or {}),
    }
    tensors = {name: t.detach().cpu().contiguous() for name, t in module.state_dict().items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=header)
    os.replace(tmp, path)
    return path


def read_header(path: str | Path) -> dict:
    """The ``__metadata__`` of a safetensors file, or a CheckpointError naming the file."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error})") from None


def load_native(path: str | Path, device: str | torch.device | None = None) -> GeneratorBase:
    """Read a generator written by :func:`save_generator` (StyleGAN2 or StyleGAN3)."""
    header = read_header(path)
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not an otresefa generator (no '{FORMAT}' header)")
    if int(header.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer otresefa (format version {header['format_version']})")
    family = header.get("generator", "stylegan2")
    if family not in GENERATOR_CLASSES:
        raise CheckpointError(f"{path} holds a '{family}' generator; this otresefa reads {', '.join(GENERATOR_CLASSES)}")
    try:
        G = GENERATOR_CLASSES[family].for_loading(**json.loads(header["init_kwargs"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: its config does not build a {family} generator ({error})") from None
    state = load_file(str(path))
    missing, unexpected = G.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: tensors do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})")
    G.training_metadata = json.loads(header.get("metadata", "{}"))
    G.checkpoint_format = FORMAT_NAME
    return G.to(device) if device is not None else G
