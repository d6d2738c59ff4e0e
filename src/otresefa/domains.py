"""What a generator's images are about: the one place that decides it.

:func:`domain_of` reads the generator's training metadata (written into every checkpoint that
``otresefa train`` exports, and into the shipped built-in model) and returns its :class:`Domain`:

- the built-in synthetic-face domain (:mod:`otresefa.synthfaces.domain`) for a model trained on its
  renderer, however it was loaded (by name, by file path, a freshly trained one): region names are
  the segmented parts of the image at hand (faces there move, widen and tilt), and the domain reads
  attributes and parts off images with its shipped perception networks;
- the generic domain for any other model: region names are ReSeFa's fixed boxes for aligned
  FFHQ/MetFaces faces (:data:`otresefa.regions.FFHQ_PRESETS`), and nothing is read off images.

The command line, the browser app, the demo and the benchmark all ask this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch

from otresefa.regions import FFHQ_PRESETS, Region, resolve_region

if TYPE_CHECKING:
    from torch import nn

    from otresefa.models import Generator

__all__ = ["Domain", "domain_of", "generic_domain", "region_for"]

SYNTHFACES = "synthfaces"
"""The training metadata's ``domain`` of models trained on the built-in renderer."""


@dataclass(frozen=True)
class Domain:
    """What can be said about a generator's images beyond their pixels.

    Attributes
    ----------
    name : str
        Shown in reports (``"synthfaces"``, ``"generic"``).
    region_names : tuple of str
        The region names this domain understands: per-image parts when ``named_region`` is set,
        else keys of ``presets``.
    presets : mapping
        Fixed boxes ``name -> [center_row, center_col, height, width]`` at 256 px, or empty.
    segment : callable or None
        ``images [N, 3, S, S] -> Long[N, S, S]`` part maps.
    named_region : callable or None
        ``(image [3, S, S] or part map [S, S], name) -> Region``; ``ValueError`` when the part is
        not in that image.
    part_names : tuple of str
        Labels of the part maps.
    estimate_attributes : callable or None
        ``images -> [N, A]`` in [0, 1].
    attribute_names : tuple of str
        The ``A`` attribute names.
    attribute_valid : callable or None
        ``attributes [N, A] -> bool [N, A]``: which estimates mean something (None: all).
    main_attributes : mapping
        Region name -> the attributes that "+" increases (orientation and target).
    sign_names : mapping
        Region name -> (name of "-", name of "+"), e.g. ``("close", "open")``.
    revealed_parts : mapping
        Region name -> parts whose appearing area is measured.
    real_images : callable or None
        ``(n, seed, size) -> [n, 3, size, size]`` in [-1, 1]: the domain's real data.
    features : callable or None
        ``() -> nn.Module``: the domain's FID/KID feature extractor.
    reference_edit : callable or None
        ``(region name, size) -> (RMS change inside, % of the change outside)`` of a ground-truth
        edit of the region's main attributes.
    fingerprint : str
        Identifies the networks behind ``segment``, ``estimate_attributes`` and ``features`` (part of
        every benchmark cell's key: cells measured with other networks are recomputed).
    """

    name: str
    region_names: tuple[str, ...] = ()
    presets: Mapping[str, Sequence[float]] = field(default_factory=dict)
    segment: Callable[[torch.Tensor], torch.Tensor] | None = None
    named_region: Callable[[torch.Tensor, str], Region] | None = None
    part_names: tuple[str, ...] = ()
    estimate_attributes: Callable[[torch.Tensor], torch.Tensor] | None = None
    attribute_names: tuple[str, ...] = ()
    attribute_valid: Callable[[torch.Tensor], torch.Tensor] | None = None
    main_attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sign_names: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    revealed_parts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    real_images: Callable[[int, int, int], torch.Tensor] | None = None
    features: Callable[[], "nn.Module"] | None = None
    reference_edit: Callable[[str, int], tuple[float, float]] | None = None
    fingerprint: str = ""

    def is_per_image(self, spec: Any) -> bool:
        """Whether ``spec`` names a part that is segmented on each image (not one fixed region)."""
        return self.named_region is not None and isinstance(spec, str) and spec in self.region_names

    def region(self, spec: Any, image: torch.Tensor | None, size: int) -> Region:
        """The region ``spec`` at ``size``: a part segmented on ``image [3, R, R]`` when ``spec``
        is one of this domain's per-image names, else a fixed region (preset, box, mask file,
        :class:`Region`) through :func:`~otresefa.regions.resolve_region`.

        Raises
        ------
        ValueError
            For an unknown name, or a part not found in ``image`` (the message says which).
        """
        if self.is_per_image(spec):
            if image is None:
                raise ValueError(f"region {spec!r} is segmented on each image of the {self.name} domain; "
                                 "give the image")
            return self.named_region(image, spec).resized(size).check_usable()
        return resolve_region(spec, size, presets=dict(self.presets))


def generic_domain() -> Domain:
    """Any generator: regions are ReSeFa's FFHQ boxes, boxes and mask files; no attributes."""
    return Domain("generic", region_names=tuple(FFHQ_PRESETS), presets=FFHQ_PRESETS)


def domain_of(G: "Generator", device: str | torch.device | None = None) -> Domain:
    """The domain of ``G``'s images, decided from its training metadata.

    Parameters
    ----------
    G : Generator
        A loaded generator (its ``training_metadata``, when it has one, names the data domain).
    device : str or torch.device, optional
        Where the domain's perception networks run (default: ``G``'s device).
    """
    metadata = getattr(G, "training_metadata", None) or {}
    if metadata.get("domain") == SYNTHFACES:
        from otresefa.synthfaces.domain import synthfaces_domain

        return synthfaces_domain(G.device if device is None else device)
    return generic_domain()


def region_for(G: "Generator", w: torch.Tensor, spec: Any, size: int | None = None,
               domain: Domain | None = None) -> Region:
    """The region ``spec`` on ``G``'s image of ``w [w_dim]`` (or a W+ latent), at ``size``.

    Per-image names (the built-in domain's parts) are segmented on the image of ``w``, which is
    rendered only for them; anything else resolves without rendering.
    """
    domain = domain_of(G) if domain is None else domain
    size = G.img_resolution if size is None else size
    image = None
    if domain.is_per_image(spec):
        from otresefa.latents import one_ws

        with torch.no_grad():
            image = G.synthesis(one_ws(G, w).to(G.device), noise_mode="const")[0].cpu()  # [3, R, R]
    return domain.region(spec, image, size)
