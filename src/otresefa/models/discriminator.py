"""StyleGAN2 discriminator (``resnet`` architecture), in plain PyTorch.

Written from the published architecture (Karras et al., "Analyzing and Improving the Image Quality
of StyleGAN", CVPR 2020, Fig. 7 and Table 1 config E/F; "Training GANs with Limited Data", NeurIPS
2020, Appendix B), with module and parameter names that follow NVIDIA's stylegan2-ada-pytorch
(``b{res}.fromrgb``, ``b{res}.conv0``, ``b{res}.conv1``, ``b{res}.skip``, ``b4.mbstd``, ``b4.conv``,
``b4.fc``, ``b4.out``, and ``mapping.*`` when conditional) so that reference state dicts load.

Layout, for an ``R x R`` input and ``C(res) = min(channel_base // res, channel_max)`` channels::

    img [N, img_channels, R, R]
      b{R}.fromrgb      1x1 conv + lrelu                 -> [N, C(R), R, R]
      for res = R, R/2, ..., 8 (one resnet block each):
        skip            1x1 conv, 2x FIR down, no bias, gain sqrt(1/2)     -> [N, C(res/2), res/2, res/2]
        conv0           3x3 conv + lrelu                                    -> [N, C(res), res, res]
        conv1           3x3 conv, 2x FIR down + lrelu, gain sqrt(1/2)      -> [N, C(res/2), res/2, res/2]
        x = skip + conv1
      b4 (epilogue):
        mbstd           minibatch standard deviation     -> [N, C(4) + mbstd_num_channels, 4, 4]
        conv            3x3 conv + lrelu                 -> [N, C(4), 4, 4]
        fc              dense + lrelu on the flattened map -> [N, C(4)]
        out             dense                            -> [N, 1] (or [N, cmap_dim], projected on the label embedding)
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import nn

from otresefa.models import ops
from otresefa.models.generator import MappingNetwork
from otresefa.models.layers import Conv2dLayer, FullyConnectedLayer


class DiscriminatorBlock(nn.Module):
    """One resolution of the resnet discriminator: (fromRGB at the top) -> conv0 -> conv1 (2x down) + skip."""

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        # Unused by the block itself; kept so that reference state dicts load with strict=True.
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        if in_channels == 0:
            # Only the first (highest-resolution) block sees the image.
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(
            tmp_channels, out_channels, kernel_size=3, activation="lrelu", down=2,
            resample_filter=resample_filter, conv_clamp=conv_clamp,
        )
        self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2, resample_filter=resample_filter)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None) -> torch.Tensor:
        # x: [N, C_in, res, res] (None for the first block), img: [N, img_channels, res, res] (first block only)
        # -> [N, C_out, res/2, res/2]
        if self.in_channels == 0:
            assert img is not None and img.shape[1:] == (self.img_channels, self.resolution, self.resolution)
            x = self.fromrgb(img)  # [N, C_tmp, res, res]
        assert x is not None and x.shape[2:] == (self.resolution, self.resolution)
        # Residual connection with a sqrt(1/2) gain on both branches keeps the signal variance.
        y = self.skip(x, gain=math.sqrt(0.5))  # [N, C_out, res/2, res/2]
        x = self.conv0(x)  # [N, C_tmp, res, res]
        x = self.conv1(x, gain=math.sqrt(0.5))  # [N, C_out, res/2, res/2]
        return y + x


class MinibatchStdLayer(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, Sec. 3; grouped as in StyleGAN2).

    The batch is split into groups of ``group_size`` samples, sample ``n`` going to group
    ``n mod (N / group_size)``.  The channels are split into ``num_channels`` slices; for each group
    and slice the per-feature standard deviation over the group's members is averaged over the
    slice's features and pixels, giving one scalar, appended to every member as a constant map.
    """

    def __init__(self, group_size: int | None, num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, C, H, W] -> [N, C + num_channels, H, W]
        n, c, h, w = x.shape
        group = min(self.group_size, n) if self.group_size else n
        slices = self.num_channels
        if n % group != 0:
            raise ValueError(f"minibatch std: batch size {n} is not divisible by the group size {group}")
        if c % slices != 0:
            raise ValueError(f"minibatch std: {c} channels cannot be split into {slices} slices")
        y = x.reshape(group, n // group, slices, c // slices, h, w)  # [G, M, F, c, H, W]
        y = y - y.mean(dim=0)  # deviation from the group mean
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [M, F, c, H, W] standard deviation over the group
        y = y.mean(dim=[2, 3, 4])  # [M, F]
        y = y.reshape(-1, slices, 1, 1).repeat(group, 1, h, w)  # [N, F, H, W]; row n is group n mod M
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 head: minibatch std -> 3x3 conv -> dense -> output dense (1 logit or a label projection)."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int = 4,
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation="lrelu", conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None) -> torch.Tensor:
        # x: [N, C, 4, 4], cmap: [N, cmap_dim] or None -> [N, 1]
        assert x.shape[1:] == (self.in_channels, self.resolution, self.resolution)
        if self.mbstd is not None:
            x = self.mbstd(x)  # [N, C + F, 4, 4]
        x = self.conv(x)  # [N, C, 4, 4]
        x = self.fc(x.flatten(1))  # [N, C]
        x = self.out(x)  # [N, 1] or [N, cmap_dim]
        if self.cmap_dim > 0:
            assert cmap is not None
            # Projection discriminator: inner product with the label embedding, unit-variance scaled.
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))  # [N, 1]
        return x


class Discriminator(nn.Module):
    """StyleGAN2 ``resnet`` discriminator: image ``[N, img_channels, R, R]`` (and label) -> logits ``[N, 1]``."""

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        mapping_kwargs: dict | None = None,
    ):
        super().__init__()
        log2 = int(math.log2(img_resolution)) if img_resolution >= 4 else 0
        if img_resolution < 8 or img_resolution != 2**log2:
            raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
        self.init_kwargs = copy.deepcopy(
            dict(c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels, channel_base=channel_base,
                 channel_max=channel_max, mbstd_group_size=mbstd_group_size, mbstd_num_channels=mbstd_num_channels,
                 conv_clamp=conv_clamp, cmap_dim=cmap_dim, resample_filter=list(resample_filter),
                 mapping_kwargs=dict(mapping_kwargs or {}))
        )
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]  # R, R/2, ..., 8
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        self.cmap_dim = cmap_dim
        for res in self.block_resolutions:
            in_channels = channels[res] if res < img_resolution else 0
            block = DiscriminatorBlock(
                in_channels, channels[res], channels[res // 2], resolution=res, img_channels=img_channels,
                resample_filter=resample_filter, conv_clamp=conv_clamp,
            )
            setattr(self, f"b{res}", block)
        if c_dim > 0:
            # Label embedding (z_dim = 0: the mapping network sees only the label).
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **(mapping_kwargs or {})
            )
        self.b4 = DiscriminatorEpilogue(
            channels[4], cmap_dim=cmap_dim, resolution=4, mbstd_group_size=mbstd_group_size,
            mbstd_num_channels=mbstd_num_channels, conv_clamp=conv_clamp,
        )

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        # img: [N, img_channels, R, R], c: [N, c_dim] (conditional only) -> logits [N, 1]
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(f"img must have shape [N, {', '.join(map(str, expected))}], got {list(img.shape)}")
        img = img.to(torch.float32)
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img if res == self.img_resolution else None)
        cmap = None
        if self.c_dim > 0:
            if c is None or tuple(c.shape) != (img.shape[0], self.c_dim):
                raise ValueError(f"this discriminator is conditional: c must have shape [N, {self.c_dim}]")
            z = img.new_zeros([img.shape[0], 0])
            cmap = self.mapping(z, c)  # [N, cmap_dim]
        out = self.b4(x, cmap)
        assert out.shape == (img.shape[0], 1)
        return out
