"""Editing latents along discovered directions (eq. 1) and composing several directions (eq. 28).

``edit`` moves a latent by ``sum_i alpha_i n_i`` and renders the result.  In W the offset is added
to the chosen synthesis layers of the broadcast (or W+) latent, as ReSeFa's manipulation does; in Z
it is added to z before the mapping network, as eq. 1 writes it.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from otresefa.models import Generator, layer_mask

EDIT_SPACES = ("w", "z")


def direction_matrix(directions: Any, dim: int) -> torch.Tensor:
    """Directions (a :class:`~otresefa.directions.Directions`, ``[dim]`` or ``[k, dim]``) as ``[k, dim]``."""
    vectors = getattr(directions, "vectors", directions)
    vectors = torch.as_tensor(vectors, dtype=torch.float32)
    if vectors.ndim == 1:
        vectors = vectors[None]
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"directions have dimension {list(vectors.shape)[-1]}, but this latent space has dimension {dim}")
    if not torch.isfinite(vectors).all():
        raise ValueError("the directions contain NaN or inf")
    return vectors


def alpha_matrix(alphas: Any, num_directions: int) -> torch.Tensor:
    """Edit strengths as ``[A, k]``: row ``a`` holds one strength per direction (eq. 28).

    With one direction, ``alphas`` is a list of strengths (one edit each).  With ``k > 1``
    directions, a flat list of ``k`` strengths is one composed edit; ``[A, k]`` is ``A`` edits.
    """
    alphas = torch.as_tensor(alphas, dtype=torch.float32)
    if not torch.isfinite(alphas).all():
        raise ValueError("the edit strengths contain NaN or inf")
    if num_directions == 1 and alphas.ndim <= 1:
        return alphas.reshape(-1, 1)
    if num_directions > 1 and alphas.ndim == 1:
        alphas = alphas[None]
    if alphas.ndim != 2 or alphas.shape[1] != num_directions:
        raise ValueError(f"{num_directions} directions need strengths of shape [{num_directions}] or [A, {num_directions}], "
                         f"got {list(alphas.shape)}")
    return alphas


def _latents_as_ws_or_z(G: Generator, latent: torch.Tensor, space: str) -> torch.Tensor:
    """Validate and batch: W -> ``[N, num_ws, w_dim]`` (broadcast or W+), Z -> ``[N, z_dim]``."""
    latent = torch.as_tensor(latent, dtype=torch.float32)
    if not torch.isfinite(latent).all():
        raise ValueError("the latent contains NaN or inf")
    if space == "z":
        latent = latent[None] if latent.ndim == 1 else latent
        if latent.ndim != 2 or latent.shape[1] != G.z_dim:
            raise ValueError(f"a z latent has shape [{G.z_dim}] or [N, {G.z_dim}], got {list(latent.shape)}")
        return latent
    if latent.ndim == 1:
        latent = latent[None]
    if latent.ndim == 2:
        if latent.shape[1] != G.w_dim:
            raise ValueError(f"a w latent has shape [{G.w_dim}], [N, {G.w_dim}] or W+ [N, {G.num_ws}, {G.w_dim}], "
                             f"got {list(latent.shape)}")
        latent = latent[:, None].repeat(1, G.num_ws, 1)
    if latent.ndim != 3 or latent.shape[1:] != (G.num_ws, G.w_dim):
        raise ValueError(f"a W+ latent has shape [N, {G.num_ws}, {G.w_dim}], got {list(latent.shape)}")
    return latent


def edited_ws(
    G: Generator,
    latent: torch.Tensor,
    directions: Any,
    alphas: Any,
    space: str = "w",
    layers: Sequence[int] | None = None,
    truncation_psi: float = 1.0,
) -> torch.Tensor:
    """The edited W+ latents ``[N, A, num_ws, w_dim]`` (eq. 1 / eq. 28), without rendering."""
    if space not in EDIT_SPACES:
        raise ValueError(f"unknown edit space {space!r}; expected one of {EDIT_SPACES}")
    dim = G.w_dim if space == "w" else G.z_dim
    vectors = direction_matrix(directions, dim).to(G.device)  # [k, dim]
    strengths = alpha_matrix(alphas, vectors.shape[0]).to(G.device)  # [A, k]
    offsets = strengths @ vectors  # [A, dim]
    selected = layer_mask(layers, G.num_ws, G.device)  # [num_ws]
    base = _latents_as_ws_or_z(G, latent, space).to(G.device)
    with torch.no_grad():
        if space == "w":
            # [N, 1, num_ws, w_dim] + [1, A, num_ws, w_dim]
            return base[:, None] + offsets[None, :, None, :] * selected[None, None, :, None]
        n, a = base.shape[0], offsets.shape[0]
        z_edit = (base[:, None] + offsets[None]).reshape(n * a, dim)  # [N*A, z_dim]
        ws_edit = G.mapping(z_edit, None, truncation_psi=truncation_psi).reshape(n, a, G.num_ws, G.w_dim)
        ws_base = G.mapping(base, None, truncation_psi=truncation_psi)[:, None]  # [N, 1, num_ws, w_dim]
        return ws_base + (ws_edit - ws_base) * selected[None, None, :, None]


def render_ws(G: Generator, ws: torch.Tensor, noise_mode: str = "const", batch_size: int = 16) -> torch.Tensor:
    """Synthesise ``ws [..., num_ws, w_dim]`` in batches -> images ``[..., C, R, R]`` in about [-1, 1]."""
    lead = ws.shape[:-2]
    flat = ws.reshape(-1, G.num_ws, G.w_dim)
    with torch.no_grad():
        images = [G.synthesis(chunk.to(G.device), noise_mode=noise_mode).cpu() for chunk in flat.split(batch_size)]
    images = torch.cat(images)
    return images.reshape(*lead, *images.shape[1:])


def edit(
    G: Generator,
    latent: torch.Tensor,
    directions: Any,
    alphas: Any,
    space: str = "w",
    layers: Sequence[int] | None = None,
    noise_mode: str = "const",
    truncation_psi: float = 1.0,
    batch_size: int = 16,
) -> torch.Tensor:
    """Render edits of ``latent`` along ``directions`` with strengths ``alphas``.

    Args:
        latent: W: ``[w_dim]``, ``[N, w_dim]`` or W+ ``[N, num_ws, w_dim]`` (a single W+ latent is
            ``[1, num_ws, w_dim]``); Z: ``[z_dim]`` or ``[N, z_dim]``.  A tensor or a numpy array
            (float32 or float64; computed in float32), as are ``directions`` and ``alphas``.
        directions: a ``Directions`` object or unit vectors ``[dim]`` / ``[k, dim]``.
        alphas: one direction: ``[A]`` strengths; ``k`` directions: ``[k]`` (one composed edit, eq. 28)
            or ``[A, k]``.  An alpha of 0 reproduces the original image exactly.
        layers: ws indices that receive the edit (default all).
        truncation_psi: used in Z space (W latents are edited as given).
    Returns:
        ``[A, C, R, R]`` for a single latent, ``[N, A, C, R, R]`` for a batch.
    """
    single = torch.as_tensor(latent).ndim == 1
    ws = edited_ws(G, latent, directions, alphas, space=space, layers=layers, truncation_psi=truncation_psi)
    images = render_ws(G, ws, noise_mode=noise_mode, batch_size=batch_size)  # [N, A, C, R, R]
    return images[0] if single else images
