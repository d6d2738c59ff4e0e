"""StyleGAN2 training loop: alternating G/D updates, lazy regularisation, EMA generator, snapshots.

Follows the training procedure of Karras et al. (CVPR 2020; NeurIPS 2020 "Training GANs with Limited
Data", Appendix B/D) without augmentation: Adam (lr 0.0025, betas (0, 0.99)), minibatch-wise
alternation of a G step and a D step, path-length regularisation every 4 and R1 every 16 minibatches,
an exponential moving average of G's weights with a half-life of ``ema_kimg`` thousand images.

Resumability: every random draw of the loop comes from the global torch RNG, seeded once at the start
and saved in the checkpoint; training data come from a stream in which minibatch ``i`` is rendered
from ``batch_seed(seed, i)`` (optionally ahead of time, in a background thread).  Snapshots (sample
grids, metrics) run inside ``torch.random.fork_rng`` so they never consume the training stream's
randomness.  Resuming from ``checkpoint.pt`` therefore continues bit-for-bit as if training had not
been interrupted (same device, thread count and speed options).  Each snapshot first moves the
previous ``checkpoint.pt`` to ``checkpoint-prev.pt``, so a damaged checkpoint never costs more than
one snapshot interval.

Speed options (``channels_last``, ``compile``, ``fused_adam``, ``prefetch``) change how the same
computation runs, not what it computes (to float rounding); they may change when resuming.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import os
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from otresefa.checkpoints.errors import CheckpointError
from otresefa.models.discriminator import Discriminator
from otresefa.models.generator import Generator
from otresefa.training.loss import LossSettings, StyleGAN2Loss, lazy_regularization

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_CHECKPOINT_NAME = "checkpoint-prev.pt"
LOG_NAME = "log.jsonl"
CHECKPOINT_VERSION = 1
CHECKPOINT_KEYS = ("config", "G_init_kwargs", "G", "D", "G_ema", "opt_G", "opt_D", "loss", "cur_nimg", "batch_idx",
                   "elapsed_s", "rng")

# Fields that only say where, how long, how often to report, or how fast to compute the same numbers:
# they may change when resuming.
SPEED_FIELDS = ("channels_last", "compile", "fused_adam", "prefetch")
PRECISIONS = ("float32", "bfloat16")
RUN_ONLY_FIELDS = ("out_dir", "total_kimg", "snapshot_kimg", "grid_size", "threads", "device") + SPEED_FIELDS


@dataclass
class TrainingConfig:
    """Everything that defines a training run (saved in the checkpoint, checked on resume)."""

    out_dir: str = "runs/stylegan2"
    # Networks.
    resolution: int = 64
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    channel_base: int = 4096
    channel_max: int = 256
    g_architecture: str = "skip"  # StyleGAN2 config-f: skip generator, resnet discriminator
    use_noise: bool = True  # per-pixel noise inputs; a deterministic renderer has no stochastic detail for them
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 1
    conv_clamp: float | None = None
    # "bfloat16": the main (not the regularisation) passes under bfloat16 autocast; changes the numbers.
    precision: str = "float32"
    # Optimisation.
    batch_size: int = 32
    lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float | None = None  # None: 0.0002 * resolution**2 / batch_size (Karras et al. 2020b, App. D)
    r1_interval: int = 16
    style_mixing_prob: float = 0.9
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    pl_interval: int = 4
    ema_kimg: float = 10.0  # half-life of the G_ema average, in thousands of images
    ema_rampup: float | None = 0.05  # half-life at most ema_rampup * images seen so far (None: off)
    # Length and reporting.
    total_kimg: float = 100.0
    snapshot_kimg: float = 4.0
    grid_size: tuple[int, int] = (8, 4)  # sample grid (columns, rows)
    seed: int = 0
    threads: int | None = 2  # torch.set_num_threads during training; None: leave as is
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    # Speed: how the same computation runs (see benchmarks/RESULTS.md, "Training throughput").
    channels_last: bool = True  # NHWC activations and weights: oneDNN's (and cuDNN's) native convolution layout
    compile: bool = False  # torch.compile G's synthesis and D for the passes that differentiate once
    fused_adam: bool = True  # one fused kernel per parameter instead of ~10 small ops
    prefetch: int = 2  # minibatches rendered ahead in a background thread (0: render in the loop)

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        self.grid_size = tuple(int(g) for g in self.grid_size)
        res = self.resolution
        if res < 8 or res & (res - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {res}")
        group = min(self.mbstd_group_size or self.batch_size, self.batch_size)
        if self.batch_size % group:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of mbstd_group_size {self.mbstd_group_size}"
            )
        if self.batch_size // self.pl_batch_shrink < 1:
            raise ValueError("batch_size // pl_batch_shrink must be at least 1")
        if self.snapshot_kimg <= 0 or self.total_kimg < 0:
            raise ValueError("snapshot_kimg must be positive and total_kimg non-negative")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {self.prefetch}")

    @property
    def effective_r1_gamma(self) -> float:
        if self.r1_gamma is not None:
            return float(self.r1_gamma)
        return 0.0002 * self.resolution**2 / self.batch_size

    def generator_kwargs(self) -> dict:
        return dict(
            z_dim=self.z_dim, c_dim=0, w_dim=self.w_dim, img_resolution=self.resolution, img_channels=3,
            mapping_kwargs=dict(num_layers=self.mapping_layers, lr_multiplier=self.mapping_lr_multiplier),
            synthesis_kwargs=dict(
                channel_base=self.channel_base, channel_max=self.channel_max, architecture=self.g_architecture,
                conv_clamp=self.conv_clamp, use_noise=self.use_noise,
            ),
        )

    def discriminator_kwargs(self) -> dict:
        return dict(
            c_dim=0, img_resolution=self.resolution, img_channels=3, channel_base=self.channel_base,
            channel_max=self.channel_max, mbstd_group_size=self.mbstd_group_size,
            mbstd_num_channels=self.mbstd_num_channels, conv_clamp=self.conv_clamp,
        )

    def loss_settings(self) -> LossSettings:
        return LossSettings(
            r1_gamma=self.effective_r1_gamma, r1_interval=self.r1_interval, style_mixing_prob=self.style_mixing_prob,
            pl_weight=self.pl_weight, pl_decay=self.pl_decay, pl_batch_shrink=self.pl_batch_shrink,
            pl_interval=self.pl_interval,
        )

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "TrainingConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainingConfig fields: {unknown}")
        return cls(**data)


def config_differences(saved: dict, current: TrainingConfig, ignore: tuple[str, ...] = RUN_ONLY_FIELDS) -> dict:
    """``{field: (saved, current)}`` for the fields that differ, except those in ``ignore``."""
    now = current.to_dict()
    saved = _plain(saved)
    return {
        key: (saved.get(key, "<missing>"), now.get(key, "<missing>"))
        for key in sorted(set(saved) | set(now))
        if key not in ignore and saved.get(key, "<missing>") != now.get(key, "<missing>")
    }


class ConfigMismatchError(ValueError):
    """Raised when resuming with a configuration that differs from the checkpoint's."""


# ---------------------------------------------------------------------------------------------------
# Data streams
# ---------------------------------------------------------------------------------------------------
SeededSampler = Callable[[int, int], torch.Tensor]  # (batch_size, seed) -> [N, 3, R, R] in [-1, 1]


class BatchStream(Protocol):
    def next_batch(self, batch_size: int) -> torch.Tensor: ...


def batch_seed(run_seed: int, index: int, salt: str = "data") -> int:
    """A stable 63-bit seed for minibatch ``index`` of the run seeded ``run_seed``."""
    digest = hashlib.blake2b(f"{salt}:{run_seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class SeededBatchStream:
    """``next_batch(batch_size)`` returns ``sampler(batch_size, batch_seed(seed, i))`` for i = 0, 1, ...

    The only state is the index ``i`` of the next minibatch (see :meth:`state_dict`), so a resumed
    stream reproduces the same minibatches.  With ``prefetch > 0`` a background thread renders the
    next ``prefetch`` minibatches from their seeds while the caller trains on the current one; the
    minibatches, and the state, are the same as without.  :meth:`close` stops the thread.
    """

    def __init__(self, sampler: SeededSampler, seed: int, index: int = 0, prefetch: int = 0):
        self.sampler = sampler
        self.seed = seed
        self.index = index
        self.prefetch = prefetch
        self._pending: deque[tuple[int, int, Future]] = deque()  # (index, batch_size, rendering)
        self._worker: ThreadPoolExecutor | None = None

    def _render(self, index: int, batch_size: int) -> torch.Tensor:
        return self.sampler(batch_size, batch_seed(self.seed, index))

    def _fill(self, batch_size: int) -> None:
        """Keep ``prefetch`` minibatches from ``self.index`` on in flight."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="otresefa-prefetch")
        while len(self._pending) < self.prefetch:
            index = self.index + len(self._pending)
            self._pending.append((index, batch_size, self._worker.submit(self._render, index, batch_size)))

    def next_batch(self, batch_size: int) -> torch.Tensor:
        if not self.prefetch:
            batch = self._render(self.index, batch_size)
        else:
            if self._pending and self._pending[0][:2] != (self.index, batch_size):
                self._cancel()  # repositioned, or another batch size
            self._fill(batch_size)
            batch = self._pending.popleft()[2].result()
        self.index += 1
        if self.prefetch:
            self._fill(batch_size)
        return batch

    def _cancel(self) -> None:
        for _, _, future in self._pending:
            future.cancel()
        self._pending.clear()

    def close(self) -> None:
        """Stop the prefetching thread (it restarts on the next call)."""
        self._cancel()
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None

    def state_dict(self) -> dict:
        return {"index": self.index, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"data stream seed mismatch: checkpoint {state['seed']}, current {self.seed}")
        self._cancel()
        self.index = int(state["index"])


def synthfaces_sampler(resolution: int) -> SeededSampler:
    """The procedural face renderer as a seeded sampler (``otresefa.synthfaces``)."""
    from otresefa import synthfaces

    if not (hasattr(synthfaces, "render") and hasattr(synthfaces, "sample_attributes")):
        raise RuntimeError(
            "otresefa.synthfaces.render / sample_attributes are not available yet; pass data_source= to train()"
        )

    def sample(batch_size: int, seed: int) -> torch.Tensor:
        attrs = synthfaces.sample_attributes(batch_size, seed)
        return synthfaces.render(attrs, size=resolution).images

    return sample


def blob_sampler(resolution: int, num_blobs: int = 3) -> SeededSampler:
    """A trivial synthetic data set: soft coloured discs on a coloured background, in [-1, 1]."""

    def sample(batch_size: int, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        n, k = batch_size, num_blobs
        coords = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution  # [R]
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # [R, R]
        img = (torch.rand([n, 3, 1, 1], generator=gen) * 2 - 1).expand(n, 3, resolution, resolution).clone()
        centres = torch.rand([n, k, 2], generator=gen) * 0.6 + 0.2  # [N, K, 2]
        radii = torch.rand([n, k], generator=gen) * 0.15 + 0.1  # [N, K]
        colours = torch.rand([n, k, 3], generator=gen) * 2 - 1  # [N, K, 3]
        for j in range(k):
            dist = ((xx - centres[:, j, 0, None, None]) ** 2 + (yy - centres[:, j, 1, None, None]) ** 2).sqrt()
            alpha = torch.sigmoid((radii[:, j, None, None] - dist) * resolution)[:, None]  # [N, 1, R, R]
            img = img * (1 - alpha) + colours[:, j, :, None, None] * alpha
        return img

    return sample


def _as_stream(data_source: Any, resolution: int, seed: int, prefetch: int = 0) -> tuple[Any, SeededSampler | None]:
    """``(stream, sampler)``: a stream with ``next_batch`` and, when known, the seeded sampler
    (seeded samplers are streamed by a :class:`SeededBatchStream` that prefetches ``prefetch`` minibatches)."""
    if data_source is None:
        sampler = synthfaces_sampler(resolution)
        return SeededBatchStream(sampler, seed, prefetch=prefetch), sampler
    if hasattr(data_source, "next_batch"):
        return data_source, None
    if not callable(data_source):
        raise TypeError("data_source must be a seeded sampler (batch_size, seed) -> images or have next_batch()")
    try:
        params = [
            p for p in inspect.signature(data_source).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
        seeded = len(params) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)
    except (TypeError, ValueError):
        seeded = True
    if seeded:
        return SeededBatchStream(data_source, seed, prefetch=prefetch), data_source
    return _CallableStream(data_source), None


class _CallableStream:
    """Wraps a plain ``next_batch(batch_size)`` callable (no resumable state)."""

    def __init__(self, fn: Callable[[int], torch.Tensor]):
        self.next_batch = fn


# ---------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------
MetricsHook = Callable[[Generator, float], dict]


class TrainingCheckpointError(CheckpointError):
    """A training checkpoint cannot be used: unreadable (corrupt, half-written) or not the loop's."""


class Trainer:
    """The networks, optimisers and loss of a run, and one training step (the loop's body).

    :func:`train` drives it between snapshots; ``benchmarks/training.py`` times it.  The constructor
    seeds the global torch RNG with ``config.seed`` and initialises G, D and ``G_ema`` from it.
    """

    def __init__(self, config: TrainingConfig, device: torch.device | str = "cpu"):
        self.config = config
        self.device = torch.device(device)
        torch.manual_seed(config.seed)
        self.G = Generator(**config.generator_kwargs()).to(self.device).train()
        self.D = Discriminator(**config.discriminator_kwargs()).to(self.device).train()
        if config.channels_last:
            # Convolutions then run in oneDNN's / cuDNN's native layout instead of reordering their
            # inputs and outputs at every call; activations inherit the layout from the weights.
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        main_dtype = None if config.precision == "float32" else getattr(torch, config.precision)
        self.loss = StyleGAN2Loss(self.G, self.D, config.loss_settings(), compile=config.compile, main_dtype=main_dtype)
        pl_interval = config.pl_interval if config.pl_weight else None
        r1_interval = config.r1_interval if config.effective_r1_gamma else None
        g_lr, g_betas = lazy_regularization(config.lr, config.betas, pl_interval)
        d_lr, d_betas = lazy_regularization(config.lr, config.betas, r1_interval)
        self._adam_impl = {"fused": True if config.fused_adam else None}  # None: PyTorch's default kernels
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=g_lr, betas=g_betas, eps=1e-8, **self._adam_impl)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=d_lr, betas=d_betas, eps=1e-8, **self._adam_impl)
        self.phases = [(phase, interval, self.G, self.opt_G) for phase, interval in self.loss.g_phases()]
        self.phases += [(phase, interval, self.D, self.opt_D) for phase, interval in self.loss.d_phases()]
        self.cur_nimg = 0
        self.batch_idx = 0

    def step(self, real: torch.Tensor, timings: dict[str, float] | None = None) -> dict[str, list[float]]:
        """Train on one minibatch ``real [batch, 3, R, R]``: the G phase(s), then the D phase(s), then the EMA.

        Returns each phase's statistics as ``{name: [value]}``.  ``timings``, when given, receives the
        seconds spent per phase (``"Gmain"``, ... : forward and backward), in ``"optimizer"`` and in ``"ema"``.
        """
        config = self.config
        stats: dict[str, list[float]] = {}
        clock = _Clock(timings, self.device)
        for phase, interval, net, opt in self.phases:
            if self.batch_idx % interval:
                continue
            opt.zero_grad(set_to_none=True)
            gen_z = torch.randn([config.batch_size, config.z_dim], device=self.device)
            for key, value in self.loss.accumulate_gradients(phase, real, gen_z, gain=interval).items():
                stats.setdefault(key, []).append(value)
            clock.lap(phase)
            for p in net.parameters():
                if p.grad is not None:
                    torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)
            opt.step()
            clock.lap("optimizer")
        _update_ema(self.G_ema, self.G, config, self.cur_nimg)
        clock.lap("ema")
        self.cur_nimg += config.batch_size
        self.batch_idx += 1
        return stats

    def state_dict(self) -> dict:
        return {
            "G_init_kwargs": _plain(self.G.init_kwargs), "D_init_kwargs": _plain(self.D.init_kwargs),
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(), "loss": self.loss.state_dict(),
            "cur_nimg": self.cur_nimg, "batch_idx": self.batch_idx,
        }

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        for opt, key in ((self.opt_G, "opt_G"), (self.opt_D, "opt_D")):
            opt.load_state_dict(state[key])
            for group in opt.param_groups:
                group.update(self._adam_impl)  # the saved groups carry the kernel choice of the run that saved them
        self.loss.load_state_dict(state["loss"])
        self.cur_nimg, self.batch_idx = int(state["cur_nimg"]), int(state["batch_idx"])


class _Clock:
    """Adds the seconds since the previous lap to ``timings[name]`` (nothing when ``timings`` is None)."""

    def __init__(self, timings: dict[str, float] | None, device: torch.device):
        self.timings = timings
        self.sync = device.type == "cuda" and timings is not None  # CUDA runs asynchronously
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.timings is None:
            return
        if self.sync:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self.last
        self.last = now


def train(
    config: TrainingConfig,
    resume: bool = True,
    progress: bool = True,
    data_source: Any = None,
    metrics_hook: MetricsHook | None = None,
) -> Path:
    """Train a StyleGAN2 generator; returns the path of the exported ``G_ema``.

    Args:
        config: the run's settings; ``config.out_dir`` receives ``checkpoint.pt`` (and the previous
            snapshot's as ``checkpoint-prev.pt``), ``log.jsonl``, ``samples-{kimg:06d}.png``,
            ``reals.png`` and the final generator.
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (the configuration must match,
            except for :data:`RUN_ONLY_FIELDS`); ``False`` starts over (the old log is truncated and
            the checkpoints overwritten from the first snapshot on).
        data_source: ``None`` for the procedural face renderer; a seeded sampler
            ``(batch_size, seed) -> Tensor[N, 3, R, R]`` in [-1, 1] (minibatch ``i`` uses
            ``batch_seed(config.seed, i)``); or a stream object with ``next_batch(batch_size)`` (and,
            to be resumable, ``state_dict()`` / ``load_state_dict()``).
        metrics_hook: ``(G_ema, kimg) -> dict`` called at every snapshot; the result is merged into
            the log line.

    Raises:
        TrainingCheckpointError: the checkpoint to resume from is unreadable or not a training
            checkpoint; the message says whether ``checkpoint-prev.pt`` can be resumed instead.
        ConfigMismatchError: the checkpoint was written with another configuration.
    """
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = _resolve_device(config.device)
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(config, out_dir, device, resume, progress, data_source, metrics_hook)
    finally:
        torch.set_num_threads(previous_threads)


def _train(config, out_dir, device, resume, progress, data_source, metrics_hook) -> Path:
    ckpt_path = out_dir / CHECKPOINT_NAME
    log_path = out_dir / LOG_NAME
    batch = config.batch_size

    trainer = Trainer(config, device)  # seeds the global RNG and initialises the networks from the run seed
    stream, sampler = _as_stream(data_source, config.resolution, config.seed, config.prefetch)
    elapsed = 0.0
    if resume and (ckpt_path.is_file() or (out_dir / PREVIOUS_CHECKPOINT_NAME).is_file()):
        state = _resume_state(ckpt_path, config, device)
        try:
            trainer.load_state_dict(state)
            _set_rng_state(state["rng"], device)
        except (RuntimeError, KeyError, TypeError, ValueError) as error:  # what load_state_dict raises
            raise TrainingCheckpointError(
                f"cannot resume: {ckpt_path} does not fit this run ({_first_line(error)}); {_previous_hint(ckpt_path)}"
            ) from None
        elapsed = float(state["elapsed_s"])
        if hasattr(stream, "load_state_dict") and state.get("data") is not None:
            stream.load_state_dict(state["data"])
        elif trainer.batch_idx > 0:
            warnings.warn("the data source has no load_state_dict(): resumed training sees a different data stream")
        _truncate_log(log_path, trainer.cur_nimg)
        del state
    else:
        log_path.write_text("")
        torch.manual_seed(batch_seed(config.seed, 0, salt="train"))
        if device.type == "cuda":
            torch.cuda.manual_seed_all(batch_seed(config.seed, 0, salt="train"))
        with torch.random.fork_rng(devices=_rng_devices(device)):
            if sampler is not None:
                grid_n = config.grid_size[0] * config.grid_size[1]
                _save_grid(sampler(grid_n, batch_seed(config.seed, 0, salt="reals")), config.grid_size, out_dir / "reals.png")
            _save_grid(_sample_images(trainer.G_ema, config, device), config.grid_size, out_dir / "samples-000000.png")

    total_nimg = int(round(config.total_kimg * 1000))
    snapshot_nimg = max(int(round(config.snapshot_kimg * 1000)), 1)
    next_snapshot = (trainer.cur_nimg // snapshot_nimg + 1) * snapshot_nimg
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    interval_start, interval_nimg = time.perf_counter(), trainer.cur_nimg
    run_start = time.perf_counter() - elapsed

    # Counts images (exact integers), displays kimg.
    bar = tqdm(
        total=total_nimg, initial=min(trainer.cur_nimg, total_nimg), unit_scale=1 / 1000, unit="kimg",
        disable=not progress, dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {n:.3f}/{total:.3f} kimg [{elapsed}<{remaining}{postfix}]",
    )
    try:
        while trainer.cur_nimg < total_nimg:
            real = stream.next_batch(batch).to(device=device, dtype=torch.float32)
            expected = (batch, 3, config.resolution, config.resolution)
            if tuple(real.shape) != expected:
                raise ValueError(f"data source returned {list(real.shape)}, expected {list(expected)}")
            for key, values in trainer.step(real).items():
                sums[key] = sums.get(key, 0.0) + sum(values)
                counts[key] = counts.get(key, 0) + len(values)
            cur_nimg = trainer.cur_nimg
            bar.update(min(cur_nimg, total_nimg) - bar.n)
            if trainer.batch_idx % 10 == 0 and "loss_G" in sums:
                bar.set_postfix(G=f"{sums['loss_G'] / counts['loss_G']:.3f}", D=f"{sums['loss_D'] / counts['loss_D']:.3f}")

            if cur_nimg >= next_snapshot or cur_nimg >= total_nimg:
                next_snapshot = (cur_nimg // snapshot_nimg + 1) * snapshot_nimg
                now = time.perf_counter()
                interval_s = now - interval_start
                kimg = cur_nimg / 1000
                record: dict[str, Any] = {
                    "kimg": round(kimg, 3),
                    "nimg": cur_nimg,
                    "iteration": trainer.batch_idx,
                    "time_s": round(now - run_start, 2),
                    "sec_per_kimg": round(interval_s / max((cur_nimg - interval_nimg) / 1000, 1e-9), 3),
                    "images_per_sec": round((cur_nimg - interval_nimg) / max(interval_s, 1e-9), 2),
                }
                record.update({key: sums[key] / counts[key] for key in sorted(sums)})
                record["pl_mean"] = trainer.loss.pl_mean.item()
                # Everything below must not disturb the training RNG stream.
                rng = _get_rng_state(device)
                with torch.random.fork_rng(devices=_rng_devices(device)):
                    _save_checkpoint(
                        ckpt_path, config=config, trainer=trainer, elapsed_s=now - run_start, rng=rng,
                        data=stream.state_dict() if hasattr(stream, "state_dict") else None,
                    )
                    _save_grid(_sample_images(trainer.G_ema, config, device), config.grid_size,
                               out_dir / sample_grid_name(cur_nimg))
                    if metrics_hook is not None:
                        record.update(metrics_hook(trainer.G_ema, kimg) or {})
                with log_path.open("a") as f:
                    f.write(json.dumps(_jsonable(record)) + "\n")
                sums, counts = {}, {}
                interval_start, interval_nimg = time.perf_counter(), cur_nimg
    finally:
        bar.close()
        if hasattr(stream, "close"):
            stream.close()

    domain = "synthfaces" if data_source is None else "custom"
    return _export_generator(trainer.G_ema, config, out_dir, trainer.cur_nimg, domain=domain)


def load_training_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`train` (``weights_only``: no code runs).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        TrainingCheckpointError: ``path`` is unreadable (corrupt, half-written) or not a training
            checkpoint of this version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a damaged zip or pickle surfaces as RuntimeError, EOFError, UnpicklingError, ...
        raise TrainingCheckpointError(f"{path} is corrupt or half-written ({_first_line(error)})") from None
    if not isinstance(state, dict):
        raise TrainingCheckpointError(f"{path} is not a training checkpoint (it holds a {type(state).__name__})")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise TrainingCheckpointError(f"{path} is not a training checkpoint (missing {', '.join(missing)})")
    if state.get("version") != CHECKPOINT_VERSION:
        raise TrainingCheckpointError(
            f"{path} has checkpoint version {state.get('version')!r}; this otresefa reads version {CHECKPOINT_VERSION}"
        )
    return state


def _resume_state(ckpt_path: Path, config: TrainingConfig, device: torch.device) -> dict:
    """The checkpoint to resume from, checked against ``config``; a one-line error naming the
    previous snapshot as the way out when the checkpoint is damaged or missing."""
    try:
        state = load_training_checkpoint(ckpt_path, map_location=device)
    except (FileNotFoundError, TrainingCheckpointError) as error:
        raise TrainingCheckpointError(f"cannot resume: {error}; {_previous_hint(ckpt_path)}") from None
    diff = config_differences(state["config"], config)
    if diff:
        lines = "\n".join(f"  {key}: checkpoint {old!r}, requested {new!r}" for key, (old, new) in diff.items())
        raise ConfigMismatchError(
            f"cannot resume from {ckpt_path}: the configuration differs in {sorted(diff)}:\n{lines}\n"
            "Use the checkpoint's settings, another out_dir, or resume=False to start over."
        )
    return state


def _previous_hint(ckpt_path: Path) -> str:
    """How to go on when ``ckpt_path`` cannot be resumed: from the previous snapshot, if it is intact."""
    previous = ckpt_path.with_name(PREVIOUS_CHECKPOINT_NAME)
    restart = "or start over with resume=False (otresefa train --restart)"
    if not previous.is_file():
        return f"there is no previous snapshot; {restart}"
    try:
        kimg = load_training_checkpoint(previous)["cur_nimg"] / 1000
    except TrainingCheckpointError as error:
        return f"the previous snapshot is damaged too ({error}); {restart}"
    return f"to resume from the previous snapshot ({kimg:g} kimg), move {previous} to {ckpt_path}, {restart}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def sample_grid_name(nimg: int) -> str:
    """``samples-{kimg:06d}.png`` at whole kimg, ``samples-{kimg:010.3f}.png`` (e.g. ``000000.104``) otherwise."""
    if nimg % 1000 == 0:
        return f"samples-{nimg // 1000:06d}.png"
    return f"samples-{nimg / 1000:010.3f}.png"


def _update_ema(G_ema: Generator, G: Generator, config: TrainingConfig, cur_nimg: int) -> None:
    """``p_ema <- beta p_ema + (1 - beta) p`` with ``beta = 0.5 ** (batch / ema_nimg)`` (half-life ema_nimg)."""
    ema_nimg = config.ema_kimg * 1000
    if config.ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * config.ema_rampup)
    beta = 0.5 ** (config.batch_size / max(ema_nimg, 1e-8))
    with torch.no_grad():
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)


def _sample_images(G_ema: Generator, config: TrainingConfig, device: torch.device, chunk: int = 16) -> torch.Tensor:
    """Images of the fixed grid seeds 0..n-1 (z from ``torch.Generator().manual_seed(seed)``), const noise."""
    n = config.grid_size[0] * config.grid_size[1]
    z = torch.stack([torch.randn([config.z_dim], generator=torch.Generator().manual_seed(s)) for s in range(n)])
    images = []
    with torch.no_grad():
        for zs in z.split(chunk):
            images.append(G_ema(zs.to(device), noise_mode="const").cpu())
    return torch.cat(images)


def _save_grid(images: torch.Tensor, grid_size: tuple[int, int], path: Path) -> None:
    """Tile ``images [N, 3, H, W]`` (values in [-1, 1]) row-major into a ``cols x rows`` PNG, atomically."""
    cols, rows = grid_size
    n, c, h, w = images.shape
    assert n == cols * rows and c == 3, f"expected {cols * rows} RGB images, got {list(images.shape)}"
    x = ((images.float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)  # [N, 3, H, W]
    x = x.reshape(rows, cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(np.ascontiguousarray(x.numpy())).save(tmp, format="PNG")
    os.replace(tmp, path)


def _save_checkpoint(path: Path, *, config: TrainingConfig, trainer: Trainer, elapsed_s: float, rng: dict,
                     data: dict | None) -> None:
    """Write the run's state to ``path`` atomically, keeping the one it replaces as ``checkpoint-prev.pt``."""
    state = {"version": CHECKPOINT_VERSION, "config": config.to_dict(), **trainer.state_dict(),
             "elapsed_s": elapsed_s, "rng": rng, "data": data}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    if path.is_file():
        # A crash between these two renames leaves only checkpoint-prev.pt; resuming then says so.
        os.replace(path, path.with_name(PREVIOUS_CHECKPOINT_NAME))
    os.replace(tmp, path)


def _export_generator(G_ema: Generator, config: TrainingConfig, out_dir: Path, cur_nimg: int,
                      domain: str = "synthfaces") -> Path:
    """Write ``G_ema`` in the project's format, with the training configuration as metadata."""
    G_out = copy.deepcopy(G_ema).cpu().eval()
    metadata = {"source": "otresefa.training", "domain": domain, "kimg": cur_nimg / 1000,
                "training_config": config.to_dict()}
    return Path(G_out.save(out_dir / "generator.safetensors", metadata=metadata, overwrite=True))


def export_checkpoint(checkpoint: str | Path, path: str | Path, domain: str = "synthfaces",
                      overwrite: bool = False) -> Path:
    """Write the ``G_ema`` of a training checkpoint as a generator file (``.safetensors``).

    Args:
        checkpoint: a ``checkpoint.pt`` written by :func:`train`, or a run folder (its ``checkpoint.pt``).
        path: the generator file to write; an existing file is replaced only with ``overwrite``.
        domain: recorded in the metadata, with the images seen, the training time and the configuration.

    Raises:
        FileNotFoundError: no checkpoint there.  FileExistsError: ``path`` exists and not ``overwrite``.
        TrainingCheckpointError: the checkpoint is unreadable or not a training checkpoint.
    """
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        checkpoint = checkpoint / CHECKPOINT_NAME
    state = load_training_checkpoint(checkpoint)
    G = Generator(**state["G_init_kwargs"])
    try:
        G.load_state_dict(state["G_ema"])
    except RuntimeError as error:
        raise TrainingCheckpointError(f"{checkpoint}: G_ema does not fit G_init_kwargs ({_first_line(error)})") from None
    metadata = {"source": "otresefa.training", "domain": domain, "kimg": state["cur_nimg"] / 1000,
                "training_seconds": state["elapsed_s"], "training_config": state["config"]}
    return Path(G.eval().save(path, metadata=metadata, overwrite=overwrite))


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return device


def _rng_devices(device: torch.device) -> list[int]:
    return [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []


def _get_rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _truncate_log(log_path: Path, cur_nimg: int) -> None:
    """Drop log lines written after the checkpoint (a crash between the two writes)."""
    if not log_path.is_file():
        return
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    keep = [line for line in lines if json.loads(line).get("nimg", 0) <= cur_nimg]
    if len(keep) != len(lines):
        log_path.write_text("".join(line + "\n" for line in keep))


def _jsonable(value: Any) -> Any:
    """Log values as JSON: tensors and numpy scalars/arrays become numbers/lists, tuples lists."""
    if isinstance(value, dict):
        return {str(key): _jsonable(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return value.tolist() if getattr(value, "ndim", 0) else value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively (JSON- and comparison-friendly)."""
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
