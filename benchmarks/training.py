#!/usr/bin/env python
"""Training throughput: today's loop (the baseline) and the new one, alternately in one process.

Both train the shipped configuration of the built-in model (``otresefa train --gamma 1.0
--no-noise``: 64x64, z/w 512, 2 mapping layers, channel_base 2048, channel_max 128, no noise,
batch 16, R1 gamma 1 every 16 steps, path length every 4, style mixing 0.9, EMA 5 kimg) on the face
renderer, each with its own ``Trainer`` and data stream.  They differ only in the speed options
(``otresefa.training.loop.SPEED_FIELDS``): the baseline switches them all off (NCHW, eager,
PyTorch's default Adam, rendering in the loop), the new loop uses ``TrainingConfig``'s defaults
unless ``--new`` overrides them.  One change is not an option because it is better everywhere: the
FIR resampling filter (``otresefa.models.ops._depthwise_filter``) filters only the pixels a
down-sampling keeps and has a cheap double backward; during the baseline's turns this script puts
today's version (``todays_depthwise_filter``) back, so that the baseline is today's loop.  ``--variant NAME=JSON`` adds variants (overrides of the new loop's
configuration, e.g. a larger batch).

Every variant warms up for ``--warmup`` steps (``torch.compile`` compiles there; its time is
reported), then the variants take turns running ``--steps`` steps, for ``--rounds`` rounds.
``--steps`` must be a multiple of 16 so that every turn has the same mix of R1 (every 16th) and
path-length (every 4th) steps.  Reported: images/s of each variant (all its images over all its
wall time), the per-round ratio to the baseline and its median, CPU seconds per image, and the time
per step of each phase (renderer wait, Gmain/Greg/Dmain/Dreg forward+backward, optimiser, EMA, and
the rest: Python and the loop).  ``--profile`` also prints the busiest operators of each variant
(``torch.profiler``, one extra turn).

The Markdown report is printed and written under the ``## Training throughput`` heading of
``benchmarks/RESULTS.md`` (only that section is replaced), the raw numbers to ``--json``.

    nice -n 10 python benchmarks/training.py                  # about 10 minutes on 2 idle cores
    python benchmarks/training.py --rounds 2 --no-write
    python benchmarks/training.py --new '{"compile": true}' --variant 'batch32={"batch_size": 32}'
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import contextlib
from unittest import mock

import torch
import torch.nn.functional as F

from common import machine_info, write_section  # benchmarks/common.py
from otresefa.models import ops
from otresefa.training.loop import SPEED_FIELDS, SeededBatchStream, Trainer, TrainingConfig, synthfaces_sampler

HERE = Path(__file__).resolve().parent
HEADING = "## Training throughput"
SHIPPED = dict(resolution=64, z_dim=512, w_dim=512, mapping_layers=2, channel_base=2048, channel_max=128,
               use_noise=False, batch_size=16, r1_gamma=1.0, ema_kimg=5.0)
"""The built-in model's run: ``otresefa train --out runs/sf-nn --kimg 1000 --gamma 1.0 --no-noise``."""
BASELINE_SPEED = dict(channels_last=False, compile=False, fused_adam=False, prefetch=0)
"""Today's loop: every speed option off."""
PHASE_ORDER = ("data", "Gmain", "Greg", "Dmain", "Dreg", "optimizer", "ema", "other")
TARGET = 3.0
"""Issue 15's target for new / baseline images per second."""


def todays_depthwise_filter(x: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """The FIR filter before issue 15: every pixel filtered, then decimated; PyTorch's grouped-convolution autograd."""
    return F.conv2d(x, kernel, groups=kernel.shape[0])[:, :, ::stride, ::stride]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=32, help="steps per turn, a multiple of 16 (default 32)")
    parser.add_argument("--rounds", type=int, default=4, help="turns of each variant (default 4)")
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps of each variant first (default 4)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2, as `otresefa train`)")
    parser.add_argument("--new", type=json.loads, default={}, help="JSON overrides of the new loop's configuration")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                        help="an extra variant: overrides of the new loop's configuration (repeatable)")
    parser.add_argument("--profile", action="store_true", help="print the busiest operators of each variant")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md", help="Markdown file to update")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update --output")
    args = parser.parse_args(argv)
    if args.steps <= 0 or args.steps % 16:
        parser.error("--steps must be a positive multiple of 16")
    return args


def variant_configs(args: argparse.Namespace) -> dict[str, TrainingConfig]:
    new = {**SHIPPED, **args.new}
    configs = {"baseline": TrainingConfig(**SHIPPED, **BASELINE_SPEED), "new": TrainingConfig(**new)}
    for spec in args.variant:
        name, _, overrides = spec.partition("=")
        if not name or name in configs:
            raise SystemExit(f"--variant needs a new NAME=JSON, got {spec!r}")
        configs[name] = TrainingConfig(**{**new, **json.loads(overrides)})
    return configs


class Runner:
    """One variant: its trainer and data stream, and what its turns measured."""

    def __init__(self, config: TrainingConfig, todays_ops: bool = False):
        self.config = config
        self.todays_ops = todays_ops
        self.trainer = Trainer(config, "cpu")
        self.stream = SeededBatchStream(synthfaces_sampler(config.resolution), config.seed, prefetch=config.prefetch)
        self.images, self.wall, self.cpu, self.turns = 0, 0.0, 0.0, []
        self.timings: dict[str, float] = {}

    def run(self, steps: int, timings: dict[str, float] | None = None) -> float:
        """Train ``steps`` steps; returns ``(wall seconds, process CPU seconds)``."""
        patch = mock.patch.object(ops, "_depthwise_filter", todays_depthwise_filter) if self.todays_ops else None
        with patch or contextlib.nullcontext():
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                start = time.perf_counter()
                real = self.stream.next_batch(self.config.batch_size)
                if timings is not None:
                    timings["data"] = timings.get("data", 0.0) + time.perf_counter() - start
                self.trainer.step(real, timings)
            return time.perf_counter() - wall, time.process_time() - cpu

    def turn(self, steps: int) -> None:
        before = sum(self.timings.values())
        wall, cpu = self.run(steps, self.timings)
        self.timings["other"] = self.timings.get("other", 0.0) + wall - (sum(self.timings.values()) - before)
        self.images += steps * self.config.batch_size
        self.wall += wall
        self.cpu += cpu
        self.turns.append(steps * self.config.batch_size / wall)


def speed_settings(config: TrainingConfig) -> str:
    return ", ".join(f"{name}={getattr(config, name)}" for name in SPEED_FIELDS)


def main(args: argparse.Namespace) -> str:
    torch.set_num_threads(args.threads)
    info = machine_info(args.threads)
    started = datetime.datetime.now(datetime.timezone.utc)
    configs = variant_configs(args)
    runners, warmup_s = {}, {}
    for name, config in configs.items():
        runners[name] = Runner(config, todays_ops=(name == "baseline"))
        start = time.perf_counter()
        runners[name].run(args.warmup)
        warmup_s[name] = time.perf_counter() - start
        print(f"{name}: warm-up {args.warmup} steps in {warmup_s[name]:.1f} s", flush=True)
    for round_index in range(args.rounds):
        for name, runner in runners.items():
            runner.turn(args.steps)
            print(f"round {round_index + 1}/{args.rounds} {name}: {runner.turns[-1]:.2f} images/s", flush=True)
    profiles = {}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name, runner in runners.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                runner.run(16)
            profiles[name] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
            print(f"\n{name}: busiest operators over 16 steps\n{profiles[name]}", flush=True)

    base = runners["baseline"]
    lines = [
        HEADING, "",
        f"Command: `python benchmarks/training.py {shlex.join(sys.argv[1:])}`  ",
        f"Date: {started:%Y-%m-%d %H:%M} UTC  ",
        *(f"{key}: {value}  " for key, value in info.items()),
        f"Configuration: the shipped run (`otresefa train --gamma 1.0 --no-noise`: {json.dumps(SHIPPED)}), "
        f"{args.warmup} warm-up steps, then {args.rounds} alternating turns of {args.steps} steps per variant.",
        "",
        "| variant | speed options | images/s | ratio to baseline (median of turns) | per-turn images/s | CPU s per image | warm-up s |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    results = {}
    for name, runner in runners.items():
        ratios = [t / b for t, b in zip(runner.turns, base.turns)]
        results[name] = dict(
            config=runner.config.to_dict(), images_per_s=runner.images / runner.wall, turns=runner.turns,
            ratio=statistics.median(ratios), ratios=ratios, cpu_s_per_image=runner.cpu / runner.images,
            warmup_s=warmup_s[name], seconds_per_step={k: v / (runner.images / runner.config.batch_size)
                                                       for k, v in runner.timings.items()},
        )
        r = results[name]
        extra = "" if runner.config.batch_size == base.config.batch_size else f", batch {runner.config.batch_size}"
        lines.append(
            f"| {name} | {speed_settings(runner.config)}{extra} | {r['images_per_s']:.2f} | {r['ratio']:.2f} "
            f"({', '.join(f'{x:.2f}' for x in ratios)}) | {', '.join(f'{x:.1f}' for x in runner.turns)} "
            f"| {r['cpu_s_per_image']:.3f} | {r['warmup_s']:.0f} |"
        )
    lines += ["", "Time per step by phase, ms (phases that run every k-th step are averaged over all steps):", "",
              "| phase | " + " | ".join(runners) + " |", "| --- |" + " ---: |" * len(runners)]
    for phase in PHASE_ORDER:
        cells = [f"{results[name]['seconds_per_step'].get(phase, 0.0) * 1e3:.0f}" for name in runners]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    lines.append("| **step** | " + " | ".join(
        f"**{runner.wall / (runner.images / runner.config.batch_size) * 1e3:.0f}**" for runner in runners.values()) + " |")
    ratio = results["new"]["ratio"]
    lines += ["", f"Target (issue 15): new / baseline images/s >= {TARGET:g} at the same batch: "
              f"{'met' if ratio >= TARGET else 'missed'} (median ratio {ratio:.2f}).", ""]
    report = "\n".join(lines)
    print("\n" + report)
    if args.json is not None:
        args.json.write_text(json.dumps(dict(date=f"{started:%Y-%m-%d %H:%M} UTC", machine=info, argv=sys.argv[1:],
                                             variants=results, profiles=profiles), indent=2) + "\n")
    if not args.no_write:
        write_section(args.output, HEADING, report)
        print(f"written to {args.output}")
    return report


if __name__ == "__main__":
    main(parse_args())
