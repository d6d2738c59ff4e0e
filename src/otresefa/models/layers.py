"""StyleGAN2 layers with equalised learning rate.

Parameter and buffer names follow NVIDIA's stylegan2-ada-pytorch (``weight``, ``bias``,
``affine.weight``, ``noise_const``, ``noise_strength``, ``resample_filter``) so that a state dict
saved by the reference implementation loads with ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from otresefa.models import ops

NOISE_MODES = ("random", "const", "none")


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate: the stored weight is scaled at run time by
    ``lr_multiplier / sqrt(in_features)`` so that every layer learns at the same speed.

    ``weight_init`` scales the initial weights (StyleGAN3's input transform starts at 0) and
    ``bias_init`` is a scalar or one value per output feature.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float | Sequence[float] = 0.0,
        weight_init: float = 1.0,
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) * weight_init / lr_multiplier)
        initial_bias = torch.as_tensor(bias_init, dtype=torch.float32).broadcast_to([out_features]).clone()
        self.bias = nn.Parameter(initial_bias) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def effective_weight(self) -> torch.Tensor:
        """The weight as applied to inputs, ``[out_features, in_features]``."""
        return self.weight * self.weight_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, in_features] -> [N, out_features]
        weight = self.effective_weight().to(x.dtype)
        bias = None if self.bias is None else self.bias * self.bias_gain
        if self.activation == "linear" and bias is not None:
            return torch.addmm(bias.to(x.dtype).unsqueeze(0), x, weight.t())
        return ops.bias_act(x.matmul(weight.t()), bias, activation=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Convolution with equalised learning rate, optional 2x FIR up/down-sampling, bias and
    activation (used by the resnet generator's skips and by the discriminator)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = ops.ACTIVATION_GAINS[activation]
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        # x: [N, C_in, H, W] -> [N, C_out, H * up / down, W * up / down]
        weight = (self.weight * self.weight_gain).to(x.dtype)
        x = ops.conv2d_resample(
            x, weight, f=self.resample_filter, up=self.up, down=self.down, padding=self.padding,
            flip_weight=(self.up == 1),
        )
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return ops.bias_act(x, self.bias, activation=self.activation, gain=self.act_gain * gain, clamp=clamp)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution + noise + bias + leaky ReLU, with an optional 2x up-sampling.

    ``affine`` maps the layer's ``w`` to its styles (one per input channel, bias initialised to 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = ops.ACTIVATION_GAINS[activation]
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def _noise(self, batch: int, noise_mode: str, like: torch.Tensor) -> torch.Tensor | None:
        if not self.use_noise or noise_mode == "none":
            return None
        if noise_mode == "random":
            shape = [batch, 1, self.resolution, self.resolution]
            return torch.randn(shape, device=like.device, dtype=like.dtype) * self.noise_strength
        if noise_mode == "const":
            return self.noise_const * self.noise_strength  # [res, res]
        raise ValueError(f"unknown noise_mode {noise_mode!r}; expected one of {NOISE_MODES}")

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", gain: float = 1.0) -> torch.Tensor:
        # x: [N, C_in, res / up, res / up], w: [N, w_dim] -> [N, C_out, res, res]
        assert x.shape[2] * self.up == self.resolution, f"expected input at {self.resolution // self.up}px, got {x.shape[2]}"
        styles = self.affine(w)  # [N, C_in]
        x = ops.modulated_conv2d(
            x, self.weight, styles, noise=self._noise(x.shape[0], noise_mode, x), up=self.up,
            padding=self.padding, resample_filter=self.resample_filter, flip_weight=(self.up == 1),
        )
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return ops.bias_act(x, self.bias, activation=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to image channels, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # x: [N, C_in, H, W], w: [N, w_dim] -> [N, img_channels, H, W]
        styles = self.affine(w) * self.weight_gain  # [N, C_in]
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=False)
        return ops.bias_act(x, self.bias, clamp=self.conv_clamp)
