"""StyleGAN3 generator (configs T and R) in plain PyTorch.

Written from Karras et al., "Alias-Free Generative Adversarial Networks" (NeurIPS 2021; sec. 3 and
Appendices C-F) and the published tensor names and shapes, so that a state dict of NVIDIA's
stylegan3 ``training/networks_stylegan3.Generator`` loads with ``load_state_dict(strict=True)`` and
the constructor arguments (``_init_kwargs`` of an official pickle) build the same network:

- ``mapping``: the StyleGAN2 :class:`MappingNetwork` (``fc{i}``, ``w_avg``), 2 layers by default;
- ``synthesis.input``: Fourier features (``freqs [C, 2]``, ``phases [C]``) in a frame that w0
  rotates and translates (``affine``: w -> (cos, sin, t_x, t_y)), composed with the user's
  ``transform [3, 3]``, then mixed by ``weight [C, C]``;
- ``synthesis.L{i}_{size}_{channels}``: modulated convolution (demodulated, input divided by the
  trained ``magnitude_ema``'s square root) followed by the filtered leaky ReLU (``up_filter``,
  ``down_filter``: 1-D Kaiser-windowed FIR filters, or 2-D radially symmetric jinc filters for
  config R); the last one (``L{num_layers}``) is the 1x1 to-RGB layer without non-linearity;
- the image is scaled by ``output_scale``.

The layer schedule (paper Appendix F, Fig. 4 of the supplement): cutoff ``f_c`` and stopband
``f_t`` grow geometrically from ``first_cutoff``/``first_stopband`` to ``R/2`` and
``R/2 * last_stopband_rel`` over the first ``num_layers - num_critical`` layers; each layer's
sampling rate is the smallest power of two >= ``2 f_t`` (at most ``R``), it carries a margin of
``margin_size`` pixels on each side (the last two layers none), and its width is
``channel_base / 2 / f_c`` capped at ``channel_max``.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import numpy as np
import scipy.signal
import scipy.special
import torch
from torch import nn

from otresefa.models import ops
from otresefa.models.base import GeneratorBase
from otresefa.models.generator import MappingNetwork, check_layer_indices
from otresefa.models.layers import NOISE_MODES, FullyConnectedLayer

# NVIDIA's stylegan3 MappingNetwork defaults, where they differ from StyleGAN2's.
MAPPING_DEFAULTS = {"num_layers": 2, "w_avg_beta": 0.998}


def lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> torch.Tensor | None:
    """Windowed-sinc low-pass FIR filter (paper Appendix C.1, C.6).

    Parameters
    ----------
    numtaps : int
        Taps per dimension; 1 means no filter.
    cutoff : float
        Cutoff frequency ``f_c`` (same unit as ``fs``).
    width : float
        Transition band width, ``2 * half_width``; sets the Kaiser window's beta.
    fs : float
        Sampling rate at which the filter runs.
    radial : bool
        False: separable 1-D Kaiser-windowed sinc (``scipy.signal.firwin``). True: radially
        symmetric 2-D filter, the ideal disc low-pass ``f_c J1(2 pi f_c r) / r`` (jinc) times the
        separable 2-D Kaiser window, normalised to sum to 1.

    Returns
    -------
    torch.Tensor or None
        ``[numtaps]`` (separable) or ``[numtaps, numtaps]`` (radial) float32 taps; None for 1 tap.
    """
    if numtaps < 1:
        raise ValueError(f"a filter needs at least one tap, got {numtaps}")
    if numtaps == 1:
        return None
    if not radial:
        return torch.as_tensor(scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs), dtype=torch.float32)
    position = (np.arange(numtaps) - (numtaps - 1) / 2) / fs  # tap offsets from the centre; even numtaps: r > 0
    r = np.hypot(position[:, None], position[None, :])  # [numtaps, numtaps]
    taps = scipy.special.j1(2 * np.pi * cutoff * r) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    taps = taps * np.outer(window, window)
    return torch.as_tensor(taps / taps.sum(), dtype=torch.float32)


def layer_schedule(
    img_resolution: int,
    img_channels: int,
    channel_base: int,
    channel_max: int,
    num_layers: int,
    num_critical: int,
    first_cutoff: float,
    first_stopband: float,
    last_stopband_rel: float,
    margin_size: int,
) -> dict[str, np.ndarray]:
    """Per-layer cutoffs, stopbands, sampling rates, half-widths, sizes and channels.

    Returns
    -------
    dict
        ``cutoffs``, ``stopbands``, ``sampling_rates``, ``half_widths``, ``sizes``, ``channels``:
        each ``[num_layers + 1]`` (entry 0 also describes the input layer's output).
    """
    if num_layers <= num_critical:
        raise ValueError(f"num_layers ({num_layers}) must exceed num_critical ({num_critical})")
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    progress = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)  # 0 -> 1, then flat
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** progress
    stopbands = first_stopband * (last_stopband / first_stopband) ** progress
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution  # the critically sampled end has no margin
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return dict(cutoffs=cutoffs, stopbands=stopbands, sampling_rates=sampling_rates, half_widths=half_widths,
                sizes=sizes, channels=channels)


class FourierInput(nn.Module):
    """Fourier-feature input (paper sec. 3.1, Appendix D): w -> ``[N, channels, size, size]``.

    Each channel is ``sin(2 pi (f . p + phi))`` at pixel centres ``p`` (in units of the sampling
    rate, centred on the image), faded out as its frequency approaches the Nyquist rate, and the
    channels are mixed by ``weight``.  w rotates and translates the frame: ``affine(w)`` predicts
    ``(r_c, r_s, t_x, t_y)``, normalised so that ``(r_c, r_s)`` is a unit rotation, and the result is
    applied after the user ``transform``.
    """

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.channels, self.size = channels, size
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        # Random frequencies inside a disc of radius ``bandwidth``, denser near 0; random phases.
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        phases = torch.rand([channels]) - 0.5
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3))  # user transform, [3, 3]
        self.register_buffer("freqs", freqs)  # [C, 2]
        self.register_buffer("phases", phases)  # [C]

    def frame(self, w: torch.Tensor) -> torch.Tensor:
        """``[N, 3, 3]``: rotation @ translation (both from w) @ the user transform."""
        t = self.affine(w)  # [N, 4]
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        cos, sin, tx, ty = t.unbind(dim=1)  # [N] each
        one, zero = torch.ones_like(cos), torch.zeros_like(cos)
        rotation = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=1).reshape(-1, 3, 3)
        translation = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], dim=1).reshape(-1, 3, 3)
        return rotation @ translation @ self.transform

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        # w: [N, w_dim] -> [N, C, size, size]
        transform = self.frame(w)  # [N, 3, 3]
        phases = self.phases + (self.freqs @ transform[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = self.freqs @ transform[:, :2, :2]  # [N, C, 2]: (f_x, f_y)
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        grid = (torch.arange(self.size, device=w.device, dtype=torch.float32) + 0.5 - self.size / 2) / self.sampling_rate
        x = (freqs[:, :, 0, None, None] * grid[None, None, None, :]  # x runs along the width
             + freqs[:, :, 1, None, None] * grid[None, None, :, None]  # y along the height
             + phases[:, :, None, None])  # [N, C, size, size]
        x = torch.sin(x * (2 * math.pi)) * amplitudes[:, :, None, None]
        return torch.einsum("nchw,dc->ndhw", x, self.weight / math.sqrt(self.channels))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, size={self.size}, sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}"


class AliasFreeLayer(nn.Module):
    """Modulated convolution + filtered leaky ReLU (paper sec. 3.2; Appendix C-E).

    The convolution is "full" (padding ``k - 1``); the non-linearity runs at
    ``max(in_rate, out_rate) * lrelu_upsampling`` between a low-pass up-sampling filter (cutoff and
    transition band of the input) and a low-pass down-sampling filter (those of the output).  The
    padding puts the output's samples at the positions of a symmetric grid (Appendix C.3).
    The to-RGB layer (``is_torgb``) is a 1x1 modulated convolution without demodulation, plus bias
    and clamp, with no resampling.
    """

    def __init__(
        self,
        w_dim: int,
        is_torgb: bool,
        is_critically_sampled: bool,
        use_fp16: bool,
        in_channels: int,
        out_channels: int,
        in_size: int,
        out_size: int,
        in_sampling_rate: float,
        out_sampling_rate: float,
        in_cutoff: float,
        out_cutoff: float,
        in_half_width: float,
        out_half_width: float,
        conv_kernel: int = 3,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        use_radial_filters: bool = False,
        conv_clamp: float | None = 256,
        magnitude_ema_beta: float = 0.999,
        design_filters: bool = True,
    ):
        """``magnitude_ema_beta`` is the training-time decay of ``magnitude_ema``; accepted for the
        reference's signature (this project does not train StyleGAN3).  ``design_filters=False``
        leaves the filter buffers zero, for a state dict to fill."""
        super().__init__()
        self.is_torgb = is_torgb
        self.use_fp16 = use_fp16
        self.use_radial_filters = use_radial_filters
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size, self.out_size = int(in_size), int(out_size)
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.up_factor = int(np.rint(rate / in_sampling_rate))
        self.down_factor = int(np.rint(rate / out_sampling_rate))
        if self.up_factor * in_sampling_rate != rate or self.down_factor * out_sampling_rate != rate:
            raise ValueError(f"sampling rates {in_sampling_rate:g} -> {out_sampling_rate:g} are not integer ratios of {rate:g}")
        up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        down_radial = use_radial_filters and not is_critically_sampled
        filters = {
            "up_filter": (up_taps, in_cutoff, in_half_width * 2, False),
            "down_filter": (down_taps, out_cutoff, out_half_width * 2, down_radial),
        }
        for name, (taps, cutoff, width, radial) in filters.items():
            if design_filters:
                taps_tensor = lowpass_filter(taps, cutoff, width, rate, radial=radial)
            else:
                taps_tensor = None if taps == 1 else torch.zeros([taps, taps] if radial else [taps])
            self.register_buffer(name, taps_tensor)

        # Samples wanted before decimation, minus what the up-sampled convolution output has, plus
        # what the two filters consume; half a (up-sampled) input pixel goes to the leading side.
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += up_taps + down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = (pad_lo, pad_hi, pad_lo, pad_hi)

    def forward(self, x: torch.Tensor, w: torch.Tensor, force_fp32: bool = False) -> torch.Tensor:
        # x: [N, C_in, in_size, in_size], w: [N, w_dim] -> [N, C_out, out_size, out_size]
        assert x.shape[1:] == (self.in_channels, self.in_size, self.in_size), f"unexpected input {tuple(x.shape)}"
        styles = self.affine(w)  # [N, C_in]
        weight = self.weight
        if self.is_torgb:
            styles = styles / math.sqrt(self.in_channels * self.conv_kernel**2)
        else:
            # Unit-RMS weight and styles before modulating, as the reference does; demodulation
            # cancels these scales (up to its epsilon).
            weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
            styles = styles * styles.square().mean().rsqrt()
        # Half precision only where it pays: CUDA; CPU float16 convolutions are slow and inexact.
        use_half = self.use_fp16 and not force_fp32 and x.device.type == "cuda"
        x = x.to(torch.float16 if use_half else torch.float32)
        x = ops.modulated_conv2d(
            x, weight, styles, padding=self.conv_kernel - 1, demodulate=not self.is_torgb,
            input_gain=self.magnitude_ema.rsqrt(),
        )
        x = ops.filtered_lrelu(
            x, self.up_filter, self.down_filter, self.bias, up=self.up_factor, down=self.down_factor,
            padding=self.padding, activation="linear" if self.is_torgb else "lrelu", clamp=self.conv_clamp,
        )
        assert x.shape[2:] == (self.out_size, self.out_size), f"layer produced {tuple(x.shape)}"
        return x

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}x{self.in_size}, out={self.out_channels}x{self.out_size}, "
                f"up={self.up_factor}, down={self.down_factor}, torgb={self.is_torgb}, fp16={self.use_fp16}")


class AliasFreeSynthesis(nn.Module):
    """ws ``[N, num_layers + 2, w_dim]`` -> image ``[N, img_channels, R, R]``.

    ws[0] drives the input's transform, ws[i + 1] the layer ``L{i}``.
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_layers: int = 14,
        num_critical: int = 2,
        first_cutoff: float = 2,
        first_stopband: float = 2**2.1,
        last_stopband_rel: float = 2**0.3,
        margin_size: int = 10,
        output_scale: float = 0.25,
        num_fp16_res: int = 4,
        design_filters: bool = True,
        **layer_kwargs,
    ):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.channel_base, self.channel_max = channel_base, channel_max
        self.num_ws = num_layers + 2
        self.output_scale = output_scale
        s = layer_schedule(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
                           first_cutoff, first_stopband, last_stopband_rel, margin_size)
        self.input = FourierInput(w_dim, channels=int(s["channels"][0]), size=int(s["sizes"][0]),
                                  sampling_rate=s["sampling_rates"][0], bandwidth=s["cutoffs"][0])
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = AliasFreeLayer(
                w_dim, is_torgb=(idx == num_layers), is_critically_sampled=(idx >= num_layers - num_critical),
                use_fp16=bool(s["sampling_rates"][idx] * 2**num_fp16_res > img_resolution),
                in_channels=int(s["channels"][prev]), out_channels=int(s["channels"][idx]),
                in_size=int(s["sizes"][prev]), out_size=int(s["sizes"][idx]),
                in_sampling_rate=int(s["sampling_rates"][prev]), out_sampling_rate=int(s["sampling_rates"][idx]),
                in_cutoff=s["cutoffs"][prev], out_cutoff=s["cutoffs"][idx],
                in_half_width=s["half_widths"][prev], out_half_width=s["half_widths"][idx],
                design_filters=design_filters, **layer_kwargs,
            )
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def layers(self) -> list[AliasFreeLayer]:
        return [getattr(self, name) for name in self.layer_names]

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False) -> torch.Tensor:
        """``noise_mode`` is accepted for StyleGAN2's interface; StyleGAN3 has no noise inputs."""
        # ws: [N, num_ws, w_dim] -> img: [N, img_channels, R, R]
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"unknown noise_mode {noise_mode!r}; expected one of {NOISE_MODES}")
        ws = ws.to(torch.float32)
        x = self.input(ws[:, 0])  # [N, C0, size0, size0]
        for idx, layer in enumerate(self.layers()):
            x = layer(x, ws[:, idx + 1], force_fp32=force_fp32)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)

    def affine_layers(self, layers: Sequence[int] | None = None) -> list[tuple[int, str, FullyConnectedLayer]]:
        """The style affines of the modulated convolutions, as ``(ws_index, name, layer)``.

        ``layer.effective_weight()`` is ``[C_in, w_dim]``.  Left out: the input's affine (ws index
        0), which predicts a rotation and translation, not styles, and the to-RGB layer's (as
        StyleGAN2 leaves out toRGB: colours, not content).  ``layers`` keeps only those ws indices.
        """
        found = [(idx + 1, name, layer.affine) for idx, (name, layer) in enumerate(zip(self.layer_names, self.layers()))
                 if not layer.is_torgb]
        if layers is not None:
            check_layer_indices(layers, self.num_ws)
            found = [entry for entry in found if entry[0] in set(layers)]
        return found


class StyleGAN3Generator(GeneratorBase):
    """StyleGAN3 generator ``G(z, c) = synthesis(mapping(z, c))``, constructor as NVIDIA's.

    Parameters
    ----------
    z_dim, c_dim, w_dim, img_resolution, img_channels : int
        As StyleGAN2.
    mapping_kwargs : dict, optional
        :class:`MappingNetwork` options (default 2 layers, ``w_avg_beta`` 0.998).
    **synthesis_kwargs
        :class:`AliasFreeSynthesis` options (``channel_base``, ``channel_max``, ``num_layers``,
        ``num_critical``, ``first_cutoff``, ``first_stopband``, ``last_stopband_rel``,
        ``margin_size``, ``output_scale``, ``num_fp16_res``) and :class:`AliasFreeLayer` options
        (``conv_kernel``, ``filter_size``, ``lrelu_upsampling``, ``use_radial_filters``,
        ``conv_clamp``, ``magnitude_ema_beta``).  Config T is the default; config R is
        ``conv_kernel=1, use_radial_filters=True`` (NVIDIA also doubles the channels).
    """

    family = "stylegan3"

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        *,
        design_filters: bool = True,
        **synthesis_kwargs,
    ):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        self.init_kwargs = copy.deepcopy(
            dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                 mapping_kwargs=mapping_kwargs, **synthesis_kwargs)
        )
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = AliasFreeSynthesis(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                            design_filters=design_filters, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **{**MAPPING_DEFAULTS, **mapping_kwargs})

    @classmethod
    def for_loading(cls, **init_kwargs) -> StyleGAN3Generator:
        """The network with zero filter buffers: checkpoints carry the designed filters."""
        return cls(**init_kwargs, design_filters=False)

    @property
    def config(self) -> str:
        """``"R"`` with radially symmetric filters (rotation equivariance), else ``"T"``."""
        return "R" if self.synthesis.layers()[0].use_radial_filters else "T"
