"""A region's Gram matrices: what every region method reads from the Jacobians (eqs. 4-8).

For a Jacobian ``J [H, W, d]`` and a mask ``M`` (True = the region, the "foreground"), the
first-order change of the region under an edit ``alpha n`` is ``alpha^2 n^T J_f^T J_f n`` (eqs. 4-6)
with ``J_f`` the rows of ``J`` at foreground pixels (eq. 7) and ``J_b`` those at background pixels
(eq. 8).  ReSeFa's code normalises by the pixel counts, and so does this module::

    A_F = J_f^T J_f / N_f,      A_B = J_b^T J_b / N_b          ([d, d] each)

so that ``n^T A_F n`` is the mean squared change per region pixel.  Averaged over several samples
(each with its own mask: faces move), the Grams give directions that hold for many faces, not one.
:class:`RegionGrams` keeps such an average with its sample count, so averages combine exactly and
only ``[d, d]`` matrices need to be kept, never a ``[S, S, d]`` Jacobian.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from otresefa.regions import Region

__all__ = ["RegionGrams", "average_grams", "region_grams"]


def region_grams(J: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised Gram matrices of the foreground and background rows of ``J`` (eqs. 5-8).

    Parameters
    ----------
    J : Tensor [H, W, d]
        A Jacobian (:func:`otresefa.jacobian`).
    mask : Tensor [H, W]
        True (or non-zero) at the region to edit.

    Returns
    -------
    A_F, A_B : Tensor [d, d]
        ``J_f^T J_f / N_f`` and ``J_b^T J_b / N_b``, float64.

    Raises
    ------
    ValueError
        When the shapes disagree, or the region or the background is empty.
    """
    if J.ndim != 3:
        raise ValueError(f"a Jacobian has shape [H, W, dim], got {list(J.shape)}")
    if tuple(mask.shape) != tuple(J.shape[:2]):
        raise ValueError(f"the region mask is {list(mask.shape)} but the Jacobian is {list(J.shape[:2])} pixels")
    mask = mask.to(torch.bool)
    num_fg = int(mask.sum())
    if num_fg == 0:
        raise ValueError("the region is empty: the mask selects no pixel")
    if num_fg == mask.numel():
        raise ValueError("the region covers the whole image: there is no background to keep unchanged")
    rows = J.reshape(-1, J.shape[-1]).to(torch.float64)  # [H*W, d]
    flat = mask.reshape(-1)
    J_f, J_b = rows[flat], rows[~flat]  # [N_f, d], [N_b, d]
    return J_f.t() @ J_f / J_f.shape[0], J_b.t() @ J_b / J_b.shape[0]


@dataclass(frozen=True)
class RegionGrams:
    """``A_F``, ``A_B`` averaged over ``count`` samples, and the region(s) they were taken on.

    ``a + b`` averages two of them weighted by their counts, so an average built in pieces (in
    chunks, on several workers, resumed) equals the one built at once to float rounding.
    """

    gram_fg: torch.Tensor  # [d, d] float64, mean A_F
    gram_bg: torch.Tensor  # [d, d] float64, mean A_B
    count: int
    region: dict | None = None  # Region.to_json() of the first sample's region: what results record

    def __post_init__(self) -> None:
        if self.gram_fg.shape != self.gram_bg.shape or self.gram_fg.ndim != 2:
            raise ValueError(f"A_F {list(self.gram_fg.shape)} and A_B {list(self.gram_bg.shape)} must be the same [d, d]")
        if self.count < 1:
            raise ValueError(f"Gram matrices need at least one sample, got count={self.count}")

    @property
    def dim(self) -> int:
        return self.gram_fg.shape[0]

    @classmethod
    def of(cls, J: torch.Tensor, region: Region) -> "RegionGrams":
        """The Grams of one Jacobian ``[S, S, d]`` on ``region`` (resized to ``S``)."""
        gram_fg, gram_bg = region_grams(J, region.resized(J.shape[0]).mask)
        return cls(gram_fg, gram_bg, 1, region.to_json())

    def __add__(self, other: "RegionGrams") -> "RegionGrams":
        if not isinstance(other, RegionGrams):
            return NotImplemented
        if other.dim != self.dim:
            raise ValueError(f"cannot average Grams of dimension {self.dim} and {other.dim}")
        total = self.count + other.count
        share = other.count / total
        return RegionGrams(self.gram_fg.lerp(other.gram_fg, share), self.gram_bg.lerp(other.gram_bg, share),
                           total, self.region if self.region is not None else other.region)


def average_grams(jacobians: Sequence[torch.Tensor], regions: Region | Sequence[Region]) -> RegionGrams:
    """The mean ``(A_F, A_B)`` of ``jacobians`` (each ``[S, S, d]``), each on its region.

    Parameters
    ----------
    jacobians : sequence of Tensor [S, S, d]
    regions : Region or sequence of Region
        One region for all, or one per Jacobian (the built-in domain segments each sample).
    """
    jacobians = list(jacobians)
    if not jacobians:
        raise ValueError("no Jacobian given")
    regions = [regions] * len(jacobians) if isinstance(regions, Region) else list(regions)
    if len(regions) != len(jacobians):
        raise ValueError(f"{len(jacobians)} Jacobians but {len(regions)} regions; give one region or one per Jacobian")
    pairs = [region_grams(J, region.resized(J.shape[0]).mask) for J, region in zip(jacobians, regions)]
    return RegionGrams(torch.stack([p[0] for p in pairs]).mean(0), torch.stack([p[1] for p in pairs]).mean(0),
                       len(pairs), regions[0].to_json())
