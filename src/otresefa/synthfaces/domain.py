"""The built-in face domain as a :class:`~otresefa.domains.Domain`: everything its ground truth allows.

Regions are the segmented parts of each image (:func:`~otresefa.synthfaces.regions.synthface_region`),
attributes come from the shipped estimator, real images from the renderer, FID/KID features from the
estimator's penultimate layer, and a region's *reference edit* is the renderer's own edit of its main
attribute: how much a perfect edit changes the region, and how much it moves the surroundings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from otresefa.domains import SYNTHFACES, Domain
from otresefa.io import file_fingerprint

__all__ = ["MAIN_ATTRIBUTES", "REFERENCE_EDIT", "REFERENCE_FACES", "REFERENCE_SEED", "SIGN_NAMES",
           "reference_edit", "synthfaces_domain"]

MAIN_ATTRIBUTES = {"mouth": ("mouth_open",), "eyes": ("eye_size",), "nose": ("nose_length", "nose_width")}
"""The attributes that "+" increases, per region."""
SIGN_NAMES = {"mouth": ("close", "open"), "eyes": ("smaller", "larger"), "nose": ("smaller", "larger")}
REVEALED_PARTS = {"mouth": ("mouth_cavity", "teeth", "tongue")}
"""The parts an edit of the region reveals (occluded content): their area gained is measured."""
REFERENCE_EDIT = (0.25, 0.75)
"""The reference edit: the region's main attributes moved from the first to the second value (half
their range) in the renderer, on :data:`REFERENCE_FACES` faces."""
REFERENCE_FACES = 16
REFERENCE_SEED = 4_000_000


def reference_edit(region: str, size: int) -> tuple[float, float]:
    """``(RMS change inside, % of the change outside)`` of the region, averaged over faces, when the
    renderer moves the region's main attributes from ``REFERENCE_EDIT[0]`` to ``REFERENCE_EDIT[1]``
    (regions from the renderer's exact part maps)."""
    from otresefa.metrics.locality import change_outside_fraction, rms_change_inside
    from otresefa.synthfaces import attribute_index, render, sample_attributes
    from otresefa.synthfaces.regions import synthface_region

    attributes = sample_attributes(REFERENCE_FACES, REFERENCE_SEED)  # [n, A]
    before, after = attributes.clone(), attributes.clone()
    for name in MAIN_ATTRIBUTES[region]:
        before[:, attribute_index(name)], after[:, attribute_index(name)] = REFERENCE_EDIT
    start, end = render(before, size), render(after, size)
    masks = [synthface_region(parts, region) for parts in start.parts]
    inside = [float(rms_change_inside(a, b, m)) for a, b, m in zip(start.images, end.images, masks)]
    outside = [float(change_outside_fraction(a, b, m)) for a, b, m in zip(start.images, end.images, masks)]
    return float(np.mean(inside)), 100 * float(np.mean(outside))


def synthfaces_domain(device: str | torch.device | None = None) -> Domain:
    """The built-in face domain, its perception networks on ``device``.

    Raises
    ------
    FileNotFoundError
        When the shipped perception networks are missing from the installation.
    """
    from otresefa.synthfaces import ATTRIBUTE_NAMES, PART_NAMES, attribute_visibility
    from otresefa.synthfaces.perception import (ESTIMATOR_PATH, SEGMENTER_PATH, SynthfacesFeatureExtractor,
                                                estimate_attributes, load_estimator, load_segmenter, segment)
    from otresefa.synthfaces.quality import rendered_images
    from otresefa.synthfaces.regions import SYNTHFACE_REGIONS, synthface_region

    missing = [str(p) for p in (ESTIMATOR_PATH, SEGMENTER_PATH) if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"the built-in face domain's perception networks are missing from the installation: "
                                f"{', '.join(missing)}")
    estimator, segmenter = load_estimator(device), load_segmenter(device)

    return Domain(
        name=SYNTHFACES,
        region_names=tuple(SYNTHFACE_REGIONS),
        segment=lambda images: segment(images, segmenter),
        named_region=synthface_region,  # an image [3, S, S] (segmented) or a part map [S, S]
        part_names=tuple(PART_NAMES),
        estimate_attributes=lambda images: estimate_attributes(images, estimator),
        attribute_names=tuple(ATTRIBUTE_NAMES),
        attribute_valid=attribute_visibility,  # a frame's thickness means nothing without glasses
        main_attributes=MAIN_ATTRIBUTES,
        sign_names=SIGN_NAMES,
        revealed_parts=REVEALED_PARTS,
        real_images=lambda n, seed, size: rendered_images(n, seed, size),
        features=lambda: SynthfacesFeatureExtractor(estimator),
        reference_edit=reference_edit,
        fingerprint=file_fingerprint(ESTIMATOR_PATH) + file_fingerprint(SEGMENTER_PATH),
    )
