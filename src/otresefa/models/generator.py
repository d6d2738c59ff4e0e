"""StyleGAN2 generator: mapping network, synthesis network, and the two together.

Architecture- and parameter-name-compatible with NVIDIA's stylegan2-ada-pytorch ``Generator``
(``mapping.fc{i}``, ``mapping.w_avg``, ``synthesis.b{res}.{const,conv0,conv1,torgb,skip}``), written
from the published architecture.  Constructor arguments are the reference's (``z_dim``, ``c_dim``,
``w_dim``, ``img_resolution``, ``img_channels``, ``mapping_kwargs``, ``synthesis_kwargs``), so the
``_init_kwargs`` stored in an official pickle build the same network here.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import torch
from torch import nn

from otresefa.models import ops
from otresefa.models.base import GeneratorBase
from otresefa.models.layers import Conv2dLayer, FullyConnectedLayer, SynthesisLayer, ToRGBLayer
from otresefa.parsing import check_layer_indices

ARCHITECTURES = ("orig", "skip", "resnet")

# Keyword arguments of the reference implementation that only change memory layout or kernel
# choice, never the numbers; accepted so that official checkpoints load, and ignored.
_LAYOUT_ONLY_KWARGS = ("fp16_channels_last", "fused_modconv_default", "channels_last")


class MappingNetwork(nn.Module):
    """z (and optional label c) -> w, broadcast to ``num_ws`` layers, with truncation.

    ``w_avg`` tracks the running mean of w during training (``update_w_avg=True``) and is the centre
    of the truncation trick ``w' = w_avg + psi (w - w_avg)``.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        # z: [N, z_dim], c: [N, c_dim] -> ws: [N, num_ws, w_dim] (or [N, w_dim] when num_ws is None)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        x = ops.normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.shape != (z.shape[0], self.c_dim):
                raise ValueError(f"this generator is conditional: c must have shape [N, {self.c_dim}]")
            y = ops.normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1)  # [N, z_dim + embed_features]
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)  # [N, w_dim]
        if update_w_avg and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            x = truncate(x, self.w_avg, truncation_psi, truncation_cutoff)
        return x


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """Truncation trick on ``ws [N, num_ws, w_dim]``: pull layers ``[:cutoff]`` towards ``w_avg``."""
    cutoff = ws.shape[1] if cutoff is None else cutoff
    head = w_avg.lerp(ws[:, :cutoff], psi)  # [N, cutoff, w_dim]
    return torch.cat([head, ws[:, cutoff:]], dim=1)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (const | 2x up-sampling conv0) -> conv1 -> toRGB."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        **layer_kwargs: Any,
    ):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unsupported synthesis architecture {architecture!r}; expected one of {ARCHITECTURES}")
        self.in_channels = in_channels
        self.resolution = resolution
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.num_conv = 0
        self.num_torgb = 0
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp, **layer_kwargs
        )
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2, resample_filter=resample_filter)

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: str = "random",
        force_fp32: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # x: [N, C_in, res/2, res/2] (None for the first block), img: [N, img_channels, res/2, res/2] or None,
        # ws: [N, num_conv + num_torgb, w_dim] -> x: [N, C_out, res, res], img: [N, img_channels, res, res]
        assert ws.shape[1] == self.num_conv + self.num_torgb
        w_iter = iter(ws.unbind(dim=1))
        # Half precision only where it pays: CUDA; CPU float16 convolutions are slow and inexact.
        use_half = self.use_fp16 and not force_fp32 and ws.device.type == "cuda"
        dtype = torch.float16 if use_half else torch.float32
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])  # [N, C_out, 4, 4]
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode)
        elif self.architecture == "resnet":
            x = x.to(dtype)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, gain=math.sqrt(0.5))
            x = y + x
        else:
            x = x.to(dtype)
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode)
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter)).to(torch.float32)
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws ``[N, num_ws, w_dim]`` -> image ``[N, img_channels, R, R]`` (values roughly in [-1, 1])."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        **block_kwargs: Any,
    ):
        super().__init__()
        log2 = int(math.log2(img_resolution)) if img_resolution >= 4 else 0
        if img_resolution < 4 or img_resolution != 2**log2:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        for key in _LAYOUT_ONLY_KWARGS:
            block_kwargs.pop(key, None)
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.channel_base, self.channel_max = channel_base, channel_max
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim, resolution=res,
                img_channels=img_channels, is_last=(res == img_resolution), use_fp16=(res >= fp16_resolution),
                **block_kwargs,
            )
            self.num_ws += block.num_conv
            if block.is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False) -> torch.Tensor:
        # ws: [N, num_ws, w_dim] -> img: [N, img_channels, R, R]
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for block in self.blocks():
            # toRGB shares its w with the next block's first convolution.
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, noise_mode=noise_mode, force_fp32=force_fp32)
        return img

    def affine_layers(self, layers: Sequence[int] | None = None) -> list[tuple[int, str, FullyConnectedLayer]]:
        """The style affines of the modulated convolutions, as ``(ws_index, name, layer)``.

        ``layer.effective_weight()`` is ``[C_in, w_dim]``: it maps layer ``ws_index``'s w to styles.
        ``layers`` keeps only those ws indices.  toRGB affines are not included (they set colours,
        not content, and SeFa leaves them out).
        """
        found = []
        w_idx = 0
        for block in self.blocks():
            for conv_name in ("conv0", "conv1"):
                if hasattr(block, conv_name):
                    found.append((w_idx, f"b{block.resolution}.{conv_name}", getattr(block, conv_name).affine))
                    w_idx += 1
        if layers is not None:
            check_layer_indices(layers, self.num_ws)
            found = [entry for entry in found if entry[0] in set(layers)]
        return found


def layer_mask(layers: Sequence[int] | None, num_ws: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``[num_ws]`` float mask, 1 at the selected ws indices (all when ``layers`` is None)."""
    if layers is None:
        return torch.ones(num_ws, device=device)
    check_layer_indices(layers, num_ws)
    mask = torch.zeros(num_ws, device=device)
    mask[list(layers)] = 1.0
    return mask


class Generator(GeneratorBase):
    """StyleGAN2 generator ``G(z, c) = synthesis(mapping(z, c))``."""

    family = "stylegan2"

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        synthesis_kwargs: dict | None = None,
    ):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs or {})
        self.init_kwargs = copy.deepcopy(
            dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                 mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs)
        )
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    @property
    def config(self) -> str:
        return self.synthesis.blocks()[-1].architecture
