"""The project's own checkpoint format: one safetensors file whose header carries the JSON config.

The weights are plain tensors (safetensors never executes code); the header's ``__metadata__``
holds ``format``, ``format_version``, the generator family (``generator``: ``"stylegan2"`` or
``"stylegan3"``; files written before StyleGAN3 support lack it and are StyleGAN2), the constructor
kwargs (``init_kwargs``) and free-form ``metadata`` (training command, images seen, ...), all as
strings, so one file is the whole model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from otresefa.checkpoints.errors import CheckpointError
from otresefa.io import read_safetensors_header
from otresefa.models import GENERATOR_CLASSES, GeneratorBase
from otresefa.models.base import GENERATOR_FORMAT as FORMAT
from otresefa.models.base import GENERATOR_FORMAT_VERSION as FORMAT_VERSION

FORMAT_NAME = "otresefa-safetensors"  # what G.checkpoint_format says of these files


def read_header(path: str | Path) -> dict:
    """The ``__metadata__`` of a safetensors file, or a CheckpointError naming the file."""
    try:
        return read_safetensors_header(path)
    except ValueError as error:
        raise CheckpointError(str(error)) from None


def load_native(path: str | Path, device: str | torch.device | None = None) -> GeneratorBase:
    """Read a generator written by :meth:`GeneratorBase.save` (StyleGAN2 or StyleGAN3)."""
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
