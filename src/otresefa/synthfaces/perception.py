"""Perception networks of the synthetic face domain: an attribute estimator and a part segmenter.

Both are small CNNs trained on streamed renders (see :mod:`otresefa.synthfaces.train_perception`)
and shipped with the package as safetensors files whose header ``__metadata__`` holds the
architecture (``init_kwargs``) and the training record (``metadata``) as JSON strings.

- :class:`AttributeEstimator` reads the 27 attributes (``ATTRIBUTE_NAMES``) off a 64x64 face.
  Its penultimate layer is the domain's feature space for FID/KID
  (:class:`SynthfacesFeatureExtractor`).
- :class:`PartSegmenter` labels every pixel with one of ``PART_NAMES``; the domain's named
  regions (:mod:`otresefa.synthfaces.regions`) are built on it.

Images are ``[N, 3, H, W]`` RGB, float in [-1, 1] or uint8 in [0, 255]; other sizes than 64x64 are
resized to 64 (area interpolation when shrinking, bilinear when enlarging).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from otresefa.io import read_safetensors_header, save_module

from .attributes import ATTRIBUTES, NUM_ATTRIBUTES, attribute_index
from .renderer import EYE_X, EYE_Y, PART_NAMES, face_to_image, head_pose

INPUT_SIZE = 64
"""Side of the images both networks see."""

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
ESTIMATOR_PATH = DATA_DIR / "synthfaces_estimator.safetensors"
SEGMENTER_PATH = DATA_DIR / "synthfaces_segmenter.safetensors"

ESTIMATOR_FORMAT = "otresefa-synthfaces-estimator"
SEGMENTER_FORMAT = "otresefa-synthfaces-segmenter"
FORMAT_VERSION = 1

INFERENCE_BATCH = 256
"""Images per forward pass in the public functions (bounds memory for large inputs)."""


# --------------------------------------------------------------------------
# Networks.
# --------------------------------------------------------------------------


def conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, BatchNorm, ReLU (the conv has no bias: BatchNorm supplies it)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


EYE_CROP_COLUMNS, EYE_CROP_ROWS = 13, 9
"""Samples across and down each eye crop, one pixel apart at 64x64: the largest eye (9 px wide,
4 px high) with 2 px to spare on every side for errors of the estimated head pose."""

POSE_ATTRIBUTES = ("head_shift_x", "head_shift_y", "head_roll")
"""The attributes that place the face frame in the image (``renderer.head_pose``)."""


def eye_crops(images: Tensor, pose: Tensor) -> Tensor:
    """Crops ``[N, 2, 3, EYE_CROP_ROWS, EYE_CROP_COLUMNS]`` of both eyes of ``images [N, 3, 64, 64]``,
    aligned with the face frame given by ``pose [N, 3]`` (``POSE_ATTRIBUTES`` values in [0, 1]).

    Sampled bilinearly on a grid centred on the renderer's eye centres ``(+-EYE_X, EYE_Y)`` of the
    face frame, one pixel apart, rolled and shifted with the head; the left eye (index 1) is mirrored,
    as the renderer draws it, so that columns run towards the outer corner in both crops.
    """
    shift_x, shift_y, roll = head_pose(*pose.unbind(dim=1))  # each [N]
    pixel = 2.0 / INPUT_SIZE
    across = (torch.arange(EYE_CROP_COLUMNS, device=images.device) - (EYE_CROP_COLUMNS - 1) / 2) * pixel
    down = (torch.arange(EYE_CROP_ROWS, device=images.device) - (EYE_CROP_ROWS - 1) / 2) * pixel
    side = torch.tensor([1.0, -1.0], device=images.device).view(2, 1, 1)  # image right, image left
    u = (side * (EYE_X + across.view(1, 1, -1))).expand(2, EYE_CROP_ROWS, EYE_CROP_COLUMNS)  # [2, h, w]
    v = (EYE_Y + down.view(1, -1, 1)).expand(2, EYE_CROP_ROWS, EYE_CROP_COLUMNS)  # [2, h, w]
    x, y = face_to_image(u, v, *(t.view(-1, 1, 1, 1) for t in (shift_x, shift_y, torch.cos(roll), torch.sin(roll))))
    grid = torch.stack([x, y], dim=-1).flatten(1, 2)  # [N, 2 * h, w, 2]; grid_sample's frame is the renderer's
    crops = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return crops.view(-1, 3, 2, EYE_CROP_ROWS, EYE_CROP_COLUMNS).transpose(1, 2)  # [N, 2, 3, h, w]


class AttributeEstimator(nn.Module):
    """CNN regressing the attribute vector ``[N, A]`` (values near [0, 1]) from 64x64 faces, with a
    branch that reads the eyes from crops aligned with the head pose the CNN estimates.

    Trunk: the input is first rearranged losslessly into 2x2 pixel blocks (``pixel_unshuffle``:
    ``[N, 3, 64, 64] -> [N, 12, 32, 32]``), so the first convolution still sees every pixel
    (nose width, brow thickness and smile move only 1-2 px) while no layer has to run at 64x64,
    whose memory traffic dominates the cost on a CPU. Then per stage a stride-2 and a 3x3
    convolution, down to a 4x4 map that is flattened rather than averaged: the head needs to know
    *where* things are (head shift, brow height). ``trunk_head`` reads every attribute from its
    ``feature_dim`` features.

    Eyes: an eye is 2-4 px high at 64x64 and the iris moves by about 2 px over the whole range of
    ``gaze_y``, so reading gaze and iris colour takes sub-pixel alignment that the trunk, which must
    also find the eye among head shifts and rolls of several pixels, learns slowly (held-out R^2 0.04
    for ``gaze_y`` after 128k images). The trunk's estimate of the head pose (``POSE_ATTRIBUTES``,
    R^2 > 0.99) places two crops on the eyes (:func:`eye_crops`: bilinear resampling of the input, so
    the crops keep its sub-pixel information); a two-layer perceptron shared by both eyes turns each
    crop into ``eye_features`` values, and ``eye_head`` adds a correction to the trunk's estimates of
    the eye attributes (``group == "eyes"``: size, gaze x and y, iris colour). The pose is detached
    where it enters the crops: it is learnt from its own attributes only.

    ``features`` is the penultimate layer: the trunk's and both eyes' features
    (``feature_dim + 2 * eye_features`` values after ReLU).

    Args:
        widths: channels at 32, 16, 8 and 4 pixels.
        feature_dim: size of the trunk's penultimate layer.
        eye_hidden: hidden units of the per-eye perceptron.
        eye_features: features per eye.
    """

    def __init__(self, widths: tuple[int, ...] = (48, 96, 128, 160), feature_dim: int = 192,
                 eye_hidden: int = 128, eye_features: int = 64):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4:
            raise ValueError(f"widths gives the channels at 32, 16, 8 and 4 px (4 values), got {widths}")
        self.init_kwargs = {"widths": list(widths), "feature_dim": int(feature_dim), "eye_hidden": int(eye_hidden),
                            "eye_features": int(eye_features)}
        layers = [nn.PixelUnshuffle(2), conv_block(12, widths[0]), conv_block(widths[0], widths[0])]
        for previous, width in zip(widths[:-2], widths[1:-1]):
            layers += [conv_block(previous, width, stride=2), conv_block(width, width)]
        # A 3x3 convolution adds little on the final 4x4 map.
        layers.append(conv_block(widths[-2], widths[-1], stride=2))
        self.trunk = nn.Sequential(*layers)
        final_side = INPUT_SIZE // 2 ** len(widths)
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Linear(widths[-1] * final_side * final_side, feature_dim), nn.ReLU(inplace=True)
        )
        self.trunk_head = nn.Linear(feature_dim, NUM_ATTRIBUTES)
        self.eye = nn.Sequential(
            nn.Flatten(), nn.Linear(3 * EYE_CROP_ROWS * EYE_CROP_COLUMNS, eye_hidden), nn.ReLU(inplace=True),
            nn.Linear(eye_hidden, eye_features), nn.ReLU(inplace=True),
        )
        self.register_buffer("pose_columns", torch.tensor([attribute_index(n) for n in POSE_ATTRIBUTES]),
                             persistent=False)
        self.register_buffer("eye_columns", torch.tensor([i for i, a in enumerate(ATTRIBUTES) if a.group == "eyes"]),
                             persistent=False)
        self.eye_head = nn.Linear(2 * eye_features, len(self.eye_columns))
        # Start at the middle of the attribute range, with no eye correction.
        for head, bias in ((self.trunk_head, 0.5), (self.eye_head, 0.0)):
            nn.init.zeros_(head.weight)
            nn.init.constant_(head.bias, bias)

    @property
    def num_features(self) -> int:
        return self.init_kwargs["feature_dim"] + 2 * self.init_kwargs["eye_features"]

    def _trunk_and_eyes(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        trunk = self.embed(self.trunk(images))  # [N, feature_dim]
        coarse = self.trunk_head(trunk)  # [N, A]
        crops = eye_crops(images, coarse[:, self.pose_columns].detach())  # [N, 2, 3, h, w]
        eyes = self.eye(crops.flatten(0, 1)).view(len(images), -1)  # [N, 2 * eye_features]
        return trunk, coarse, eyes

    def features(self, images: Tensor) -> Tensor:
        """``images [N, 3, 64, 64]`` in [-1, 1] -> penultimate features ``[N, num_features]``."""
        trunk, _, eyes = self._trunk_and_eyes(images)
        return torch.cat([trunk, eyes], dim=1)

    def forward(self, images: Tensor) -> Tensor:
        """``images [N, 3, 64, 64]`` in [-1, 1] -> attribute estimates ``[N, A]`` (unclamped)."""
        _, coarse, eyes = self._trunk_and_eyes(images)
        return coarse.index_add(1, self.eye_columns, self.eye_head(eyes))


class PartSegmenter(nn.Module):
    """U-Net giving per-pixel logits ``[N, P, 64, 64]`` over ``PART_NAMES``.

    Like the estimator it works on 2x2 pixel blocks: ``pixel_unshuffle`` turns the image into a
    lossless ``[N, 12, 32, 32]`` input and the last layer predicts the logits of all four pixels of a
    block, which ``pixel_shuffle`` puts back in place, so labels are per pixel (thin parts such as
    brows and glasses rims are 1-2 px wide) while no convolution runs at 64x64. The encoder halves the
    resolution at each level (two 3x3 convolutions per level); the decoder upsamples bilinearly,
    concatenates the encoder map of the same size and applies two 3x3 convolutions.

    Args:
        widths: encoder channels at 32, 16, 8, ... pixels (the decoder mirrors them).
        num_parts: output classes.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 96, 128), num_parts: int = len(PART_NAMES)):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not 2 <= len(widths) <= 5:
            raise ValueError(f"widths needs 2 to 5 levels (32 px down to 2 px), got {widths}")
        self.init_kwargs = {"widths": list(widths), "num_parts": int(num_parts)}
        self.encoder = nn.ModuleList()
        previous = 12
        for level, width in enumerate(widths):
            stride = 1 if level == 0 else 2
            self.encoder.append(nn.Sequential(conv_block(previous, width, stride), conv_block(width, width)))
            previous = width
        self.decoder = nn.ModuleList()
        for level in reversed(range(len(widths) - 1)):
            skip = widths[level]
            self.decoder.append(nn.Sequential(conv_block(previous + skip, skip), conv_block(skip, skip)))
            previous = skip
        self.classifier = nn.Conv2d(previous, num_parts * 4, 1)

    def forward(self, images: Tensor) -> Tensor:
        """``images [N, 3, 64, 64]`` in [-1, 1] -> logits ``[N, P, 64, 64]``."""
        x = F.pixel_unshuffle(images, 2)  # [N, 12, 32, 32]
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        for level, skip in zip(self.decoder, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = level(torch.cat([x, skip], dim=1))  # [N, C_skip, h, w]
        return F.pixel_shuffle(self.classifier(x), 2)  # [N, P, 64, 64]


# --------------------------------------------------------------------------
# Files.
# --------------------------------------------------------------------------

_FORMATS = {AttributeEstimator: ESTIMATOR_FORMAT, PartSegmenter: SEGMENTER_FORMAT}


def save_network(model: AttributeEstimator | PartSegmenter, path: str | Path, metadata: dict | None = None) -> Path:
    """Write ``model`` to ``path`` (safetensors, architecture and ``metadata`` in the header), atomically."""
    return save_module(model, path, _FORMATS[type(model)], FORMAT_VERSION, metadata)


def load_network(path: str | Path, device: str | torch.device | None = None) -> AttributeEstimator | PartSegmenter:
    """Read a network written by :func:`save_network`, in eval mode, with ``training_metadata`` attached."""
    header = read_safetensors_header(path)
    classes = {fmt: cls for cls, fmt in _FORMATS.items()}
    if header.get("format") not in classes:
        raise ValueError(f"{path} holds no synthfaces perception network (header format {header.get('format')!r})")
    if int(header.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer otresefa (format version {header['format_version']})")
    try:
        model = classes[header["format"]](**json.loads(header["init_kwargs"]))
        model.load_state_dict(load_file(str(path)))
    except (TypeError, RuntimeError) as error:  # an architecture this version does not build
        raise ValueError(f"{path} holds a {header['format']} of another architecture than this otresefa "
                         f"builds ({str(error).splitlines()[0]})") from None
    model.training_metadata = json.loads(header.get("metadata", "{}"))
    return model.to(device).eval() if device is not None else model.eval()


@lru_cache(maxsize=None)
def _cached_network(path: str, device: str) -> nn.Module:
    return load_network(path, device).requires_grad_(False)


def load_estimator(device: str | torch.device | None = None) -> AttributeEstimator:
    """The shipped attribute estimator (loaded once per device, eval mode, no gradients)."""
    return _cached_network(str(ESTIMATOR_PATH), str(torch.device(device or "cpu")))


def load_segmenter(device: str | torch.device | None = None) -> PartSegmenter:
    """The shipped part segmenter (loaded once per device, eval mode, no gradients)."""
    return _cached_network(str(SEGMENTER_PATH), str(torch.device(device or "cpu")))


# --------------------------------------------------------------------------
# Inputs.
# --------------------------------------------------------------------------


def as_network_input(images: Tensor) -> Tensor:
    """Check ``images [N, 3, H, W]`` and return them as float32 in [-1, 1] at 64x64.

    uint8 images are read as [0, 255]; float images must already be in [-1, 1] (values are not
    clamped: a GAN's slight overshoot is harmless).

    Raises:
        ValueError: for a shape other than ``[N, 3, H, W]``, an empty batch, or NaN/inf values.
    """
    if not isinstance(images, Tensor):
        raise ValueError(f"expected a torch tensor of images [N, 3, H, W], got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images of shape [N, 3, H, W], got {list(images.shape)}")
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"expected a non-empty batch of images, got shape {list(images.shape)}")
    if images.dtype == torch.uint8:
        images = images.float() / 127.5 - 1  # [N, 3, H, W]
    elif images.is_floating_point():
        images = images.float()
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or infinite values")
    else:
        raise ValueError(f"expected uint8 or floating-point images, got dtype {images.dtype}")
    return resize_to_input(images)


def resize_to_input(images: Tensor) -> Tensor:
    """``[N, 3, H, W]`` -> ``[N, 3, 64, 64]``: area interpolation to shrink, bilinear to enlarge."""
    height, width = images.shape[-2:]
    if (height, width) == (INPUT_SIZE, INPUT_SIZE):
        return images
    if height >= INPUT_SIZE and width >= INPUT_SIZE:
        return F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="area")
    return F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# --------------------------------------------------------------------------
# Public functions.
# --------------------------------------------------------------------------


@torch.no_grad()
def estimate_attributes(images: Tensor, estimator: AttributeEstimator | None = None) -> Tensor:
    """Attribute estimates ``[N, A]`` in [0, 1] (columns as ``ATTRIBUTE_NAMES``) of ``images [N, 3, H, W]``.

    ``glasses_frame`` is meaningless for faces without glasses (``glasses`` < 0.5).
    """
    estimator = estimator or load_estimator()
    images = as_network_input(images)  # [N, 3, 64, 64]
    device = _device_of(estimator)
    outputs = [estimator(chunk.to(device)).cpu() for chunk in images.split(INFERENCE_BATCH)]
    return torch.cat(outputs).clamp_(0, 1)  # [N, A]


@torch.no_grad()
def attribute_features(images: Tensor, estimator: AttributeEstimator | None = None) -> Tensor:
    """The estimator's penultimate features ``[N, F]`` of ``images [N, 3, H, W]``."""
    estimator = estimator or load_estimator()
    images = as_network_input(images)  # [N, 3, 64, 64]
    device = _device_of(estimator)
    return torch.cat([estimator.features(chunk.to(device)).cpu() for chunk in images.split(INFERENCE_BATCH)])


@torch.no_grad()
def segment(images: Tensor, segmenter: PartSegmenter | None = None) -> Tensor:
    """Part labels ``Long[N, H, W]`` (indices into ``PART_NAMES``) of ``images [N, 3, H, W]``.

    The segmenter works at 64x64; its logits are resized bilinearly back to ``H x W`` before the
    argmax, so the labels follow the input's resolution.
    """
    segmenter = segmenter or load_segmenter()
    size = tuple(images.shape[-2:]) if isinstance(images, Tensor) and images.dim() == 4 else None
    images = as_network_input(images)  # [N, 3, 64, 64]
    device = _device_of(segmenter)
    labels = []
    for chunk in images.split(INFERENCE_BATCH):
        logits = segmenter(chunk.to(device))  # [n, P, 64, 64]
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)  # [n, P, H, W]
        labels.append(logits.argmax(dim=1).cpu())
    return torch.cat(labels)  # [N, H, W]


class SynthfacesFeatureExtractor(nn.Module):
    """The attribute estimator's penultimate layer as a feature extractor for FID/KID on this domain.

    ``forward(images [N, 3, H, W]) -> [N, num_features]`` accepts uint8 in [0, 255] (what
    ``torchmetrics`` passes to a custom ``feature=`` module) or float in [-1, 1], any size.
    """

    def __init__(self, estimator: AttributeEstimator | None = None, device: str | torch.device | None = None):
        super().__init__()
        self.estimator = estimator if estimator is not None else load_network(ESTIMATOR_PATH, device)
        self.estimator.eval().requires_grad_(False)
        self.num_features = self.estimator.num_features

    def train(self, mode: bool = True) -> "SynthfacesFeatureExtractor":
        """Stay in eval mode: BatchNorm must use its running statistics for features to be comparable."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        images = as_network_input(images).to(_device_of(self.estimator))  # [N, 3, 64, 64]
        return self.estimator.features(images)  # [N, F]
