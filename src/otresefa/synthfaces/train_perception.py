"""Training of the synthetic face domain's attribute estimator and part segmenter on streamed renders.

No data set is stored: minibatch ``i`` of a run seeded ``s`` is rendered from attributes drawn with
``batch_seed(s, i)`` and augmented with a generator seeded ``batch_seed(s, i, "augment")``, and the
model's dropout-free layers use no other randomness than their seeded initialisation. A run
therefore depends only on its configuration, and resuming from ``checkpoint.pt`` (written every
``eval_every`` steps, atomically) continues it exactly (same thread count). A run may be stopped at a
checkpoint (``stop_after``) and resumed with another ``steps``: the cosine decay is then re-planned
from that step to the new end (the change is recorded in the checkpoint and the exported weights).

Augmentation imitates the generator's imperfections without changing what the attributes or part
labels say: a small Gaussian blur, pixel noise, and mild brightness/contrast changes (no hue or
saturation change, which would alter colour attributes).

Held-out evaluation uses renders from ``HELD_OUT_SEED``, a seed the hashed training seeds never take
in practice: the estimator's R^2 per attribute over the faces where it is visible, the segmenter's IoU
per part accumulated over the whole held-out set.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from otresefa.io import append_jsonl, save_torch, truncate_jsonl
from otresefa.io import batch_seed as shared_batch_seed

from .attributes import ATTRIBUTE_NAMES, attribute_visibility, sample_attributes
from .perception import AttributeEstimator, PartSegmenter, save_network
from .renderer import PART_NAMES, render

HELD_OUT_SEED = 2_000_003
"""Seed of the held-out renders used for evaluation during training (the tests use another)."""

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
ESTIMATOR_NAME = "synthfaces_estimator.safetensors"
SEGMENTER_NAME = "synthfaces_segmenter.safetensors"

# Fields that only say where, how often or how verbosely to report: they may change when resuming.
RUN_ONLY_FIELDS = ("eval_every", "eval_images", "threads")
# Fields that may change when resuming because the change is recorded (``schedule`` in the checkpoint).
SCHEDULE_FIELDS = ("steps",)


@dataclass(frozen=True)
class Augmentation:
    """Per-image augmentation strengths; each effect is applied to a random half of the batch.

    Attributes:
        blur_sigma: range of the Gaussian blur's standard deviation, in pixels.
        noise_std: upper bound of the Gaussian pixel noise's standard deviation (images in [-1, 1]).
        brightness: largest offset added to all pixels.
        contrast: largest relative change of the contrast about the image mean.
        probability: chance of each effect per image.
    """

    blur_sigma: tuple[float, float] = (0.3, 0.8)
    noise_std: float = 0.03
    brightness: float = 0.03
    contrast: float = 0.05
    probability: float = 0.5


@dataclass(frozen=True)
class PerceptionTrainingConfig:
    """Everything that defines a perception training run (saved in the checkpoint, checked on resume)."""

    network: str  # "estimator" or "segmenter"
    steps: int
    batch: int
    seed: int
    lr: float
    warmup_steps: int
    widths: tuple[int, ...]
    feature_dim: int = 0  # estimator only
    eye_hidden: int = 0  # estimator only
    eye_features: int = 0  # estimator only
    class_balance: float = 0.0  # segmenter only: class weights ~ frequency^-class_balance
    augmentation: Augmentation = Augmentation()
    eval_every: int = 250
    eval_images: int = 2000
    threads: int = 1

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


# --------------------------------------------------------------------------
# Data.
# --------------------------------------------------------------------------


def batch_seed(run_seed: int, index: int, salt: str = "data") -> int:
    """:func:`otresefa.io.batch_seed` in the perception trainer's own streams (``perception:`` salts,
    so its minibatches never coincide with the GAN's)."""
    return shared_batch_seed(run_seed, index, f"perception:{salt}")


def gaussian_blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Blur each image of ``images [N, C, H, W]`` with its own ``sigma [N]`` (pixels; 5-tap separable)."""
    n, channels, height, width = images.shape
    taps = torch.arange(-2, 3, dtype=images.dtype)  # [5]
    kernel = torch.exp(-0.5 * (taps[None] / sigma[:, None].clamp(min=1e-3)) ** 2)  # [N, 5]
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)  # [N*C, 5]
    x = F.pad(images.reshape(1, n * channels, height, width), (2, 2, 2, 2), mode="replicate")
    x = F.conv2d(x, kernel[:, None, :, None], groups=n * channels)  # [1, N*C, H, W + 4]
    x = F.conv2d(x, kernel[:, None, None, :], groups=n * channels)  # [1, N*C, H, W]
    return x.reshape(n, channels, height, width)


def augment(images: Tensor, settings: Augmentation, generator: torch.Generator) -> Tensor:
    """Blur, noise and brightness/contrast changes that leave attributes and part labels true."""
    n = images.shape[0]

    def chosen() -> Tensor:  # [N, 1, 1, 1] 1 for the images an effect applies to
        return (torch.rand(n, generator=generator) < settings.probability).float()[:, None, None, None]

    def uniform(low: float, high: float) -> Tensor:  # [N]
        return low + (high - low) * torch.rand(n, generator=generator)

    blur_mask, noise_mask, colour_mask = chosen(), chosen(), chosen()
    sigma = uniform(*settings.blur_sigma)
    noise_std = uniform(0.0, settings.noise_std)[:, None, None, None]
    offset = uniform(-settings.brightness, settings.brightness)[:, None, None, None]
    gain = uniform(1 - settings.contrast, 1 + settings.contrast)[:, None, None, None]
    noise = torch.randn(images.shape, generator=generator)  # [N, 3, H, W]

    images = blur_mask * gaussian_blur(images, sigma) + (1 - blur_mask) * images
    mean = images.mean(dim=(1, 2, 3), keepdim=True)  # [N, 1, 1, 1]
    recoloured = (images - mean) * gain + mean + offset
    images = colour_mask * recoloured + (1 - colour_mask) * images
    return images + noise_mask * noise_std * noise


def degrade(images: Tensor, blur_sigma: float = 0.8, noise_std: float = 0.02, seed: int = 0) -> Tensor:
    """The "blurred + noise" evaluation condition: every image blurred with ``blur_sigma`` px, then
    Gaussian pixel noise of ``noise_std`` (images in [-1, 1]) drawn from ``seed``; a stand-in for a
    GAN's softer samples (``docs/synthfaces_perception.md``)."""
    blurred = gaussian_blur(images, torch.full((images.shape[0],), float(blur_sigma)))
    return blurred + noise_std * torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))


@dataclass(frozen=True)
class RenderedBatch:
    """Renders with their ground truth: ``images [N, 3, 64, 64]``, ``attrs [N, A]``, ``parts [N, 64, 64]``."""

    images: Tensor
    attrs: Tensor
    parts: Tensor


def training_batch(config: PerceptionTrainingConfig, step: int) -> RenderedBatch:
    """Minibatch ``step`` of the run: fresh random faces, rendered at 64x64 and augmented."""
    attrs = sample_attributes(config.batch, batch_seed(config.seed, step))  # [B, A]
    rendered = render(attrs, size=64)
    generator = torch.Generator().manual_seed(batch_seed(config.seed, step, "augment"))
    images = augment(rendered.images, config.augmentation, generator)  # [B, 3, 64, 64]
    return RenderedBatch(images, attrs, rendered.parts)


def held_out_set(n: int, seed: int = HELD_OUT_SEED, chunk: int = 256) -> RenderedBatch:
    """``n`` clean renders from ``seed`` (rendered in chunks to bound memory)."""
    attrs = sample_attributes(n, seed)  # [n, A]
    images, parts = [], []
    for rows in attrs.split(chunk):
        rendered = render(rows, size=64)
        images.append(rendered.images)
        parts.append(rendered.parts)
    return RenderedBatch(torch.cat(images), attrs, torch.cat(parts))


# --------------------------------------------------------------------------
# Losses and metrics.
# --------------------------------------------------------------------------


def visible_mse(predicted: Tensor, attrs: Tensor) -> Tensor:
    """Mean squared error over the attributes visible in each face (``attribute_visibility``)."""
    visible = attribute_visibility(attrs).float()  # [N, A]
    return ((predicted - attrs) ** 2 * visible).sum() / visible.sum()


def attribute_r2(predicted: Tensor, attrs: Tensor) -> Tensor:
    """R^2 per attribute ``[A]`` over the faces where it is visible (NaN where fewer than two are)."""
    visible = attribute_visibility(attrs)  # [N, A]
    scores = torch.full((attrs.shape[1],), float("nan"))
    for column in range(attrs.shape[1]):
        rows = visible[:, column]
        if rows.sum() < 2:
            continue
        target = attrs[rows, column].double()
        residual = ((predicted[rows, column].double() - target) ** 2).sum()
        total = ((target - target.mean()) ** 2).sum()
        scores[column] = float(1 - residual / total)
    return scores


def part_frequencies(seed: int, n: int = 512) -> Tensor:
    """Share of pixels of each part ``[P]`` in ``n`` renders from ``seed``."""
    parts = render(sample_attributes(n, seed), size=64).parts
    return torch.bincount(parts.flatten(), minlength=len(PART_NAMES)).double().div(parts.numel()).float()


def class_weights(frequencies: Tensor, exponent: float) -> Tensor:
    """Cross-entropy weights ``[P]`` ~ ``frequency ** -exponent``, averaging 1 over pixels."""
    weights = frequencies.clamp(min=1e-6) ** -exponent
    return weights / (weights * frequencies).sum()


def part_iou(predicted: Tensor, parts: Tensor, num_parts: int = len(PART_NAMES)) -> Tensor:
    """IoU per part ``[P]`` accumulated over all pixels of the set (NaN for parts absent from both)."""
    predicted, parts = predicted.flatten(), parts.flatten()
    both = torch.bincount(parts[predicted == parts], minlength=num_parts).double()  # [P]
    union = torch.bincount(predicted, minlength=num_parts).double() + torch.bincount(parts, minlength=num_parts) - both
    return (both / union).float()  # 0/0 = NaN for absent parts


def mean_iou(iou: Tensor, parts: Tensor) -> float:
    """Mean of ``iou [P]`` over the parts present in the ground truth ``parts``."""
    present = torch.bincount(parts.flatten(), minlength=iou.numel()) > 0
    return float(iou[present].nan_to_num(0.0).mean())


# --------------------------------------------------------------------------
# The two tasks.
# --------------------------------------------------------------------------


@dataclass
class Task:
    """What differs between the two networks: construction, loss and held-out evaluation."""

    model: nn.Module
    loss: Callable[[nn.Module, RenderedBatch], Tensor]
    evaluate: Callable[[nn.Module, RenderedBatch], dict]
    weights_name: str


@torch.no_grad()
def _predict(model: nn.Module, images: Tensor, chunk: int = 250) -> Tensor:
    return torch.cat([model(part) for part in images.split(chunk)])


def estimator_task(config: PerceptionTrainingConfig) -> Task:
    """Attribute regression with the visible-attribute MSE, judged by the worst attribute's R^2."""

    def loss(model: nn.Module, batch: RenderedBatch) -> Tensor:
        return visible_mse(model(batch.images), batch.attrs)

    def evaluate(model: nn.Module, held_out: RenderedBatch) -> dict:
        predicted = _predict(model, held_out.images).clamp(0, 1)  # [n, A]
        r2 = attribute_r2(predicted, held_out.attrs)
        return {"min_r2": float(r2.nan_to_num(1.0).min()), "mean_r2": float(r2.nanmean()),
                "r2": dict(zip(ATTRIBUTE_NAMES, r2.tolist()))}

    torch.manual_seed(config.seed)
    model = AttributeEstimator(config.widths, config.feature_dim, config.eye_hidden, config.eye_features)
    return Task(model, loss, evaluate, ESTIMATOR_NAME)


def segmenter_task(config: PerceptionTrainingConfig) -> Task:
    """Per-pixel cross-entropy (optionally class-balanced), judged by the mean IoU over present parts."""
    weights = class_weights(part_frequencies(config.seed), config.class_balance)  # [P]

    def loss(model: nn.Module, batch: RenderedBatch) -> Tensor:
        return F.cross_entropy(model(batch.images), batch.parts, weight=weights)

    def evaluate(model: nn.Module, held_out: RenderedBatch) -> dict:
        predicted = _predict(model, held_out.images).argmax(dim=1)  # [n, 64, 64]
        iou = part_iou(predicted, held_out.parts)
        return {"mean_iou": mean_iou(iou, held_out.parts), "iou": dict(zip(PART_NAMES, iou.tolist()))}

    torch.manual_seed(config.seed)
    model = PartSegmenter(config.widths)
    return Task(model, loss, evaluate, SEGMENTER_NAME)


# --------------------------------------------------------------------------
# The loop.
# --------------------------------------------------------------------------


def learning_rate(config: PerceptionTrainingConfig, step: int) -> float:
    """Linear warm-up to ``config.lr``, then a cosine decay to zero at ``config.steps``.

    A pure function of the step and the current ``steps``: resuming with another ``steps`` jumps to
    the new curve's value at the current step.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _check_resumable(saved: dict, config: PerceptionTrainingConfig, path: Path) -> None:
    current = config.to_dict()
    free = RUN_ONLY_FIELDS + SCHEDULE_FIELDS
    differences = sorted(k for k in current if k not in free and saved.get(k) != current[k])
    if differences:
        lines = "\n".join(f"  {k}: checkpoint {saved.get(k)!r}, now {current[k]!r}" for k in differences)
        raise ValueError(
            f"cannot resume from {path}: the configuration differs in {differences}:\n{lines}\n"
            "Use the checkpoint's settings, another output directory, or resume=False to start over."
        )


def run_training(config: PerceptionTrainingConfig, out: str | Path, resume: bool = True, progress: bool = True,
                 command: str | None = None, stop_after: int | None = None) -> Path:
    """Train ``config.network`` into the directory ``out`` and export its weights there.

    Writes ``checkpoint.pt`` and an evaluation line in ``log.jsonl`` every ``config.eval_every``
    steps, and at the end ``synthfaces_estimator.safetensors`` or ``synthfaces_segmenter.safetensors``
    whose header records the configuration, the schedule changes, images seen, wall time, the final
    held-out scores and ``command`` (how to reproduce the run).

    Args:
        stop_after: end the session at this step (a multiple of ``eval_every``, so that it is
            checkpointed) without exporting; a later call resumes from there.

    Returns:
        the path of the exported weights, or of the checkpoint when ``stop_after`` ended the session.
    """
    if config.steps < 1 or config.batch < 1:
        raise ValueError(f"steps and batch must be positive, got steps={config.steps}, batch={config.batch}")
    if stop_after is not None and (stop_after < 1 or stop_after % config.eval_every):
        raise ValueError(f"stop_after must be a positive multiple of eval_every={config.eval_every}, got {stop_after}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    task = {"estimator": estimator_task, "segmenter": segmenter_task}[config.network](config)
    model = task.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    checkpoint_path, log_path = out / CHECKPOINT_NAME, out / LOG_NAME
    step, elapsed, evaluation = 0, 0.0, {}
    schedule = [[0, config.steps]]  # [first step, planned steps] of each part of the run
    if resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        _check_resumable(state["config"], config, checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed, evaluation = state["step"], state["elapsed_s"], state["evaluation"]
        schedule = state["schedule"] + ([[step, config.steps]] if state["schedule"][-1][1] != config.steps else [])
    if step > config.steps:
        raise ValueError(f"{checkpoint_path} is at step {step}, beyond steps={config.steps}")
    truncate_jsonl(log_path, lambda record: record["step"] <= step)
    held_out = held_out_set(config.eval_images)

    def checkpoint_and_evaluate() -> dict:
        nonlocal elapsed
        started = time.perf_counter()
        model.eval()
        scores = task.evaluate(model, held_out)
        model.train()
        elapsed += time.perf_counter() - started
        result = {"step": step, "images_seen": step * config.batch, "elapsed_s": round(elapsed, 1), **scores}
        append_jsonl(log_path, result)
        save_torch({"config": config.to_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "step": step, "elapsed_s": elapsed, "evaluation": result, "schedule": schedule}, checkpoint_path)
        return result

    model.train()
    bar = tqdm(total=config.steps, initial=step, disable=not progress, desc=f"train {config.network}")
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    while step < end:
        started = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        loss = task.loss(model, training_batch(config, step))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        elapsed += time.perf_counter() - started
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4g}")
        if step % config.eval_every == 0 or step == config.steps:
            evaluation = checkpoint_and_evaluate()
            bar.write(_summary(evaluation))
    bar.close()
    if step < config.steps:
        return checkpoint_path
    metadata = {"training_config": config.to_dict(), "schedule": schedule, "steps": step, "batch": config.batch,
                "images_seen": step * config.batch, "wall_time_s": round(elapsed, 1),
                "held_out_seed": HELD_OUT_SEED, "held_out_images": config.eval_images,
                "evaluation": evaluation, "command": command, "torch": torch.__version__}
    return save_network(model.eval(), out / task.weights_name, metadata)


def _summary(evaluation: dict) -> str:
    scores = {k: round(v, 4) for k, v in evaluation.items() if isinstance(v, float)}
    return f"step {evaluation['step']}: {scores}"


def train_estimator(out: str | Path, steps: int = 4000, batch: int = 64, seed: int = 0, lr: float = 2e-3,
                    widths: tuple[int, ...] = (48, 96, 128, 160), feature_dim: int = 192, eye_hidden: int = 128,
                    eye_features: int = 64, augmentation: Augmentation = Augmentation(), eval_every: int = 250,
                    eval_images: int = 2000,
                    warmup_steps: int = 64, threads: int = 1, resume: bool = True, progress: bool = True,
                    command: str | None = None, stop_after: int | None = None) -> Path:
    """Train the attribute estimator on streamed renders into ``out``; returns the exported weights' path."""
    config = PerceptionTrainingConfig(
        network="estimator", steps=steps, batch=batch, seed=seed, lr=lr, warmup_steps=warmup_steps,
        widths=tuple(widths), feature_dim=feature_dim, eye_hidden=eye_hidden, eye_features=eye_features,
        augmentation=augmentation, eval_every=eval_every, eval_images=eval_images, threads=threads,
    )
    return run_training(config, out, resume, progress, command, stop_after)


def train_segmenter(out: str | Path, steps: int = 1500, batch: int = 64, seed: int = 0, lr: float = 2e-3,
                    widths: tuple[int, ...] = (32, 64, 96, 128), class_balance: float = 0.25,
                    augmentation: Augmentation = Augmentation(), eval_every: int = 250, eval_images: int = 2000,
                    warmup_steps: int = 64, threads: int = 1, resume: bool = True, progress: bool = True,
                    command: str | None = None, stop_after: int | None = None) -> Path:
    """Train the part segmenter on streamed renders into ``out``; returns the exported weights' path."""
    config = PerceptionTrainingConfig(
        network="segmenter", steps=steps, batch=batch, seed=seed, lr=lr, warmup_steps=warmup_steps,
        widths=tuple(widths), class_balance=class_balance, augmentation=augmentation, eval_every=eval_every,
        eval_images=eval_images, threads=threads,
    )
    return run_training(config, out, resume, progress, command, stop_after)
