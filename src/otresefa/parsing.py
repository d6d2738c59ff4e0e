"""What users type, read into values: seeds, strengths, layers, indices, devices, boxes.

The command line checks every argument with these functions before it loads a model, so a typo is
reported at once (this module imports no PyTorch); the browser app and the library functions read
the same texts through them.  Each raises ``ValueError`` with one line that names the argument and
says how to write it.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

__all__ = ["check_layer_indices", "parse_alphas", "parse_box", "parse_device", "parse_indices", "parse_layers",
           "parse_seeds", "torch_device"]

SEED_LIMIT = 2**32
"""NVIDIA's seeds are uint32."""


def _range_parts(text: str, noun: str, option: str, example: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]`` (whole numbers >= 0 and ascending ranges)."""
    values: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"cannot read {noun} from {text!r} ({option}); write e.g. {example!r} "
                             "(whole numbers >= 0)")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise ValueError(f"the range {part!r} ({option}) runs backwards; write {last}-{first}")
        values.extend(range(first, last + 1))
    if not values:
        raise ValueError(f"no {noun} in {text!r} ({option}); write e.g. {example!r}")
    return values


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``; seeds are whole numbers in ``[0, 2**32)``."""
    seeds = _range_parts(text, "seeds", option, "0-3,7")
    if max(seeds) >= SEED_LIMIT:
        raise ValueError(f"seeds ({option}) are below 2**32 (NVIDIA's convention), got {max(seeds)}")
    return seeds


def parse_indices(text: str | int | Sequence[int], option: str = "--index") -> list[int]:
    """Direction (or image) indices: ``"0,2"`` or ``"0-2"`` -> ``[0, 2]`` / ``[0, 1, 2]``."""
    if isinstance(text, int):
        return [text]
    if not isinstance(text, str):
        return [int(i) for i in text]
    return _range_parts(text, "indices", option, "0,2")


def parse_layers(value: str | Sequence[int] | None, num_ws: int | None = None) -> list[int] | None:
    """Layers (ws indices) from ``"0-7"``, ``"0,2,4"``, ``"0-3,6"`` or a sequence, checked against
    ``num_ws`` when given; ``None``, ``""`` or ``"all"`` -> ``None`` (all layers)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "all")):
        return None
    layers = _range_parts(value, "layers", "--layers", "0-7") if isinstance(value, str) else [int(v) for v in value]
    if num_ws is not None:
        check_layer_indices(layers, num_ws)
    elif not layers:
        raise ValueError("the layer selection is empty")
    return sorted(set(layers))


def check_layer_indices(layers: Sequence[int], num_ws: int) -> None:
    """Raise a clear error when a layer (ws index) selection is empty or out of ``[0, num_ws)``."""
    layers = list(layers)
    if not layers:
        raise ValueError("the layer selection is empty")
    bad = [i for i in layers if not 0 <= int(i) < num_ws]
    if bad:
        raise ValueError(f"layer indices {bad} are out of range: this generator has layers 0..{num_ws - 1}")


def parse_alphas(value: str | Sequence[float]) -> list[float]:
    """Edit strengths from ``"start:stop:count"`` (inclusive, evenly spaced: ``"-4:4:9"``), a list
    ``"-3,0,3"``, one number, or a sequence of numbers."""
    if isinstance(value, str):
        text = value.replace(" ", "")
        if ":" in text:
            values = _alpha_range(text)
        else:
            try:
                values = [float(part) for part in text.split(",") if part]
            except ValueError:
                raise ValueError(f"cannot read edit strengths from {value!r} (--alphas); write a list like '-3,0,3' "
                                 "or a range start:stop:count like '-4:4:9'") from None
    else:
        values = [float(v) for v in value]
    if not values:
        raise ValueError(f"no edit strengths in {value!r} (--alphas)")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"edit strengths (--alphas) must be finite numbers, got {value!r}")
    # rounding away linspace's float noise keeps "0" a true zero (the original image)
    return [round(v, 10) + 0.0 for v in values]


def _alpha_range(text: str) -> list[float]:
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"cannot read a strength range from {text!r} (--alphas); write start:stop:count, e.g. '-4:4:9'")
    try:
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"cannot read a strength range from {text!r} (--alphas); start and stop are numbers and "
                         "count a whole number, e.g. '-4:4:9'") from None
    if count < 2:
        raise ValueError(f"a strength range needs a count of at least 2, got {count} in {text!r} (--alphas)")
    step = (stop - start) / (count - 1)
    return [start + i * step for i in range(count - 1)] + [stop]


def parse_box(text: str) -> list[float]:
    """``"184,127,30,70"`` (optionally prefixed ``box:``) -> ``[184, 127, 30, 70]``: ReSeFa's
    ``center_row,center_col,height,width`` in 256-px coordinates."""
    body = text[4:] if text.startswith("box:") else text
    try:
        values = [float(v) for v in body.replace(" ", "").split(",")]
    except ValueError:
        raise ValueError(f"cannot read a box from {text!r}; write center_row,center_col,height,width "
                         "(in 256-px coordinates)") from None
    if len(values) != 4:
        raise ValueError(f"a box has 4 numbers (center_row,center_col,height,width), got {text!r}")
    return values


def parse_device(text: str | None) -> str | None:
    """A device name as PyTorch spells it (``cpu``, ``cuda``, ``cuda:1``, ``mps``) or None (the default).

    Only the spelling is checked here; whether the machine has that device is checked when the
    model is loaded (:func:`otresefa.checkpoints.load_generator`).
    """
    if text is None:
        return None
    name = str(text).strip().lower()
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise ValueError(f"unknown device {text!r} (--device); use cpu, cuda, cuda:N or mps")
    return name


def torch_device(text: str | None):
    """The ``torch.device`` of a device name, checked against this machine.

    Raises
    ------
    ValueError
        For a misspelt name, or a CUDA device this PyTorch build or machine does not have.
    """
    import torch

    name = parse_device(text)
    if name is None:
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "this PyTorch build is CPU-only" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"device {text!r} was asked for, but CUDA is not available ({build}, torch "
                             f"{torch.__version__}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {text!r} was asked for, but MPS is not available on this machine")
    return device
