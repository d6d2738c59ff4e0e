"""FID and KID between two image sets, through ``torchmetrics``, on features of the user's choice.

Both distances compare feature vectors ``phi(x)`` of a real and a generated (here: edited) set:

- FID (Heusel et al. 2017): ``||mu_r - mu_g||^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` with the
  features' means ``mu`` and covariances ``S``;
- KID (Binkowski et al. 2018): the unbiased squared MMD with the cubic polynomial kernel
  ``k(a, b) = (a . b / F + 1)^3`` (``F`` = feature size), averaged over ``subsets`` random subsets of
  ``subset_size`` samples of each set; reported x 1e4 (:data:`KID_SCALE`), as the paper's Table 1.

Feature extractors are ``torch.nn.Module`` s mapping uint8 images ``[N, 3, H, W]`` in [0, 255] to
``[N, F]`` (torchmetrics' contract for a custom ``feature=``):

- :func:`inception_features`: the standard FID Inception-v3 (2048-d pool features) from a weights
  file the user already has (torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``).  It
  needs the optional ``torch-fidelity`` package.  Nothing here ever downloads weights: without a path
  there is no Inception network;
- the built-in face domain's estimator features (``otresefa.synthfaces.SynthfacesFeatureExtractor``),
  the only meaningful choice on that domain (Inception was trained on photographs);
- any module of the user's.

Features are extracted once per set (:func:`image_features`) and the distances computed from them
(:func:`fid_from_features`, :func:`kid_from_features`), so one real set serves many edited sets.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
from torchmetrics.image.kid import KernelInceptionDistance

__all__ = ["KID_SCALE", "INCEPTION_FEATURES", "inception_features", "to_uint8_images", "image_features",
           "fid_from_features", "kid_from_features", "frechet_distance", "kernel_distance"]

KID_SCALE = 1e4
"""KID is reported multiplied by this (the paper's Table 1 does the same)."""

INCEPTION_FEATURES = 2048
"""Size of the Inception-v3 pool features used by FID and KID."""

DEFAULT_KID_SUBSETS = 100


def to_uint8_images(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (float; the generator's range) or uint8 -> uint8 ``[N, 3, H, W]`` in [0, 255].

    Quantising as an image file would (round, clip) makes generated and loaded real images alike.
    """
    images = torch.as_tensor(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images [N, 3, H, W], got shape {list(images.shape)}")
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise ValueError(f"expected uint8 images or float images in [-1, 1], got dtype {images.dtype}")
    if not torch.isfinite(images).all():
        raise ValueError("the images contain NaN or inf")
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def inception_features(weights_path: str | os.PathLike) -> nn.Module:
    """The standard FID Inception-v3 feature extractor (uint8 ``[N, 3, H, W]`` -> ``[N, 2048]``, any
    size: it resizes to 299 itself), from a local weights file.

    Args:
        weights_path: torch-fidelity's Inception weights (``weights-inception-2015-12-05-6726825d.pth``),
            passed to torchmetrics' ``feature_extractor_weights_path``; it is never downloaded.
    Raises:
        FileNotFoundError: when the file does not exist.
        ModuleNotFoundError: when ``torch-fidelity`` (which holds the network's definition) is missing.
    """
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Inception weights file not found: {path} (FID/KID with Inception need the "
                                "standard weights file, weights-inception-2015-12-05-6726825d.pth, on disk)")
    try:
        import torch_fidelity  # noqa: F401  (torchmetrics' Inception network lives there)
    except ImportError:
        raise ModuleNotFoundError("Inception features need the optional package torch-fidelity: "
                                  "pip install torch-fidelity") from None
    return NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(INCEPTION_FEATURES)],
                              feature_extractor_weights_path=str(path)).eval()


def image_features(images: torch.Tensor, extractor: nn.Module, batch_size: int = 64) -> torch.Tensor:
    """``extractor``'s features of ``images`` (uint8, or float in [-1, 1]) -> float64 ``[N, F]``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    images = to_uint8_images(images)  # [N, 3, H, W]
    device = next((p.device for p in extractor.parameters()), torch.device("cpu"))
    with torch.no_grad():
        chunks = [extractor(chunk.to(device)).double().cpu() for chunk in images.split(batch_size)]
    features = torch.cat(chunks).reshape(images.shape[0], -1)  # [N, F]
    if not torch.isfinite(features).all():
        raise FloatingPointError("the feature extractor returned NaN or inf")
    return features


class _GivenFeatures(nn.Module):
    """Identity "extractor": lets the torchmetrics metrics consume features computed beforehand."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _check_feature_sets(real: torch.Tensor, fake: torch.Tensor, minimum: int) -> tuple[torch.Tensor, torch.Tensor]:
    real, fake = torch.as_tensor(real, dtype=torch.float64), torch.as_tensor(fake, dtype=torch.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected two feature sets [N, F] with the same F, got {list(real.shape)} and {list(fake.shape)}")
    if min(len(real), len(fake)) < minimum:
        raise ValueError(f"need at least {minimum} samples in each set, got {len(real)} real and {len(fake)} generated")
    return real, fake


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID ``||mu_r - mu_g||^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` of features ``[N_r, F]`` and ``[N_g, F]``.

    Estimating ``F x F`` covariances needs more samples than features for a stable value (the paper's
    1,000 real / 500 edited images on 2048-d features are on the low side).
    """
    real, fake = _check_feature_sets(real, fake, 2)
    metric = FrechetInceptionDistance(feature=_GivenFeatures(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    # the matrix square root's round-off can leave a tiny negative value for identical sets
    return max(float(metric.compute()), 0.0)


def kid_from_features(real: torch.Tensor, fake: torch.Tensor, subset_size: int | None = None,
                      subsets: int = DEFAULT_KID_SUBSETS, seed: int = 0) -> tuple[float, float]:
    """KID x 1e4 of features ``[N_r, F]`` and ``[N_g, F]``: mean and standard deviation over subsets.

    ``subset_size`` defaults to ``min(1000, N_r, N_g)``; the random subsets are drawn from ``seed``.
    KID is unbiased, so sets from one distribution give values scattered around 0 (also below it).
    """
    real, fake = _check_feature_sets(real, fake, 2)
    size = min(1000, len(real), len(fake)) if subset_size is None else int(subset_size)
    if not 2 <= size <= min(len(real), len(fake)):
        raise ValueError(f"subset_size must be between 2 and the smaller set's size ({min(len(real), len(fake))}), "
                         f"got {size}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer.*")
        metric = KernelInceptionDistance(feature=_GivenFeatures(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):  # torchmetrics draws the subsets from the global generator
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean) * KID_SCALE, float(std) * KID_SCALE


def frechet_distance(real_images: torch.Tensor, fake_images: torch.Tensor, extractor: nn.Module,
                     batch_size: int = 64) -> float:
    """FID between two image sets (uint8, or float in [-1, 1]) on ``extractor``'s features."""
    return fid_from_features(image_features(real_images, extractor, batch_size),
                             image_features(fake_images, extractor, batch_size))


def kernel_distance(real_images: torch.Tensor, fake_images: torch.Tensor, extractor: nn.Module,
                    subset_size: int | None = None, subsets: int = DEFAULT_KID_SUBSETS, seed: int = 0,
                    batch_size: int = 64) -> tuple[float, float]:
    """KID x 1e4 (mean, std over subsets) between two image sets on ``extractor``'s features."""
    return kid_from_features(image_features(real_images, extractor, batch_size),
                             image_features(fake_images, extractor, batch_size), subset_size, subsets, seed)
