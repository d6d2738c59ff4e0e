#!/usr/bin/env python
"""Discovery benchmark: every registered method on one real region problem, and OT-ReSeFa against
POT's Wasserstein discriminant analysis (``ot.dr.wda``) on exactly the same samples.

The region problem: ``A_F``, ``A_B`` (512 x 512) from the exact Jacobian of a StyleGAN2 generator
at seed 4's ``w`` and the ``mouth`` preset region (ReSeFa's box). The generator is, in order of
preference, the NVIDIA-reference fixture ``sg2_res32_skip`` (random weights, w_dim 512), the
package's built-in ``synthfaces`` model, or a randomly initialised w_dim-512 generator; the output
says which.

Timings are medians of ``--repeats`` runs (wall clock and process CPU time, one thread unless
``--threads``); OT-ReSeFa and POT are run alternately in the same process and their ratio is POT
time / OT-ReSeFa time. Both directions are scored by OT-ReSeFa's ``objective`` (float64, eq. 13)
and by POT's own definition (its float32 ``sinkhorn`` with ``k`` iterations and squared projected
distances, between / within, i.e. the inverse of what ``wda`` minimises).

The Markdown table is printed and written, with machine information, under the ``## Discovery``
heading of ``benchmarks/RESULTS.md`` (only that section is replaced).

    python benchmarks/discovery.py               # about 5 minutes on 2 cores
    python benchmarks/discovery.py --repeats 1 --wda-repeats 1
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURE = Path(os.environ.get("OTRESEFA_FIXTURES", HERE.parents[1] / "shared" / "fixtures")) / \
    "stylegan2_reference" / "sg2_res32_skip"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", choices=("auto", "fixture", "synthfaces", "random"), default="auto",
                        help="generator to differentiate (auto: fixture, else synthfaces, else random)")
    parser.add_argument("--seed", type=int, default=4, help="image seed whose w is used (default 4)")
    parser.add_argument("--region", default="mouth", help="region preset or spec (default mouth)")
    parser.add_argument("--size", type=int, default=256, help="Jacobian resolution cap (default 256)")
    parser.add_argument("--lam", type=float, default=2.0, help="OT-ReSeFa lam; POT reg = 1/lam (default 2)")
    parser.add_argument("--sinkhorn-iters", type=int, default=10, help="k (default 10)")
    parser.add_argument("--max-iter", type=int, default=100, help="iterations of both optimisers (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per registered method (default 3)")
    parser.add_argument("--wda-repeats", type=int, default=3,
                        help="alternating OT-ReSeFa / POT runs (default 3; POT takes about a minute each)")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md", help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update --output")
    return parser.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # before numpy / torch load their BLAS
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(ARGS.threads)

import contextlib  # noqa: E402
import datetime  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import machine_info, write_section  # noqa: E402  (benchmarks/common.py)
from otresefa.grams import region_grams  # noqa: E402
from otresefa.jacobian import jacobian  # noqa: E402
from otresefa.latents import w_from_seed  # noqa: E402
from otresefa.methods import RegionProblem, available_methods, run_method  # noqa: E402
from otresefa.methods.ot_resefa import objective, solve  # noqa: E402
from otresefa.models import Generator  # noqa: E402
from otresefa.regions import resolve_region  # noqa: E402


def limit_threads(threads: int):
    """torch threads, and numpy's BLAS threads through threadpoolctl when it is installed."""
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(threads)


def load_generator(choice: str) -> tuple[Generator, str]:
    if choice in ("auto", "fixture") and (FIXTURE / "state_dict.pt").is_file():
        G = Generator(**json.loads((FIXTURE / "init_kwargs.json").read_text()))
        G.load_state_dict(torch.load(FIXTURE / "state_dict.pt", weights_only=True), strict=True)
        return G.eval(), f"NVIDIA-reference fixture `{FIXTURE.name}` (random weights, {FIXTURE})"
    if choice == "fixture":
        raise SystemExit(f"fixture not found: {FIXTURE}")
    if choice in ("auto", "synthfaces"):
        try:
            from otresefa.checkpoints import load_generator as load_checkpoint
            return load_checkpoint("synthfaces"), "built-in `synthfaces` model"
        except (ImportError, FileNotFoundError, ValueError) as error:
            if choice == "synthfaces":
                raise SystemExit(f"cannot load the built-in synthfaces model: {error}")
    torch.manual_seed(0)
    kwargs = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=32, img_channels=3,
                  mapping_kwargs=dict(num_layers=8),
                  synthesis_kwargs=dict(channel_base=2048, channel_max=128, architecture="skip"))
    return Generator(**kwargs).eval(), "randomly initialised generator (w_dim 512, 32x32, seed 0)"


SPEED_TARGET = 10.0
"""Issue 3's target for POT time / OT-ReSeFa time."""


def timed(function):
    """(result, wall seconds, process CPU seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def pot_objective(direction: np.ndarray, samples_fg: np.ndarray, samples_bg: np.ndarray, lam: float,
                  sinkhorn_iter: int) -> float:
    """POT's WDA criterion, inverted (between / within), at a unit direction [d]: float32 data,
    POT's own ``k``-iteration Sinkhorn and squared projected distances, as inside ``ot.dr.wda``."""
    import ot.dr

    classes = [samples_fg.astype(np.float32), samples_bg.astype(np.float32)]
    projected = [c @ direction.astype(np.float32)[:, None] for c in classes]
    weights = [np.ones(c.shape[0], dtype=np.float32) / c.shape[0] for c in classes]
    terms = {}
    for i in range(2):
        for j in range(i, 2):
            cost = ot.dr.dist(projected[i], projected[j])
            plan = ot.dr.sinkhorn(weights[i], weights[j], cost, 1 / lam, sinkhorn_iter)
            terms[i, j] = float(np.sum(plan * cost))
    return terms[0, 1] / (terms[0, 0] + terms[1, 1])


def fmt(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def main(args: argparse.Namespace) -> str:
    limiter = limit_threads(args.threads)  # noqa: F841 (kept alive for the whole run)
    info = machine_info(args.threads)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# {started}; " + "; ".join(f"{k}: {v}" for k, v in info.items()), flush=True)

    G, source = load_generator(args.generator)
    print(f"generator: {source}", flush=True)
    w = w_from_seed(G, args.seed)
    J, jac_wall, _ = timed(lambda: jacobian(G, w, size=args.size))
    region = resolve_region(args.region, J.shape[0])
    gram_fg, gram_bg = region_grams(J, region.mask)
    print(f"Jacobian {list(J.shape)} in {jac_wall:.1f} s; region '{args.region}' = "
          f"{int(region.mask.sum())} of {region.mask.numel()} pixels", flush=True)
    problem = RegionProblem(gram_fg, gram_bg, generator=G)

    # -- every registered method through the registry --------------------------------------------
    method_rows = []
    for name in available_methods():
        walls, cpus, result = [], [], None
        for _ in range(args.repeats):
            result, wall, cpu = timed(lambda: run_method(name, problem, num_directions=1, seed=0))
            walls.append(wall)
            cpus.append(cpu)
        score = float(result.scores[0])
        ot_score = float(objective(result.vectors[0].double(), problem.gram_fg, problem.gram_bg,
                                   lam=args.lam, sinkhorn_iter=args.sinkhorn_iter, normalize="unit_rows"))
        method_rows.append((name, statistics.median(walls), statistics.median(cpus), score, ot_score))
        print(f"{name}: wall {statistics.median(walls):.3f} s, cpu {statistics.median(cpus):.3f} s, "
              f"score {score:.6g}, O(n) {ot_score:.6f}", flush=True)

    # -- OT-ReSeFa vs POT's WDA on the same (rescaled) samples ------------------------------------
    import ot.dr

    scale = float(torch.cat([problem.gram_fg, problem.gram_bg]).norm(dim=1).mean())
    samples_fg, samples_bg = problem.gram_fg / scale, problem.gram_bg / scale  # unit mean row norm
    data = torch.cat([samples_fg, samples_bg]).numpy()
    labels = np.r_[np.zeros(samples_fg.shape[0]), np.ones(samples_bg.shape[0])]

    def run_ours():
        return solve(samples_fg, samples_bg, lam=args.lam, sinkhorn_iter=args.sinkhorn_iter,
                     max_iter=args.max_iter, normalize="none", seed=0)

    def run_pot():
        np.random.seed(0)  # pymanopt's start
        log = io.StringIO()
        with contextlib.redirect_stdout(log):  # verbose=1: pymanopt reports its stopping iteration
            projection, _ = ot.dr.wda(data.copy(), labels, p=1, reg=1 / args.lam, k=args.sinkhorn_iter,
                                      maxiter=args.max_iter, verbose=1)
        direction = torch.as_tensor(projection[:, 0], dtype=torch.float64)
        stop = re.search(r"Terminated - ([^\n]*?)(?:,| after) [\d.]+ seconds", log.getvalue())
        return direction / direction.norm(), (stop.group(1) if stop else "stopping reason not reported")

    times = {"ours": ([], []), "pot": ([], [])}
    ours = pot = None
    for repeat in range(args.wda_repeats):
        ours, wall, cpu = timed(run_ours)
        times["ours"][0].append(wall)
        times["ours"][1].append(cpu)
        pot, wall, cpu = timed(run_pot)
        times["pot"][0].append(wall)
        times["pot"][1].append(cpu)
        print(f"repeat {repeat}: OT-ReSeFa wall {times['ours'][0][-1]:.2f} s cpu {times['ours'][1][-1]:.2f} s; "
              f"POT wall {times['pot'][0][-1]:.2f} s cpu {times['pot'][1][-1]:.2f} s", flush=True)
    ours_direction = ours.directions[0]
    pot, pot_stop = pot
    scores = {}
    for label, direction in (("OT-ReSeFa", ours_direction), ("POT ot.dr.wda", pot)):
        by_ours = float(objective(direction, samples_fg, samples_bg, lam=args.lam,
                                  sinkhorn_iter=args.sinkhorn_iter, normalize="none"))
        by_pot = pot_objective(direction.numpy(), samples_fg.numpy(), samples_bg.numpy(), args.lam,
                               args.sinkhorn_iter)
        scores[label] = (by_ours, by_pot)
    cosine = abs(float(ours_direction @ pot))
    medians = {key: (statistics.median(walls), statistics.median(cpus)) for key, (walls, cpus) in times.items()}
    wall_ratios = [p / o for p, o in zip(times["pot"][0], times["ours"][0])]
    cpu_ratios = [p / o for p, o in zip(times["pot"][1], times["ours"][1])]

    # -- report --------------------------------------------------------------------------------
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, Path.cwd())] + sys.argv[1:])
    lines = [
        "## Discovery",
        "",
        f"Command: `{command}`  ",
        f"Date: {started}  ",
        *(f"{key}: {value}  " for key, value in info.items()),
        f"Generator: {source}; Jacobian {list(J.shape)} at seed {args.seed}'s w; region `{args.region}` "
        f"({int(region.mask.sum())} of {region.mask.numel()} pixels); `A_F`, `A_B` {list(gram_fg.shape)}.",
        "",
        f"### Registered methods (`run_method`, one direction, median of {args.repeats})",
        "",
        "| method | wall s | CPU s | own score | O(n), eq. 13, unit_rows |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(f"| `{name}` | {fmt(wall)} | {fmt(cpu)} | {score:.6g} | {ot_score:.6f} |"
          for name, wall, cpu, score, ot_score in method_rows),
        "",
        f"### OT-ReSeFa vs POT WDA (same samples: `A_F`, `A_B` / mean row norm {scale:.4g}; lam = {args.lam:g}, "
        f"POT reg = {1 / args.lam:g}, k = {args.sinkhorn_iter}, {args.max_iter} iterations; "
        f"alternating runs, median of {args.wda_repeats})",
        "",
        "| solver | wall s | CPU s | O by OT-ReSeFa's `objective` (float64) | O by POT's definition (float32) |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| OT-ReSeFa `solve(normalize=\"none\")` ({len(ours.history[0]) - 1} iterations, tol 1e-9) | "
        f"{fmt(medians['ours'][0])} | {fmt(medians['ours'][1])} | {scores['OT-ReSeFa'][0]:.9f} | "
        f"{scores['OT-ReSeFa'][1]:.7f} |",
        f"| POT `ot.dr.wda(X, y, p=1, reg=1/lam, k, maxiter)` ({pot_stop}) | {fmt(medians['pot'][0])} | "
        f"{fmt(medians['pot'][1])} | {scores['POT ot.dr.wda'][0]:.9f} | {scores['POT ot.dr.wda'][1]:.7f} |",
        "",
        f"Speed ratio POT / OT-ReSeFa (per alternating pair): wall {', '.join(f'{r:.1f}' for r in wall_ratios)} "
        f"(median {statistics.median(wall_ratios):.1f}x); CPU {', '.join(f'{r:.1f}' for r in cpu_ratios)} "
        f"(median {statistics.median(cpu_ratios):.1f}x). |cos| between the two directions: {cosine:.6f}. "
        f"OT-ReSeFa's objective minus POT's: {scores['OT-ReSeFa'][0] - scores['POT ot.dr.wda'][0]:+.3e} "
        f"(ours), {scores['OT-ReSeFa'][1] - scores['POT ot.dr.wda'][1]:+.3e} (POT's).",
        "",
        f"Target (issue 3): >= {SPEED_TARGET:g}x faster than POT at an objective >= POT's: "
        f"{'met' if statistics.median(cpu_ratios) >= SPEED_TARGET else 'missed'} on speed "
        f"(median CPU ratio {statistics.median(cpu_ratios):.1f}x), "
        f"{'met' if scores['OT-ReSeFa'][0] >= scores['POT ot.dr.wda'][0] - 1e-9 * abs(scores['POT ot.dr.wda'][0]) else 'missed'}"
        " on the objective (equal to 1e-9 relative counts as met).",
        "",
    ]
    report = "\n".join(lines)
    print()
    print(report)
    if not args.no_write:
        write_section(args.output, "## Discovery", report)
        print(f"written to {args.output}")
    return report


if __name__ == "__main__":
    main(ARGS)
