"""Edits: what moves a latent, linearly along directions (eq. 1, eq. 28) or along a learned path.

An :class:`Edit` has ``k`` named directions and maps W+ latents and strengths ``[A, k]`` to edited
W+ latents: :class:`LinearEdit` adds ``sum_i alpha_i n_i`` to the chosen synthesis layers of the
broadcast (or W+) latent, as ReSeFa's manipulation does (the directions every discovery method but
SDFlow finds: :class:`~otresefa.directions.Directions` is one); a learned edit (SDFlow's flow) moves
each latent along its own non-linear path.  :func:`edit`, every figure, the browser app and the
benchmark take any :class:`Edit`, so they treat all methods alike.  In Z, a linear edit is added to z
before the mapping network, as eq. 1 writes it.

Strengths are raw (``alpha``: the distance moved in W for a linear edit) or in *region units*:
:func:`alpha_per_unit` measures, on a sample, the raw strength that changes the region by
:data:`REGION_UNIT_RMS`, so that ``+1`` is a comparable, visible edit for every method and direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from otresefa.latents import as_ws, as_z, one_ws
from otresefa.models import Generator, layer_mask

EDIT_SPACES = ("w", "z")
STRENGTH_UNITS = ("region", "alpha")
REGION_UNIT_RMS = 0.05
"""One region unit: the RMS change per RGB channel inside the region (images in [-1, 1], so 2.5% of
the range), measured to first order (a central difference) on the sample being edited."""
PROBE_ALPHA = 1.0
"""The raw strength of the central difference that measures a direction's region change."""


class Edit:
    """``k`` named edit directions of W latents; subclasses define :meth:`move` and :meth:`select`.

    Contract: a strength of 0 leaves a latent unchanged *exactly* (the original image), and a row of
    ``k`` strengths edits along all ``k`` directions at once (eq. 28).
    """

    def __len__(self) -> int:
        return self.num_directions

    @property
    def num_directions(self) -> int:
        raise NotImplementedError

    @property
    def w_dim(self) -> int:
        raise NotImplementedError

    @property
    def labels(self) -> list[str]:
        """A caption per direction."""
        return [f"direction {i}" for i in range(self.num_directions)]

    @property
    def in_region_units(self) -> bool:
        """Whether its strengths are region units (:func:`region_units`) rather than raw."""
        return False

    def move(self, G: Generator, ws: torch.Tensor, strengths: torch.Tensor,
             layers: Sequence[int] | None = None) -> torch.Tensor:
        """Latent ``i`` of ``ws [M, num_ws, w_dim]`` moved by strengths ``[M, k]`` row ``i``, the edit
        reaching only the ``layers`` (ws indices; None: all): ``[M, num_ws, w_dim]``."""
        raise NotImplementedError

    def select(self, index: int | Sequence[int]) -> "Edit":
        """The edit along direction ``index`` only (or along several)."""
        raise NotImplementedError

    def apply(self, G: Generator, ws: torch.Tensor, strengths: torch.Tensor,
              layers: Sequence[int] | None = None) -> torch.Tensor:
        """Every latent of ``ws [N, num_ws, w_dim]`` under every row of ``strengths [A, k]``:
        ``[N, A, num_ws, w_dim]``."""
        n, a = ws.shape[0], strengths.shape[0]
        every = ws[:, None].expand(n, a, *ws.shape[1:]).reshape(n * a, *ws.shape[1:])  # [N*A, num_ws, w_dim]
        return self.move(G, every, strengths.repeat(n, 1), layers).reshape(n, a, *ws.shape[1:])


@dataclass
class LinearEdit(Edit):
    """Unit directions ``vectors [k, w_dim]``: ``w' = w + sum_i alpha_i n_i`` (eq. 1, eq. 28)."""

    vectors: torch.Tensor  # [k, w_dim] float32

    def __post_init__(self) -> None:
        self.vectors = direction_matrix(self.vectors, torch.as_tensor(self.vectors).shape[-1])

    @property
    def num_directions(self) -> int:
        return self.vectors.shape[0]

    @property
    def w_dim(self) -> int:
        return self.vectors.shape[1]

    def offsets(self, strengths: torch.Tensor) -> torch.Tensor:
        """``sum_i alpha_i n_i`` per row of ``strengths [M, k]``: ``[M, w_dim]``."""
        return strengths.to(self.vectors) @ self.vectors

    def move(self, G, ws, strengths, layers=None):
        offsets = self.offsets(strengths).to(ws.device)  # [M, w_dim]
        selected = layer_mask(layers, G.num_ws, ws.device)  # [num_ws]
        return ws + offsets[:, None, :] * selected[None, :, None]  # a zero strength adds exactly 0

    def select(self, index):
        return LinearEdit(self.vectors[[index] if isinstance(index, int) else list(index)])

    def negated(self) -> "LinearEdit":
        return LinearEdit(-self.vectors)


@dataclass
class ComposedEdit(Edit):
    """Several edits side by side: the strength columns of part ``j`` drive it, and the parts move
    a latent in turn (for linear parts this is the sum of eq. 28)."""

    parts: list

    @property
    def num_directions(self) -> int:
        return sum(len(part) for part in self.parts)

    @property
    def w_dim(self) -> int:
        return self.parts[0].w_dim

    @property
    def labels(self) -> list[str]:
        return [label for part in self.parts for label in part.labels]

    @property
    def in_region_units(self) -> bool:
        return all(part.in_region_units for part in self.parts)

    def move(self, G, ws, strengths, layers=None):
        column = 0
        for part in self.parts:
            ws = part.move(G, ws, strengths[:, column:column + len(part)], layers)
            column += len(part)
        return ws

    def select(self, index):
        flat = [(part, j) for part in self.parts for j in range(len(part))]
        indices = [index] if isinstance(index, int) else list(index)
        return compose([flat[i][0].select(flat[i][1]) for i in indices])


@dataclass
class ScaledEdit(Edit):
    """``edit`` with its strengths multiplied per direction by ``scale [k]``: strengths in region
    units become raw ones (:func:`region_units`)."""

    edit: Edit
    scale: torch.Tensor  # [k]

    @property
    def num_directions(self) -> int:
        return len(self.edit)

    @property
    def w_dim(self) -> int:
        return self.edit.w_dim

    @property
    def labels(self) -> list[str]:
        return self.edit.labels

    @property
    def in_region_units(self) -> bool:
        return True

    def move(self, G, ws, strengths, layers=None):
        return self.edit.move(G, ws, strengths * self.scale.to(strengths), layers)

    def select(self, index):
        indices = [index] if isinstance(index, int) else list(index)
        return ScaledEdit(self.edit.select(indices), self.scale[indices])


def strength_caption(strength: float, edit: Edit | None = None) -> str:
    """A strength as pictures write it: ``original`` for 0, ``+3 u`` in region units (a
    :class:`ScaledEdit`), ``alpha +3`` for raw strengths."""
    if strength == 0:
        return "original"
    return f"{strength:+g} u" if edit is not None and edit.in_region_units else f"alpha {strength:+g}"


def negated(edit: Edit) -> Edit:
    """``edit`` with every strength's sign flipped ("+" becomes "-")."""
    if isinstance(edit, LinearEdit):
        return edit.negated()
    return ScaledEdit(edit, -torch.ones(len(edit)))


def direction_matrix(directions: Any, dim: int) -> torch.Tensor:
    """Directions (a :class:`LinearEdit`, ``[dim]`` or ``[k, dim]`` values) as ``[k, dim]``."""
    vectors = getattr(directions, "vectors", directions)
    vectors = torch.as_tensor(vectors, dtype=torch.float32)
    if vectors.ndim == 1:
        vectors = vectors[None]
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"directions have dimension {list(vectors.shape)[-1]}, but this latent space has dimension {dim}")
    if not torch.isfinite(vectors).all():
        raise ValueError("the directions contain NaN or inf")
    return vectors


def as_edit(value: Any, w_dim: int | None = None, source: str = "the directions") -> Edit:
    """``value`` as an :class:`Edit`: an Edit as it is; direction vectors ``[w_dim]`` / ``[k, w_dim]``
    (numpy or torch) as a :class:`LinearEdit`.  ``w_dim`` is checked when given; errors name ``source``."""
    edit = value if isinstance(value, Edit) else LinearEdit(direction_matrix(value, torch.as_tensor(
        getattr(value, "vectors", value)).shape[-1]))
    if w_dim is not None and edit.w_dim != w_dim:
        raise ValueError(f"{source} have dimension {edit.w_dim}, but this latent space (the generator's w_dim) "
                         f"has dimension {w_dim}; were they made for another model?")
    return edit


def compose(edits: Sequence[Any]) -> Edit:
    """One edit whose direction ``j`` is ``edits``' ``j``-th (each one direction or several):
    linear edits are stacked into one :class:`LinearEdit`, others composed in turn."""
    parts = [as_edit(e) for e in edits]
    if not parts:
        raise ValueError("nothing to compose")
    if all(isinstance(part, LinearEdit) for part in parts):
        return LinearEdit(torch.cat([part.vectors for part in parts]))
    return ComposedEdit(parts)


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
    edit_ = as_edit(directions, G.w_dim if space == "w" else G.z_dim)
    strengths = alpha_matrix(alphas, len(edit_)).to(G.device)  # [A, k]
    with torch.no_grad():
        if space == "w":
            return edit_.apply(G, as_ws(G, latent).to(G.device), strengths, layers)
        if not isinstance(edit_, LinearEdit):
            raise ValueError(f"a {type(edit_).__name__} edits W latents; use space='w'")
        base = as_z(G, latent).to(G.device)
        offsets = edit_.offsets(strengths).to(G.device)  # [A, z_dim]
        selected = layer_mask(layers, G.num_ws, G.device)  # [num_ws]
        n, a = base.shape[0], offsets.shape[0]
        z_edit = (base[:, None] + offsets[None]).reshape(n * a, G.z_dim)  # [N*A, z_dim]
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


def alpha_per_unit(G: Generator, latent: torch.Tensor, directions: Any, region: Any,
                   layers: Sequence[int] | None = None, noise_mode: str = "const") -> torch.Tensor:
    """The raw strength of each direction that changes ``region`` by one region unit on this sample.

    The first-order RMS change per channel inside the region per unit of raw strength is measured by
    a central difference, ``rms(G(w + p n) - G(w - p n)) / 2p`` with ``p =`` :data:`PROBE_ALPHA`
    (for a linear edit this is the rendered counterpart of ``sqrt(n^T A_F n)``, eqs. 4-6, per RGB
    channel rather than on the summed image); a region unit is :data:`REGION_UNIT_RMS` of it.

    Parameters
    ----------
    latent : Tensor [w_dim] or [num_ws, w_dim] or [1, num_ws, w_dim]
        The sample being edited.
    directions : Edit or direction vectors
        ``k`` directions.
    region : Region or bool mask [H, W]
        Where the change is measured (resized to the image).

    Returns
    -------
    Tensor [k]
        Raw strength per region unit (multiply region-unit strengths by it).

    Raises
    ------
    ValueError
        When a direction does not change the region at all (no unit can be defined).
    """
    from otresefa.metrics.locality import rms_change_inside

    edit_ = as_edit(directions, G.w_dim)
    ws = one_ws(G, latent)  # [1, num_ws, w_dim]
    k = len(edit_)
    probes = torch.cat([torch.eye(k), -torch.eye(k)]) * PROBE_ALPHA  # [2k, k]
    with torch.no_grad():
        images = render_ws(G, edit_.apply(G, ws.to(G.device), probes.to(G.device), layers)[0],
                           noise_mode=noise_mode)  # [2k, C, R, R]
    per_alpha = rms_change_inside(images[k:], images[:k], region) / (2 * PROBE_ALPHA)  # [k]
    still = (per_alpha <= 0).nonzero().flatten().tolist()
    if still:
        raise ValueError(f"direction(s) {still} do not change the region at all; use raw strengths (units='alpha')")
    return (REGION_UNIT_RMS / per_alpha).to(torch.float32)


def region_units(G: Generator, latent: torch.Tensor, directions: Any, region: Any,
                 layers: Sequence[int] | None = None, noise_mode: str = "const") -> ScaledEdit:
    """``directions`` driven in region units on this sample: strength ``+1`` changes ``region`` by
    :data:`REGION_UNIT_RMS` (to first order) for every direction, whatever its method
    (:func:`alpha_per_unit`)."""
    edit_ = as_edit(directions, G.w_dim)
    return ScaledEdit(edit_, alpha_per_unit(G, latent, edit_, region, layers, noise_mode))


def in_units(G: Generator, latent: torch.Tensor, directions: Any, units: str, region: Any,
             layers: Sequence[int] | None = None, noise_mode: str = "const") -> Edit:
    """The edit whose strengths are in ``units``: ``"region"`` (:func:`region_units`, needs the
    region) or ``"alpha"`` (raw: the edit as it is)."""
    if units not in STRENGTH_UNITS:
        raise ValueError(f"strength units are one of {', '.join(STRENGTH_UNITS)}, got {units!r}")
    if units == "alpha":
        return as_edit(directions, G.w_dim)
    if region is None:
        raise ValueError("strengths in region units need a region: give one, or use raw strengths (units 'alpha')")
    return region_units(G, latent, directions, region, layers, noise_mode)
