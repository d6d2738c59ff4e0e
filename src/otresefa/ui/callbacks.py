"""What the browser app does, as plain functions of an :class:`EditSession` (no Gradio here).

The layout (:mod:`otresefa.ui.app`) only wires widgets to these functions, so they can be tested
without a browser.  Everything heavy goes through the library's public API: ``load_generator``,
``ws_from_seed``, ``jacobian`` (with its disk cache), ``discover``, ``edit`` and the figure
functions.  A slider move costs one generator forward pass (:func:`render_edit`); the Jacobian is
computed only by :func:`discover_directions`.

Errors a user can cause (bad checkpoint, unusable region, bad option value) are raised as
``ValueError`` / ``FileNotFoundError`` with a message that names the problem; the app shows them.
"""

from __future__ import annotations

import functools
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image, ImageDraw

from otresefa.checkpoints import BUILTIN_MODELS, load_generator
from otresefa.discovery import discover
from otresefa.editing import STRENGTH_UNITS, Edit, edit, in_units, render_ws
from otresefa.jacobian import jacobian
from otresefa.latents import ws_from_seed
from otresefa.methods import method_info
from otresefa.models import Generator
from otresefa.domains import Domain, domain_of
from otresefa.regions import Region, box_region
from otresefa.render.figures import comparison_grid, locality_view, save_gif, sweep_frames
from otresefa.render.images import OUTLINE_COLOR, draw_mask_outline, save_png, to_pil, upscale

SEED_LIMIT = 2**32  # NVIDIA's seeds are uint32
DEFAULT_TRUNCATION_PSI = 0.7
DISPLAY_SIZE = 256  # small models' images are upscaled (nearest) to at least this for viewing
STRIP_ALPHAS = (-3.0, -1.5, 0.0, 1.5, 3.0)
STRIP_DISPLAY_SIZE = 96  # tiles of the directions overview
SWEEP_FRAMES = 17
DEFAULT_SWEEP_ALPHA = 3.0
BOX_REGION = "box: click two corners on the sample"
PREFERRED_REGION = "mouth"


@dataclass
class EditSession:
    """One browser tab's work: the model, the sample, the region and the discovered directions.

    ``G`` is shared between sessions (see :func:`cached_generator`); the rest belongs to the tab.
    """

    G: Generator
    checkpoint: str
    domain: Domain
    seed: int = 0
    truncation_psi: float = DEFAULT_TRUNCATION_PSI
    w: torch.Tensor | None = None  # [w_dim]
    original: torch.Tensor | None = None  # [C, R, R], the unedited sample
    region_choice: str | None = None
    corners: tuple[tuple[int, int], ...] = ()  # clicked box corners, (row, col) in image pixels
    region: Region | None = None  # at the image's resolution
    region_problem: str | None = None  # why there is no usable region, shown to the user
    directions: Edit | None = None  # what Discover found (Directions for every method but SDFlow)
    units: str = "region"  # the sliders' strengths: region units or raw alpha
    shown: Edit | None = None  # the directions driven in ``units`` on this sample (see update_units)

    @property
    def resolution(self) -> int:
        return self.G.img_resolution


# --- model and sample -----------------------------------------------------------------------------

def _checkpoint_stamp(checkpoint: str) -> int | None:
    """Modification time of the checkpoint file, so that a rewritten file is loaded again."""
    path = BUILTIN_MODELS.get(checkpoint, Path(checkpoint).expanduser())
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None  # load_generator names the problem


@functools.lru_cache(maxsize=4)
def _load_once(checkpoint: str, device: str | None, stamp: int | None) -> Generator:
    return load_generator(checkpoint, device=device)


def cached_generator(checkpoint: str, device: str | None = None) -> Generator:
    """``load_generator(checkpoint, device)``, loaded once per file version and shared by all tabs."""
    checkpoint = checkpoint.strip()
    if not checkpoint:
        raise ValueError(f"enter a checkpoint path or a built-in model name ({', '.join(BUILTIN_MODELS)})")
    return _load_once(checkpoint, device, _checkpoint_stamp(checkpoint))


def new_session(checkpoint: str, device: str | None = None, seed: int = 0,
                truncation_psi: float = DEFAULT_TRUNCATION_PSI) -> EditSession:
    """Load ``checkpoint`` and show ``seed`` with the default region selected."""
    G = cached_generator(checkpoint, device)
    session = EditSession(G, checkpoint.strip(), domain_of(G))
    choices = region_choices(session)
    session.region_choice = PREFERRED_REGION if PREFERRED_REGION in choices else choices[0]
    return set_sample(session, seed, truncation_psi)


def region_choices(session: EditSession) -> list[str]:
    """The model's domain's region names (segmented parts on the built-in domain, FFHQ's preset
    boxes otherwise), then the drawn box."""
    return [*session.domain.region_names, BOX_REGION]


def random_seed(current_seed: int) -> int:
    """The next "random sample": drawn from an RNG seeded with the current seed, so that a sequence
    of random samples can be replayed from its first seed."""
    return random.Random(int(current_seed)).randrange(SEED_LIMIT)


def as_seed(value: Any) -> int:
    """A seed from a number widget's value (a float with no fraction)."""
    if value is None or value == "":
        raise ValueError("enter a seed (a whole number)")
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"a seed is a whole number, got {value}")
    return int(number)


def set_sample(session: EditSession, seed: Any, truncation_psi: float) -> EditSession:
    """Show the sample of ``seed`` at ``truncation_psi``; a part region is segmented again on it."""
    seed = as_seed(seed)
    truncation_psi = float(truncation_psi)
    ws = ws_from_seed(session.G, seed, truncation_psi)  # [num_ws, w_dim], one w broadcast
    session.seed, session.truncation_psi, session.w = seed, truncation_psi, ws[0]
    session.original = render_ws(session.G, ws[None])[0]  # [C, R, R]
    return update_region(session)


# --- region ---------------------------------------------------------------------------------------

def choose_region(session: EditSession, choice: str | None) -> EditSession:
    """Select a named region, or the box mode (whose corners come from :func:`click_corner`)."""
    if choice != BOX_REGION or session.region_choice != BOX_REGION:
        session.corners = ()
    session.region_choice = choice
    return update_region(session)


def image_pixel(session: EditSession, x: float, y: float, shown_width: int) -> tuple[int, int]:
    """``(row, col)`` in the generator's image of the point ``(x, y)`` of the image as shown
    ``shown_width`` pixels wide."""
    scale = shown_width / session.resolution
    row, col = int(y // scale), int(x // scale)
    if not (0 <= row < session.resolution and 0 <= col < session.resolution):
        raise ValueError(f"the point ({x:g}, {y:g}) lies outside the {shown_width}x{shown_width} image")
    return row, col


def click_corner(session: EditSession, row: int, col: int) -> EditSession:
    """Add a box corner at image pixel ``(row, col)``; two corners make the box, a third starts over."""
    size = session.resolution
    if not (0 <= row < size and 0 <= col < size):
        raise ValueError(f"the corner (row {row}, column {col}) lies outside the {size}x{size} image")
    if session.region_choice != BOX_REGION or len(session.corners) == 2:
        session.corners = ()
    session.region_choice = BOX_REGION
    session.corners = (*session.corners, (row, col))
    return update_region(session)


def box_from_corners(corners: Sequence[tuple[int, int]], size: int) -> Region:
    """The box covering the pixels between two opposite corners (both included), at ``size``."""
    (row_a, col_a), (row_b, col_b) = corners
    top, bottom = sorted((row_a, row_b))
    left, right = sorted((col_a, col_b))
    height, width = bottom - top + 1, right - left + 1
    box = [top + height / 2, left + width / 2, height, width]  # box_region's [center_row, center_col, h, w]
    return box_region(box, size, reference_size=size, name=f"box rows {top}-{bottom}, cols {left}-{right}")


def update_region(session: EditSession) -> EditSession:
    """Recompute the region for the current choice and sample; a problem is kept, not raised, so
    that the sample still updates."""
    session.region, session.region_problem = None, None
    try:
        session.region = current_region(session)
    except ValueError as error:
        session.region_problem = str(error)
    return update_units(session)


def current_region(session: EditSession) -> Region:
    """The selected region at the image's resolution (raises ``ValueError`` when it is unusable)."""
    choice, size = session.region_choice, session.resolution
    if not choice:
        raise ValueError("choose a region: a named part, or the box mode and two clicks on the sample")
    if choice == BOX_REGION:
        if len(session.corners) < 2:
            raise ValueError(f"click {2 - len(session.corners)} more corner(s) of the box on the sample image")
        return box_from_corners(session.corners, size).check_usable()
    if choice not in region_choices(session):
        raise ValueError(f"unknown region {choice!r}; choose one of {', '.join(region_choices(session))}")
    return session.domain.region(choice, session.original, size)


def set_units(session: EditSession, units: str) -> EditSession:
    """Read the sliders in ``units``: ``"region"`` (+1 changes the region alike for every direction) or
    ``"alpha"`` (raw strengths)."""
    if units not in STRENGTH_UNITS:
        raise ValueError(f"strength units are one of {', '.join(STRENGTH_UNITS)}, got {units!r}")
    session.units = units
    return update_units(session)


def update_units(session: EditSession) -> EditSession:
    """Measure the directions' region units on the current sample and region (raw strengths when
    there is no region; the status line says so)."""
    session.shown = None
    if session.directions is not None:
        units = session.units if session.region is not None else "alpha"
        try:
            session.shown = in_units(session.G, session.w, session.directions, units, session.region)
        except ValueError as error:  # e.g. a direction that leaves this region unchanged
            session.region_problem = f"{error}; the sliders are in raw alpha"
            session.shown = in_units(session.G, session.w, session.directions, "alpha", None)
    return session


def require_region(session: EditSession) -> Region:
    if session.region is None:
        raise ValueError(session.region_problem or "choose a region first")
    return session.region


# --- discovery ------------------------------------------------------------------------------------

def discover_directions(session: EditSession, method: str, num_directions: int, options: dict[str, Any] | None = None,
                        method_seed: int = 0, progress: Callable[[float, str], None] | None = None) -> EditSession:
    """Discover ``num_directions`` directions for the session's region on its sample.

    Methods that read the Jacobian get it from :func:`otresefa.jacobian` (reused from the disk
    cache when this sample was seen before); ``sefa``/``ganspace`` read the generator instead.
    ``progress(fraction, text)`` reports the stages; the Jacobian also reports through tqdm.
    """
    report = progress or (lambda fraction, text: None)
    info = method_info(method)
    options = info.parse_options(dict(options or {}))
    region = require_region(session) if "jacobians" in info.needs else session.region
    jacobians = None
    if "jacobians" in info.needs:
        report(0.0, "Jacobian of the sample (cached after the first time)")
        jacobians = jacobian(session.G, session.w, cache=True, progress=progress is not None)
    report(0.8, f"{method}: searching {num_directions} direction(s)")
    session.directions = discover(
        jacobians, region, method, int(num_directions), int(method_seed), generator=session.G,
        metadata={"seeds": [session.seed], "truncation_psi": session.truncation_psi, "space": "w",
                  "checkpoint_source": session.checkpoint},
        **options,
    )
    report(0.95, "measuring the region units")
    update_units(session)
    report(1.0, "done")
    return session


def require_directions(session: EditSession) -> Edit:
    """The discovered directions as the sliders drive them (in the session's units)."""
    if session.shown is None:
        raise ValueError("no directions yet: choose a region and press Discover")
    return session.shown


# --- pictures -------------------------------------------------------------------------------------

def edit_layers(first: int, last: int, num_ws: int) -> list[int] | None:
    """The layers (ws indices) ``first..last`` that receive the edit; ``None`` when that is all."""
    first, last = int(first), int(last)
    if first > last:
        raise ValueError(f"the first edited layer ({first}) is after the last ({last})")
    if first < 0 or last >= num_ws:
        raise ValueError(f"layers run from 0 to {num_ws - 1}, got {first}-{last}")
    return None if (first, last) == (0, num_ws - 1) else list(range(first, last + 1))


def sample_view(session: EditSession) -> Image.Image:
    """The unedited sample, upscaled, with the region's outline and any clicked corner marked."""
    view = upscale(to_pil(session.original), DISPLAY_SIZE)
    if session.region is not None:
        view = draw_mask_outline(view, session.region.mask)
    pending_corners = session.corners if session.region is None else ()  # a finished box shows as its outline
    scale = view.width / session.resolution
    draw = ImageDraw.Draw(view)
    for row, col in pending_corners:
        centre_x, centre_y = (col + 0.5) * scale, (row + 0.5) * scale
        radius = max(3.0, scale / 2)
        draw.ellipse([centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius], outline=OUTLINE_COLOR,
                     width=2)
    return view


def edited_image(session: EditSession, alphas: Sequence[float], layers: list[int] | None) -> torch.Tensor:
    """The sample moved along all discovered directions at once (eq. 28), strengths in the
    session's units: ``[C, R, R]``."""
    directions = require_directions(session)
    strengths = [float(a) for a in alphas[:len(directions)]]
    if len(strengths) < len(directions):
        raise ValueError(f"{len(directions)} directions need {len(directions)} strengths, got {len(strengths)}")
    return edit(session.G, session.w, directions, [strengths], layers=layers)[0]


def render_edit(session: EditSession, alphas: Sequence[float], layers: list[int] | None,
                heat_map: bool = False) -> tuple[Image.Image, Image.Image | None]:
    """The edited sample, and with ``heat_map`` the locality view (original | edited | where it
    changed, region outlined), from one generator pass.  Before any discovery: the sample itself."""
    if session.directions is None:
        return upscale(to_pil(session.original), DISPLAY_SIZE), None
    edited = edited_image(session, alphas, layers)
    locality = None
    if heat_map:
        locality = locality_view(session.original, edited, require_region(session), display_size=DISPLAY_SIZE)
    return upscale(to_pil(edited), DISPLAY_SIZE), locality


def directions_overview(session: EditSession, layers: list[int] | None = None) -> Image.Image:
    """One labelled row per discovered direction (strengths :data:`STRIP_ALPHAS`, the original
    framed, the region outlined on it), rendered in one batch."""
    directions = require_directions(session)
    scores = getattr(session.directions, "scores", None)
    rows = {f"direction {i}" + (f" (score {float(scores[i]):.3g})" if scores is not None else ""): directions.select(i)
            for i in range(len(directions))}
    region = f" for {session.region.name}" if session.region is not None else ""
    method = session.directions.metadata.get("method", "")
    title = f"{method} directions{region}: the original framed in red"
    return comparison_grid(session.G, session.w, rows, STRIP_ALPHAS, region=session.region, layers=layers,
                           display_size=STRIP_DISPLAY_SIZE, title=title)


def session_summary(session: EditSession | None) -> str:
    """One Markdown line on what is loaded and selected, and what is missing."""
    if session is None:
        return "No model loaded: enter a checkpoint and press **Load**."
    G = session.G
    parts = [
        f"**Model** `{session.checkpoint}` ({G.img_resolution} px, {G.w_dim}-d W, {G.num_ws} layers)",
        f"**Sample** seed {session.seed}, psi {session.truncation_psi:g}",
    ]
    if session.region is not None:
        parts.append(f"**Region** {session.region.name} ({100 * session.region.fraction:.1f}% of the image)")
    else:
        parts.append(f"**Region** none: {session.region_problem}")
    if session.directions is not None:
        meta = session.directions.metadata
        units = "region units" if session.shown is not None and session.shown.in_region_units else "raw alpha"
        parts.append(f"**Directions** {len(session.directions)} from {meta.get('method')} "
                     f"(found for seed {meta.get('seeds', ['?'])[0]}; strengths in {units})")
    return " · ".join(parts)


# --- exports --------------------------------------------------------------------------------------

def export_folder(root: str | Path) -> Path:
    """A new folder under ``root`` for one export, so that exports never overwrite each other."""
    Path(root).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=root, prefix="export-"))


def export_png(session: EditSession, alphas: Sequence[float], layers: list[int] | None, root: str | Path) -> Path:
    """The edited sample as shown, as a PNG file."""
    view, _ = render_edit(session, alphas, layers)
    return save_png(view, export_folder(root) / f"otresefa_seed{session.seed}_edit.png")


def export_gif(session: EditSession, alpha: float, layers: list[int] | None, root: str | Path) -> Path:
    """A looping GIF sweep of the first direction from ``-|alpha|`` to ``+|alpha|`` (3 when 0)."""
    directions = require_directions(session)
    max_alpha = abs(float(alpha)) or DEFAULT_SWEEP_ALPHA
    frames = sweep_frames(session.G, session.w, directions.select(0), max_alpha, SWEEP_FRAMES, layers=layers,
                          display_size=DISPLAY_SIZE)
    return save_gif(frames, export_folder(root) / f"otresefa_seed{session.seed}_direction0_sweep.gif")


def export_directions(session: EditSession, root: str | Path) -> tuple[Path, Path]:
    """The directions as their own files (``Directions.save``: ``.npy`` plus a ``.json`` provenance sidecar)."""
    require_directions(session)
    directions = session.directions
    name = f"otresefa_{directions.metadata.get('method', 'directions')}_seed{session.seed}"
    return directions.save(export_folder(root) / name)
