"""``otresefa demo``: the whole method on the built-in model, in one folder, in under a minute on a CPU.

For one sample it computes the W-space Jacobian once, segments the mouth and the eyes, discovers a
direction for each with OT-ReSeFa and with ReSeFa, and writes per region the method comparison
grid, each direction's strip, the locality views (one colour scale) and a GIF sweep of the
OT-ReSeFa edit, with ``index.html`` and ``manifest.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from otresefa.checkpoints import load_generator
from otresefa.discovery import discover
from otresefa.editing import region_units
from otresefa.domains import region_for
from otresefa.jacobian import jacobian
from otresefa.latents import w_from_seed
from otresefa.outputs import OutputFolder
from otresefa.pipelines import add_comparison, print_summary
from otresefa.render.figures import save_gif, sweep_frames

DEMO_TITLE = "otresefa demo"
DEMO_REGIONS = ("mouth", "eyes")
DEMO_METHODS = {"OT-ReSeFa": "ot-resefa", "ReSeFa": "resefa"}
DEMO_SEED = 4
"""First seed the demo tries when none is given."""
DEMO_SEED_TRIES = 64
"""How many seeds from ``DEMO_SEED`` on the demo looks through for one whose regions are all found."""
DEMO_ALPHAS = (-3.0, -1.5, 0.0, 1.5, 3.0)


def _is_earlier_demo(path: Path) -> bool:
    """Whether ``path`` holds the output of an earlier ``otresefa demo`` (safe to replace)."""
    manifest = path / "manifest.json"
    try:
        return json.loads(manifest.read_text()).get("title") == DEMO_TITLE
    except (OSError, ValueError, AttributeError):
        return False


def pick_seed(G, truncation_psi: float, first: int = DEMO_SEED, tries: int = DEMO_SEED_TRIES) -> int:
    """The first seed from ``first`` on whose image has every demo region.

    On the built-in model the regions are segmented parts of the image, and a sample of a
    generator can lack one (a face turned into hair, a mouth the segmenter does not see); the demo
    edits the first sample where all of them are found.

    Raises:
        ValueError: when none of the ``tries`` seeds has them all.
    """
    for seed in range(first, first + tries):
        w = w_from_seed(G, seed, truncation_psi)  # [w_dim]
        try:
            for region_name in DEMO_REGIONS:
                region_for(G, w, region_name)
        except ValueError:
            continue
        return seed
    raise ValueError(f"none of the seeds {first}-{first + tries - 1} shows every demo region "
                     f"({', '.join(DEMO_REGIONS)}); pass --seed to choose a sample")


def run_demo(
    out: str | os.PathLike = "otresefa-demo",
    checkpoint: str = "synthfaces",
    seed: int | None = None,
    truncation_psi: float = 0.7,
    quick: bool = False,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Run the demo into ``out`` and return its path.

    ``seed`` = None edits :func:`pick_seed`'s sample.  ``quick`` shortens OT-ReSeFa to 20
    iterations and the GIF to 9 frames (used by the tests).  An existing ``out`` is replaced only
    when ``overwrite`` or when it is an earlier demo's output.
    """
    started = time.perf_counter()
    out = Path(out)
    G = load_generator(checkpoint, device=device)
    seed_choice = "given"
    if seed is None:
        seed, seed_choice = pick_seed(G, truncation_psi), f"first seed >= {DEMO_SEED} showing every region"
    w = w_from_seed(G, seed, truncation_psi)  # [w_dim]
    J = jacobian(G, w, size=G.img_resolution, cache=True, progress=progress)  # [R, R, w_dim]
    ot_options = {"max_iter": 20} if quick else {}
    run_params = {"checkpoint": G.checkpoint_id, "seed": seed, "seed_choice": seed_choice,
                  "truncation_psi": truncation_psi,
                  "regions": list(DEMO_REGIONS), "methods": DEMO_METHODS, "alphas": list(DEMO_ALPHAS), "units": "region",
                  "quick": quick}
    notes: list[str] = []
    replace = overwrite or (out.exists() and _is_earlier_demo(out))
    with OutputFolder(out, overwrite=replace, title=DEMO_TITLE, run_params=run_params) as folder:
        for region_name in DEMO_REGIONS:
            region = region_for(G, w, region_name, J.shape[0])
            rows: dict[str, torch.Tensor] = {}
            files: dict[str, str] = {}
            for label, method in DEMO_METHODS.items():
                options = ot_options if method == "ot-resefa" else {}
                found = discover(J, region, method, num_directions=1, seed=0, generator=G,
                                 metadata={"seeds": [seed], "truncation_psi": truncation_psi, "space": "w"}, **options)
                found.save(folder.path_for(f"{region_name}/directions/{method}"))
                for suffix in (".npy", ".json"):
                    folder.add(f"{region_name}/directions/{method}{suffix}", f"{label} direction for the {region_name}",
                               {"method": method, "options": found.metadata["options"]}, region_name)
                rows[label], files[label] = found[0], method
            notes += add_comparison(folder, G, w, region, rows, files, DEMO_ALPHAS, None,
                                    title=f"seed {seed}, {region_name}", prefix=f"{region_name}/", progress=progress)
            swept = region_units(G, w, rows["OT-ReSeFa"], region)
            frames = sweep_frames(G, w, swept, max(DEMO_ALPHAS), 9 if quick else 25)
            save_gif(frames, folder.path_for(f"{region_name}/ot-resefa_sweep.gif"))
            folder.add(f"{region_name}/ot-resefa_sweep.gif",
                       f"OT-ReSeFa {region_name} edit, -{max(DEMO_ALPHAS):g} to +{max(DEMO_ALPHAS):g} region units",
                       {"max_alpha": max(DEMO_ALPHAS), "units": "region",
                        "alpha_per_unit": float(swept.scale[0])}, region_name)
        notes.append(f"finished in {time.perf_counter() - started:.1f} s")
        folder.run_params["notes"] = notes
    if progress:
        print_summary(out, folder, notes)
    return out
