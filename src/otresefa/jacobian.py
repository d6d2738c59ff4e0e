"""Exact image Jacobians of a generator with respect to its latent, by batched forward-mode AD.

The paper's sec. 3.1.2 (as ReSeFa's public code): the image is down-sampled to ``size`` when the
generator is larger, its RGB channels are summed, and it is differentiated with respect to one ``w``
broadcast to all synthesis layers.  The result ``J [H, W, w_dim]`` has H*W rows (65,536 at 256px)
but only ``w_dim`` columns, so forward mode needs ``w_dim`` Jacobian-vector products -- one per latent
dimension, evaluated ``chunk_size`` at a time with ``torch.func.vmap`` -- where reverse mode would
need one backward pass per pixel.

:mod:`otresefa.grams` reduces a Jacobian to a region's Gram matrices.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import jvp, vmap
from tqdm.auto import tqdm

from otresefa.io import atomic_path, tensors_fingerprint
from otresefa.models import Generator, layer_mask

SPACES = ("w", "z")


def _as_latent(G: Generator, latent: torch.Tensor, space: str) -> torch.Tensor:
    """Validate a single latent vector and return it as float32 ``[dim]`` on G's device."""
    if space not in SPACES:
        raise ValueError(f"unknown latent space {space!r}; expected one of {SPACES}")
    dim = G.w_dim if space == "w" else G.z_dim
    latent = torch.as_tensor(latent, dtype=torch.float32)
    if latent.ndim == 2 and latent.shape[0] == 1:
        latent = latent[0]
    if latent.shape != (dim,):
        raise ValueError(f"a {space}-space latent of this generator has shape [{dim}], got {list(latent.shape)}")
    if not torch.isfinite(latent).all():
        raise ValueError("the latent contains NaN or inf")
    return latent.to(G.device)


def summed_image(img: torch.Tensor, size: int) -> torch.Tensor:
    """Sum RGB channels and area-down-sample to ``size`` when larger.  ``[N, C, R, R] -> [N, S, S]``."""
    x = img.sum(dim=1, keepdim=True)  # [N, 1, R, R]
    if x.shape[-1] > size:
        x = F.interpolate(x, size=(size, size), mode="area")  # [N, 1, size, size]
    return x[:, 0]


def jacobian(
    G: Generator,
    latent: torch.Tensor,
    size: int = 256,
    *,
    layers: Sequence[int] | None = None,
    space: str = "w",
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    chunk_size: int = 32,
    progress: bool = False,
    cache: bool | str | Path = False,
) -> torch.Tensor:
    """Exact Jacobian ``d image / d latent`` as ``[H, W, dim]`` float32 (H = W = min(size, R)).

    Args:
        G: the generator (its parameters are not differentiated).
        latent: ``[w_dim]`` w (``space="w"``) broadcast to the ``layers``, or ``[z_dim]`` z
            (``space="z"``, differentiated through the mapping network with ``truncation_psi``); a
            tensor or a numpy array (float32 or float64; computed in float32).
        size: the image is area-down-sampled to ``size`` x ``size`` when the generator is larger.
        layers: ws indices that receive the perturbation (ReSeFa's layer-wise manipulation); the
            other layers keep the unperturbed latent.  ``None``: all layers.
        noise_mode: ``"const"`` or ``"none"`` (random noise would make the Jacobian random).
        chunk_size: JVPs evaluated together; bounds memory to about ``chunk_size`` forward passes.
        cache: ``True`` (default cache folder) or a folder: reuse a Jacobian computed before for the
            same checkpoint, latent and options, and store new ones there.
    """
    latent = _as_latent(G, latent, space)
    if noise_mode not in ("const", "none"):
        raise ValueError(f"noise_mode must be 'const' or 'none' for a Jacobian, got {noise_mode!r}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    selected = layer_mask(layers, G.num_ws, G.device)  # [num_ws]
    cache_file = None
    if cache:
        key = jacobian_cache_key(G, latent, size, layers, space, truncation_psi, noise_mode)
        cache_file = (default_cache_dir() if cache is True else Path(cache)) / f"{key}.npy"
        if cache_file.is_file():
            return load_jacobian(cache_file)

    if space == "w":
        base_ws = latent[None, None].repeat(1, G.num_ws, 1)  # [1, num_ws, w_dim]

        def image_of(delta: torch.Tensor) -> torch.Tensor:  # [w_dim] -> [S, S]
            ws = base_ws + delta[None, None, :] * selected[None, :, None]
            return summed_image(G.synthesis(ws, noise_mode=noise_mode, force_fp32=True), size)[0]
    else:
        with torch.no_grad():
            base_ws = G.mapping(latent[None], None, truncation_psi=truncation_psi)  # [1, num_ws, w_dim]

        def image_of(delta: torch.Tensor) -> torch.Tensor:  # [z_dim] -> [S, S]
            ws = G.mapping((latent + delta)[None], None, truncation_psi=truncation_psi)
            ws = base_ws + (ws - base_ws) * selected[None, :, None]
            return summed_image(G.synthesis(ws, noise_mode=noise_mode, force_fp32=True), size)[0]

    dim = latent.shape[0]
    zero = torch.zeros(dim, device=G.device)

    def directional_derivative(tangent: torch.Tensor) -> torch.Tensor:  # [dim] -> [S, S]
        return jvp(image_of, (zero,), (tangent,))[1]

    basis = torch.eye(dim, device=G.device)  # [dim, dim]
    columns = []
    with torch.no_grad():
        for chunk in tqdm(basis.split(chunk_size), desc="Jacobian", unit="chunk", disable=not progress, leave=False):
            columns.append(vmap(directional_derivative)(chunk))  # [c, S, S]
    J = torch.cat(columns).permute(1, 2, 0).contiguous().cpu()  # [S, S, dim]
    if not torch.isfinite(J).all():
        raise FloatingPointError("the Jacobian contains NaN or inf: the generator produced non-finite values at this latent")
    if cache_file is not None:
        save_jacobian(cache_file, J)
    return J


def default_cache_dir() -> Path:
    """``$OTRESEFA_CACHE`` or ``$XDG_CACHE_HOME/otresefa`` (``~/.cache/otresefa``), ``/jacobians``."""
    root = os.environ.get("OTRESEFA_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "otresefa"
    return Path(root) / "jacobians"


def generator_fingerprint(G: Generator) -> str:
    """A short id of the generator's weights: its checkpoint's hash when it was loaded from one."""
    checkpoint_id = getattr(G, "checkpoint_id", None)
    if checkpoint_id:
        return str(checkpoint_id)
    return tensors_fingerprint(G.state_dict())


def jacobian_cache_key(G, latent, size, layers, space, truncation_psi, noise_mode) -> str:
    digest = hashlib.sha256()
    digest.update(generator_fingerprint(G).encode())
    digest.update(latent.detach().cpu().numpy().astype(np.float32).tobytes())
    digest.update(repr((size, None if layers is None else sorted(int(i) for i in layers), space,
                        float(truncation_psi), noise_mode)).encode())
    return digest.hexdigest()[:24]


def save_jacobian(path: str | Path, J: torch.Tensor) -> Path:
    """Write ``J [H, W, dim]`` as float32 ``.npy`` (atomically: a temporary file, then a rename)."""
    path = Path(path)
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.save(handle, J.detach().cpu().numpy().astype(np.float32))
    return path


def load_jacobian(path: str | Path) -> torch.Tensor:
    """Read a Jacobian saved by :func:`save_jacobian`, or ReSeFa's ``[H, W, 1, dim]`` layout."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Jacobian file not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{path} is not a plain .npy array file ({error})") from None
    if array.ndim == 4 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != 3:
        raise ValueError(f"{path}: a Jacobian has shape [H, W, dim] or [H, W, 1, dim], got {list(array.shape)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: the Jacobian contains NaN or inf")
    return torch.from_numpy(array.astype(np.float32))


def _jacobian_stack(value) -> list[torch.Tensor]:
    """One array or tensor -> a list of ``[S, S, dim]`` Jacobians (see :func:`as_jacobian_list`)."""
    try:
        J = torch.as_tensor(value)  # a numpy array shares its memory
    except (TypeError, RuntimeError, ValueError):
        raise ValueError(f"cannot read a Jacobian from {type(value).__name__} (expected a numpy array or tensor)") from None
    if J.ndim == 5 and J.shape[3] == 1:
        J = J[:, :, :, 0]  # LowRankGAN's [N, S, S, 1, dim]
    if J.ndim == 4 and J.shape[2] == 1 and J.shape[0] == J.shape[1] > 1:
        J = J[:, :, 0]  # ReSeFa's [S, S, 1, dim]
    if J.ndim == 3:
        return [J]
    if J.ndim == 4:
        return list(J.unbind(0))
    raise ValueError(f"a Jacobian has shape [S, S, dim] (several: [N, S, S, dim]), got {list(J.shape)}")


def as_jacobian_list(jacobians) -> list[torch.Tensor]:
    """Jacobians as given by a user -> a list of float ``[S, S, dim]`` tensors of one shape.

    Accepts a numpy array or tensor ``[S, S, dim]`` (one), ``[N, S, S, dim]`` (several; also
    ReSeFa's ``[S, S, 1, dim]`` and LowRankGAN's ``[N, S, S, 1, dim]`` layouts), or a list of those.

    Raises:
        ValueError: no Jacobian, a wrong shape or dtype, shapes that differ, NaN or inf.
    """
    if isinstance(jacobians, (np.ndarray, torch.Tensor)):
        items = _jacobian_stack(jacobians)
    else:
        items = [J for item in jacobians for J in _jacobian_stack(item)]
    if not items:
        raise ValueError("no Jacobian given")
    shape = tuple(items[0].shape)
    for index, J in enumerate(items):
        if J.shape[0] != J.shape[1]:
            raise ValueError(f"a Jacobian has shape [S, S, dim] (square images), got {list(J.shape)}")
        if tuple(J.shape) != shape:
            raise ValueError(f"all Jacobians must have the same shape; got {list(shape)} and {list(J.shape)}")
        if not J.is_floating_point():
            raise ValueError(f"a Jacobian holds floating-point numbers, got {J.dtype}")
        if not torch.isfinite(J).all():
            raise ValueError(f"Jacobian {index} contains non-finite (NaN or inf) values")
    return items
