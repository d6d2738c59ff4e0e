"""Whole results folders in one call: what ``otresefa discover``, ``edit`` and ``compare`` write.

:func:`discover_report`, :func:`edit_report` and :func:`compare_report` (with :func:`compare_methods`)
are public functions a user can call; the command line is a thin layer over them.

Both write through :class:`~otresefa.outputs.OutputFolder` (all or nothing, ``manifest.json`` and
``index.html``), render with :mod:`otresefa.render.figures`, and take text or values for strengths
and layers (:mod:`otresefa.parsing`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from otresefa.directions import DIRECTIONS_NAME
from otresefa.domains import domain_of, region_for
from otresefa.editing import Edit, as_edit, compose, in_units, strength_caption
from otresefa.latents import w_from_seed
from otresefa.models import Generator
from otresefa.outputs import OutputFolder
from otresefa.parsing import parse_alphas, parse_layers, parse_seeds
from otresefa.regions import REFERENCE_SIZE, Region, box_region, mask_file_region, resolve_region
from otresefa.render.figures import (
    DEFAULT_ALPHAS,
    change_map,
    change_outside_fraction,
    comparison_grid,
    describe_outside,
    locality_view,
    render_edits,
    save_gif,
    save_mp4,
    single_direction,
    strip,
    strip_alphas,
    strip_from_images,
    sweep_frames,
    sweep_row,
)
from otresefa.render.images import DEFAULT_DISPLAY_SIZE

SIGN_NOTE = "Signs are each method's own: +alpha moves along the direction as the method returned it."
# the parts of a Directions' metadata worth repeating in a report's parameters (the rest can be large)
REPORTED_METADATA = ("method", "region", "checkpoint", "seed", "source", "loaded_from")


# --- text inputs ------------------------------------------------------------------------------------

def _seed_list(seeds: str | int | Sequence[int]) -> list[int]:
    if isinstance(seeds, str):
        return parse_seeds(seeds)
    return [int(seeds)] if isinstance(seeds, int) else [int(s) for s in seeds]


# --- directions and regions ---------------------------------------------------------------------------

def _direction_indices(index: int | Sequence[int], count: int) -> list[int]:
    indices = [int(index)] if isinstance(index, (int, np.integer)) else [int(i) for i in index]
    if not indices:
        raise ValueError("no direction index chosen")
    bad = [i for i in indices if not 0 <= i < count]
    if bad:
        raise ValueError(f"direction indices {bad} are out of range: there are {count} directions (0..{count - 1})")
    return indices


def region_from_spec(spec: Any, size: int) -> Region | None:
    """A Region at ``size`` rebuilt from a recorded spec (a Directions' ``metadata["region"]``), or
    None when the spec does not determine the mask.

    Directions made by :func:`otresefa.discover` store the exact mask (``Region.to_json``); older or
    hand-written specs may give a box, a preset or mask file name instead.
    """
    if spec is None:
        return None
    if isinstance(spec, Region):
        return spec.resized(size)
    if isinstance(spec, str):
        return resolve_region(spec, size)
    if not isinstance(spec, Mapping):
        return None
    if "mask_runs" in spec:
        return Region.from_json(spec).resized(size)
    if "box" in spec:
        return box_region(spec["box"], size, spec.get("reference_size", REFERENCE_SIZE), name=spec.get("name"))
    if spec.get("kind") == "file" and spec.get("path") and Path(spec["path"]).is_file():
        return mask_file_region(spec["path"], size)
    return None


def _safe_name(name: str) -> str:
    """``name`` usable as a file name (letters, digits, ``_`` and ``-``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", str(name)).strip("_") or "method"


def _strongest(alphas: Sequence[float]) -> float:
    """The largest-magnitude strength (the positive one on a tie): where locality matters most."""
    strongest = max(alphas, key=lambda a: (abs(a), a))
    if strongest == 0:
        raise ValueError("the edit strengths are all 0: there is no edit to show")
    return strongest


def print_summary(out: Path, folder: OutputFolder, notes: Sequence[str]) -> None:
    print(f"wrote {len(folder.entries)} files to {out}")
    for note in notes:
        print(f"  {note}")
    print(f"  open {out / 'index.html'} to browse them")


# --- otresefa edit ------------------------------------------------------------------------------------

def edit_report(
    G: Generator,
    directions: Any,
    out: str | os.PathLike,
    seeds: str | int | Sequence[int],
    alphas: str | Sequence[float] = DEFAULT_ALPHAS,
    index: int | Sequence[int] = 0,
    layers: str | Sequence[int] | None = None,
    truncation_psi: float = 0.7,
    fps: float = 12,
    num_frames: int = 25,
    sweep_tiles: int = 9,
    region: Any = None,
    units: str = "region",
    video: bool = True,
    display_size: int | None = DEFAULT_DISPLAY_SIZE,
    resample: str = "nearest",
    noise_mode: str = "const",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Edit figures for each seed and chosen direction, written to the folder ``out``.

    Per seed and direction ``i``: ``seed{S}/d{i}_strip.png`` (``alphas``, original framed in the
    middle), ``d{i}_sweep.png`` (``sweep_tiles`` strengths from -max|alpha| to +max|alpha|),
    ``d{i}_sweep.gif`` and ``.mp4`` (``num_frames`` frames at ``fps``, ping-pong; MP4 only with
    ``video``) and ``d{i}_locality.png`` at the strongest strength.

    ``directions`` is any :class:`~otresefa.editing.Edit` (e.g. a :class:`~otresefa.directions.Directions`).
    The region is ``region`` (a name, a Region or anything :func:`resolve_region` reads) or else the
    one the directions' ``metadata["region"]`` records; on the built-in domain a part name is
    segmented on each seed's own image.  ``units="region"`` (default) reads ``alphas`` in region units
    (:func:`otresefa.editing.region_units`: +1 changes the region by the same amount for every method
    and seed), ``"alpha"`` as raw strengths; region units need a region, raw strengths work without
    (then the locality views are skipped, noted).

    Returns the folder's path; prints a summary when ``progress``.
    """
    seed_list = _seed_list(seeds)
    alpha_list = strip_alphas(parse_alphas(alphas))
    strongest = _strongest(alpha_list)
    layer_list = parse_layers(layers, G.num_ws)
    edits = as_edit(directions, G.w_dim)
    indices = _direction_indices(index, len(edits))
    metadata = dict(getattr(directions, "metadata", {}) or {})
    region_of = _region_source(G, region, metadata.get("region"))
    if region_of is None and units == "region":
        raise ValueError("strengths in region units need a region, and the directions' metadata names none: "
                         "pass a region (--region), or raw strengths (--units alpha)")
    notes = [] if region_of is not None else ["no locality views: no region was given and the directions' metadata "
                                              "names none whose mask can be rebuilt (pass region=...)"]
    run_params = {"seeds": seed_list, "alphas": alpha_list, "units": units, "directions": indices,
                  "layers": layer_list or "all", "truncation_psi": truncation_psi, "resolution": G.img_resolution,
                  **{f"directions_{key}": metadata[key] for key in REPORTED_METADATA if key in metadata}}
    figure_options = dict(display_size=display_size, resample=resample, noise_mode=noise_mode)
    sweep_max = abs(strongest)
    origin, strongest_at = alpha_list.index(0.0), alpha_list.index(strongest)
    out = Path(out)
    with OutputFolder(out, overwrite=overwrite, title="otresefa edits", run_params=run_params) as folder:
        for seed in tqdm(seed_list, desc="rendering edits", unit="seed", disable=not progress):
            w = w_from_seed(G, seed, truncation_psi)  # [w_dim]
            seed_region = None if region_of is None else region_of(w)
            folder.run_params.setdefault("region", seed_region.name if seed_region is not None else "none")
            for i in indices:
                shown = in_units(G, w, edits.select(i), units, seed_region, layer_list, noise_mode)
                section, stem = f"seed {seed}", f"seed{seed}/d{i}"
                params = {"seed": seed, "direction": i, "layers": layer_list or "all", "units": units}
                if shown.in_region_units:
                    params["alpha_per_unit"] = float(shown.scale[0])
                images = render_edits(G, w, shown, alpha_list, layer_list, noise_mode=noise_mode)  # [A, C, R, R]
                title = f"seed {seed}, direction {i}"
                folder.add_image(f"{stem}_strip.png",
                                 strip_from_images(images, alpha_list, display_size, resample, title, shown),
                                 f"{title}: strip", {**params, "alphas": alpha_list}, section)
                folder.add_image(f"{stem}_sweep.png",
                                 sweep_row(G, w, shown, sweep_max, sweep_tiles, layers=layer_list, **figure_options),
                                 f"{title}: sweep", {**params, "max_alpha": sweep_max, "tiles": sweep_tiles}, section)
                frames = sweep_frames(G, w, shown, sweep_max, num_frames, layer_list, **figure_options)
                animation = {**params, "max_alpha": sweep_max, "frames": num_frames, "fps": fps, "pingpong": True}
                save_gif(frames, folder.path_for(f"{stem}_sweep.gif"), fps)
                folder.add(f"{stem}_sweep.gif", f"{title}: sweep (GIF)", animation, section)
                if video:
                    save_mp4(frames, folder.path_for(f"{stem}_sweep.mp4"), fps)
                    folder.add(f"{stem}_sweep.mp4", f"{title}: sweep (MP4)", animation, section)
                if seed_region is not None:
                    original, edited = images[origin], images[strongest_at]  # [C, R, R]
                    fraction = float(change_outside_fraction(original, edited, seed_region))
                    caption = strength_caption(strongest, shown)
                    view = locality_view(original, edited, seed_region, display_size=display_size, resample=resample,
                                         edited_caption=caption, title=title)
                    folder.add_image(f"{stem}_locality.png", view, f"{title}: change at {caption} ({seed_region.name})",
                                     {**params, "alpha": strongest, "region": seed_region.name,
                                      "outside_fraction": fraction, "heat_scale": "per-image"}, section)
        folder.run_params["notes"] = notes
    if progress:
        print_summary(out, folder, notes)
    return out


def _region_source(G: Generator, region: Any, recorded: Any) -> Callable[[torch.Tensor], Region] | None:
    """``w -> Region`` at the image size: the given ``region`` or the ``recorded`` one (a Directions'
    metadata); a name the model's domain segments per image is segmented on each sample, anything
    else is one fixed region.  None when neither determines a region."""
    domain = domain_of(G)
    name = recorded.get("name") if isinstance(recorded, Mapping) and recorded.get("kind") == "parts" else None
    spec = region if region is not None else name if domain.is_per_image(name) else None
    if spec is not None and domain.is_per_image(spec):
        return lambda w: region_for(G, w, spec, domain=domain)
    fixed = resolve_region(region, G.img_resolution, presets=dict(domain.presets)) if region is not None else \
        region_from_spec(recorded, G.img_resolution)
    return None if fixed is None else (lambda w: fixed)


# --- otresefa compare ---------------------------------------------------------------------------------

def _save_directions(folder: OutputFolder, name: str, method: str, directions: Any) -> None:
    """Store a method's directions under ``directions/`` (its own ``save`` when it has one)."""
    stem = folder.path_for(f"directions/{name}")
    if hasattr(directions, "save"):
        directions.save(stem)
    else:
        np.save(stem.with_name(f"{name}.npy"), np.asarray(getattr(directions, "vectors", directions), dtype=np.float32))
    for path in sorted(stem.parent.glob(f"{name}.*")):
        folder.add(path.relative_to(folder.root), f"{method} directions ({path.suffix[1:]})", {"method": method},
                   "directions")


def add_comparison(
    folder: OutputFolder,
    G: Generator,
    w: torch.Tensor,
    region: Region,
    rows: Mapping[str, Any],
    files: Mapping[str, str],
    alphas: Sequence[float],
    layers: Sequence[int] | None,
    title: str,
    prefix: str = "",
    units: str = "region",
    display_size: int | None = DEFAULT_DISPLAY_SIZE,
    resample: str = "nearest",
    noise_mode: str = "const",
    progress: bool = True,
) -> list[str]:
    """Write the comparison grid, a strip and a locality view per direction into ``folder``.

    ``rows`` maps a row label to a one-direction edit (a direction ``[w_dim]`` or an
    :class:`~otresefa.editing.Edit`), ``files`` the same labels to file stems.  With ``units="region"``
    every row's strengths are region units on this sample, so all rows change the region alike.
    Files go to ``{prefix}comparison.png``, ``{prefix}strips/`` and ``{prefix}locality/``; the
    locality heat maps share one fixed scale (the largest change among them) so that their colours
    compare.  Returns one note per direction: its change outside the region at the strongest strength.
    """
    strongest = _strongest(alphas)
    shown = {label: in_units(G, w, single_direction(edit_), units, region, layers, noise_mode)
             for label, edit_ in rows.items()}
    figure_options = dict(layers=layers, display_size=display_size, resample=resample, noise_mode=noise_mode)
    section = prefix.strip("/") or None
    grid = comparison_grid(G, w, shown, alphas, region=region, title=title, footer=SIGN_NOTE, **figure_options)
    folder.add_image(f"{prefix}comparison.png", grid, f"methods compared: {title}. {SIGN_NOTE}",
                     {"alphas": list(alphas), "units": units, "rows": list(rows)}, section or "comparison")
    for label, edit_ in tqdm(shown.items(), desc="rendering strips", unit="strip", disable=not progress):
        folder.add_image(f"{prefix}strips/{files[label]}.png", strip(G, w, edit_, alphas, title=label, **figure_options),
                         f"{label}: strip", {"alphas": list(alphas), "units": units}, section or "strips")
    labels = list(shown)
    together = compose([shown[label] for label in labels])  # D directions
    # one batch: row 0 the original, row 1 + d the strongest edit along direction d alone
    strengths = torch.cat([torch.zeros(1, len(labels)), strongest * torch.eye(len(labels))])  # [1 + D, D]
    images = render_edits(G, w, together, strengths, layers, noise_mode=noise_mode)  # [1 + D, C, R, R]
    original, edited = images[0], images[1:]
    scale = float(change_map(original, edited).max()) or 1.0  # shared by all panels
    fractions = change_outside_fraction(original, edited, region)  # [D]
    notes = []
    for d, label in enumerate(labels):
        fraction = float(fractions[d])
        caption = strength_caption(strongest, shown[label])
        view = locality_view(original, edited[d], region, scale=scale, display_size=display_size, resample=resample,
                             edited_caption=caption, title=label)
        folder.add_image(f"{prefix}locality/{files[label]}.png", view, f"{label}: change at {caption}",
                         {"alpha": strongest, "units": units, "outside_fraction": fraction,
                          "heat_scale": f"fixed {scale:.4g}"}, section or "locality")
        notes.append(f"{label}: {describe_outside(fraction, region.name)} at {caption}")
    return notes


def compare_report(
    G: Generator,
    seed: int,
    region: Any,
    methods: str | Sequence[str],
    out: str | os.PathLike,
    discover_fn: Callable[..., Any],
    num_directions: int = 1,
    alphas: str | Sequence[float] = DEFAULT_ALPHAS,
    layers: str | Sequence[int] | None = None,
    truncation_psi: float = 0.7,
    overwrite: bool = False,
    progress: bool = True,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    display_size: int | None = DEFAULT_DISPLAY_SIZE,
    resample: str = "nearest",
    noise_mode: str = "const",
    latent: torch.Tensor | None = None,
    units: str = "region",
) -> Path:
    """Compare region methods on one seed and region, written to the folder ``out``.

    ``discover_fn(method, **method_options.get(method, {}))`` returns the method's directions (a
    Directions or ``[k, w_dim]`` values); the first ``num_directions`` of each are shown.  Writes
    ``directions/{method}.*``, ``comparison.png`` (one row per direction, region outlined on the
    originals), ``strips/{method}_d{k}.png`` and ``locality/{method}_d{k}.png`` at the strongest
    alpha, all locality heat maps on one fixed scale (the largest change among them) so that their
    colours compare.  Directions are shown with the sign each method returned (see the grid's note).
    ``latent`` is the sample's w when already computed (default: ``seed``'s at ``truncation_psi``).
    ``units="region"`` (default) shows every direction at the same change of the region (``alphas``
    in region units), ``"alpha"`` at the same raw strengths.

    Returns the folder's path; prints a summary (with each direction's change outside the region)
    when ``progress``.
    """
    method_list = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    if not method_list:
        raise ValueError("no methods to compare")
    names = {method: _safe_name(method) for method in method_list}
    if len(set(names.values())) != len(method_list):
        raise ValueError(f"method names must be distinct as file names, got {method_list}")
    if num_directions < 1:
        raise ValueError(f"num_directions must be at least 1, got {num_directions}")
    alpha_list = strip_alphas(parse_alphas(alphas))
    _strongest(alpha_list)  # fail before any work when every strength is 0
    layer_list = parse_layers(layers, G.num_ws)
    region = resolve_region(region, G.img_resolution)
    method_options = dict(method_options or {})
    unknown = sorted(set(method_options) - set(method_list))
    if unknown:
        raise ValueError(f"options given for methods that are not compared: {unknown}")
    run_params = {"seed": seed, "region": region.name, "region_spec": region.spec, "methods": method_list,
                  "num_directions": num_directions, "alphas": alpha_list, "units": units, "layers": layer_list or "all",
                  "truncation_psi": truncation_psi, "resolution": G.img_resolution,
                  "method_options": method_options}
    w = w_from_seed(G, seed, truncation_psi) if latent is None else latent  # [w_dim]
    out = Path(out)
    notes: list[str] = []
    with OutputFolder(out, overwrite=overwrite, title=f"otresefa comparison: seed {seed}, region {region.name}",
                      run_params=run_params) as folder:
        rows: dict[str, Edit] = {}  # row label -> one direction
        files: dict[str, str] = {}  # row label -> file stem
        for method in tqdm(method_list, desc="discovering directions", unit="method", disable=not progress):
            found = discover_fn(method, **method_options.get(method, {}))
            edits = as_edit(found, G.w_dim, f"{method}'s directions")
            _save_directions(folder, names[method], method, found)
            shown = min(num_directions, len(edits))
            if shown < num_directions:
                notes.append(f"{method} returned {len(edits)} directions, fewer than the {num_directions} asked for")
            for k in range(shown):
                label = method if num_directions == 1 else f"{method} #{k}"
                rows[label], files[label] = edits.select(k), f"{names[method]}_d{k}"

        notes += add_comparison(folder, G, w, region, rows, files, alpha_list, layer_list,
                                title=f"seed {seed}, region {region.name}", units=units, display_size=display_size,
                                resample=resample, noise_mode=noise_mode, progress=progress)
        folder.run_params["notes"] = notes
    if progress:
        print_summary(out, folder, notes)
    return out


# --- otresefa discover / compare: Jacobians of seeds, then methods -----------------------------------------

def latent_jacobians(
    G: Generator,
    latents: Sequence[torch.Tensor],
    size: int = 256,
    layers: Sequence[int] | None = None,
    cache: bool = True,
    progress: bool = True,
) -> list[torch.Tensor]:
    """The W-space Jacobian ``[S, S, w_dim]`` of each latent (reused from the cache)."""
    from otresefa.jacobian import jacobian

    return [jacobian(G, w, size=size, layers=layers, cache=cache, progress=progress)
            for w in tqdm(latents, desc="Jacobians", unit="sample", disable=not progress or len(latents) == 1)]


def discover_report(
    G: Generator,
    seeds: Sequence[int],
    region: Any,
    method: str,
    out: str | os.PathLike,
    num_directions: int = 5,
    options: Mapping[str, Any] | None = None,
    method_seed: int = 0,
    truncation_psi: float = 0.7,
    size: int = 256,
    layers: Sequence[int] | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    cache: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Discover ``num_directions`` directions for ``region`` on ``seeds`` and write them with a preview.

    Writes ``directions.npy`` + ``directions.json`` (vectors, scores, full provenance) and
    ``preview.png`` (the top direction's strip on the first seed, region outlined) into ``out``.
    """
    from otresefa.discovery import discover

    seeds = list(seeds)
    latents = [w_from_seed(G, seed, truncation_psi) for seed in seeds]  # [w_dim] each
    # on the built-in domain a region name is segmented on the (first) sample's own image
    region = region_for(G, latents[0], region)
    jacobians = latent_jacobians(G, latents, size, layers, cache, progress)
    found = discover(jacobians, region, method, num_directions, method_seed, generator=G,
                     metadata={"seeds": seeds, "truncation_psi": truncation_psi, "layers": layers or "all",
                               "space": "w"}, **dict(options or {}))
    run_params = {"method": method, "seeds": seeds, "region": region.name, "num_directions": num_directions,
                  "options": found.metadata["options"], "truncation_psi": truncation_psi}
    out = Path(out)
    with OutputFolder(out, overwrite=overwrite, title=f"otresefa discover: {method}, {region.name}",
                      run_params=run_params) as folder:
        found.save(folder.path_for(DIRECTIONS_NAME))
        folder.add(f"{DIRECTIONS_NAME}.npy", f"{num_directions} {method} directions [k, w_dim]", {"scores": found.scores.tolist()},
                   "directions")
        folder.add(f"{DIRECTIONS_NAME}.json", "their provenance (method, options, region mask, seeds, checkpoint)", {}, "directions")
        preview = strip(G, latents[0], found[0], alphas, layers=layers, title=f"{method} direction 0, seed {seeds[0]}")
        folder.add_image("preview.png", preview, f"top direction on seed {seeds[0]}", {"alphas": list(alphas)}, "preview")
    if progress:
        print_summary(out, folder, [f"scores: {', '.join(f'{s:.4g}' for s in found.scores.tolist())}"])
    return out


def compare_methods(
    G: Generator,
    seed: int,
    region: Any,
    methods: str | Sequence[str],
    out: str | os.PathLike,
    size: int = 256,
    layers: Sequence[int] | None = None,
    truncation_psi: float = 0.7,
    cache: bool = True,
    progress: bool = True,
    **report_options: Any,
) -> Path:
    """:func:`compare_report` with each method run by :func:`otresefa.discover` on the seed's Jacobian."""
    from otresefa.discovery import discover

    w = w_from_seed(G, seed, truncation_psi)  # [w_dim]
    region = region_for(G, w, region)
    jacobian_of_seed = latent_jacobians(G, [w], size, layers, cache, progress)[0]
    num_directions = report_options.get("num_directions", 1)

    def discover_fn(method: str, **options: Any):
        return discover(jacobian_of_seed, region, method, num_directions, generator=G,
                        metadata={"seeds": [seed], "truncation_psi": truncation_psi, "space": "w"}, **options)

    return compare_report(G, seed, region, methods, out, discover_fn, layers=layers, truncation_psi=truncation_psi,
                          progress=progress, latent=w, **report_options)
