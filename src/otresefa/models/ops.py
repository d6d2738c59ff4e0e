"""Low-level tensor operations of StyleGAN2 and StyleGAN3, in plain PyTorch (no compiled extensions).

Implemented from the published architectures (Karras et al., "Analyzing and Improving the Image
Quality of StyleGAN", CVPR 2020; "Training GANs with Limited Data", NeurIPS 2020; "Alias-Free
Generative Adversarial Networks", NeurIPS 2021) so that the numbers agree with NVIDIA's
stylegan2-ada-pytorch and stylegan3:

- FIR resampling (``upfirdn2d``): zero-insertion up-sampling, padding, a separable (1-D taps) or
  non-separable (2-D taps) FIR filter, decimation.
- ``bias_act``: bias, leaky ReLU, a gain that keeps the signal's second moment, an optional clamp.
- ``modulated_conv2d``: weight modulation by per-sample styles and demodulation (paper eq. 1-3 of
  StyleGAN2), computed by scaling the activations instead of the weights, so that one shared weight
  serves the whole batch (and batched forward-mode AD stays cheap).
- ``conv2d_resample``: convolution fused with 2x up- or down-sampling, with the same pixel alignment
  as the reference implementation.
- ``filtered_lrelu``: StyleGAN3's alias-free non-linearity, the leaky ReLU evaluated at a higher
  sampling rate between a low-pass up-sampling and a low-pass down-sampling filter.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

ACTIVATION_GAINS = {"linear": 1.0, "lrelu": math.sqrt(2.0)}
LRELU_SLOPE = 0.2


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """Separable FIR filter as a 2-D kernel that sums to one.  Returns ``[len(taps), len(taps)]``."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)  # [fh, fw]
    return f / f.sum()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Up-sample by zero insertion, pad, convolve with the FIR filter ``f``, down-sample.

    Parameters
    ----------
    x : torch.Tensor
        ``[N, C, H, W]``.
    f : torch.Tensor or None
        ``[fh, fw]`` non-separable filter, ``[k]`` separable filter (applied along the width, then
        the height), or None for the identity (a single tap of 1).  True convolution: the filter is
        flipped before correlating.
    padding : sequence of int
        ``(left, right, top, bottom)``; negative values crop.
    gain : float
        Overall gain; ``up**2`` keeps the mean intensity after zero insertion.

    Returns
    -------
    torch.Tensor
        ``[N, C, (H*up + top + bottom - fh + 1) // down, (W*up + left + right - fw + 1) // down]``
        (rounded up).
    """
    pad_left, pad_right, pad_top, pad_bottom = padding
    if f is not None and f.ndim == 1:
        # A separable filter is two 1-D passes, each carrying the square root of the gain.
        taps = f * math.sqrt(gain)
        x = _upfirdn_1d(x, taps, up, down, pad_left, pad_right, dim=3)
        return _upfirdn_1d(x, taps, up, down, pad_top, pad_bottom, dim=2)
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])  # [N, C, H, up, W, up]
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [pad_left, pad_right, pad_top, pad_bottom])  # negative values crop
    if f is None:
        return (x if gain == 1 else x * gain)[:, :, ::down, ::down]
    kernel = (f * gain).flip([0, 1]).to(x.dtype)  # [fh, fw]
    # Depthwise; the stride decimates without computing the samples that would be dropped.
    return _depthwise_filter(x, kernel[None, None].expand(c, 1, *kernel.shape), down)


def _upfirdn_1d(x: torch.Tensor, taps: torch.Tensor, up: int, down: int, pad0: int, pad1: int, dim: int) -> torch.Tensor:
    """:func:`upfirdn2d` along one spatial dimension (``dim`` 2: height, 3: width) of ``[N, C, H, W]``.

    Up-sampling is a strided transposed convolution, which skips the products with inserted zeros
    (``up`` times fewer than filtering the zero-inserted signal), then a crop to the padded window;
    down-sampling is a strided convolution.
    """
    c, length, k = x.shape[1], x.shape[dim], taps.numel()
    shape, stride_up, stride_down = [c, 1, 1, 1], [1, 1], [1, 1]
    shape[dim], stride_up[dim - 2], stride_down[dim - 2] = k, up, down
    kernel = taps.to(x.dtype).reshape(shape[2:]).expand(shape)  # [C, 1, k, 1] or [C, 1, 1, k]
    if up > 1:
        # Full convolution of the zero-inserted signal (without its trailing zeros): (L-1)*up + k samples.
        x = F.conv_transpose2d(x, kernel, stride=stride_up, groups=c)
        start = k - 1 - pad0  # where the padded, zero-inserted window starts in it
        window = length * up + pad0 + pad1 - k + 1
        pads = [-start, start + window - x.shape[dim]]
        x = F.pad(x, pads + [0, 0] if dim == 3 else [0, 0] + pads)
        index = [slice(None)] * 4
        index[dim] = slice(None, None, down)
        return x[tuple(index)]
    pads = [pad0, pad1]
    x = F.pad(x, pads + [0, 0] if dim == 3 else [0, 0] + pads)
    return F.conv2d(x, kernel.flip([dim]), stride=stride_down, groups=c)


def _depthwise_filter(x: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """``conv2d(x, kernel, stride=stride, groups=C)`` for a fixed filter ``kernel [C, 1, fh, fw]``.

    ``[N, C, H, W] -> [N, C, (H - fh) // stride + 1, (W - fw) // stride + 1]``; the stride filters
    only the pixels that are kept.
    """
    return _DepthwiseFilter.apply(x, kernel, stride)


class _DepthwiseFilter(torch.autograd.Function):
    """A fixed depthwise filter whose gradient is the transposed filter, itself differentiable.

    R1 and path-length regularisation differentiate the FIR resampling twice.  PyTorch's double
    backward of a grouped convolution then loops over the channels to compute the filter's own
    gradient, which nothing needs: 55-75 ms for one [16, 32, 64, 64] filter on 2 CPU cores against
    under 10 ms for a forward, a transposed and again a forward filter, which is what this
    function's backward and double backward are.  Forward values are those of ``F.conv2d``.
    """

    generate_vmap_rule = True  # for torch.func (the Jacobian module's vmap over jvp)

    @staticmethod
    def forward(x: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
        # The cast serves backward passes, which run outside autocast on reduced-precision gradients.
        return F.conv2d(x, kernel.to(x.dtype), stride=stride, groups=kernel.shape[0])

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, kernel, stride = inputs
        # An attribute, not save_for_backward: forward-mode AD (jvp) needs it too; the filter is constant.
        ctx.kernel, ctx.stride, ctx.size = kernel, stride, x.shape[-2:]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _TransposedDepthwiseFilter.apply(grad, ctx.kernel, ctx.stride, ctx.size), None, None

    @staticmethod
    def jvp(ctx, x_tangent: torch.Tensor, kernel_tangent, stride_tangent) -> torch.Tensor:
        return _DepthwiseFilter.apply(x_tangent, ctx.kernel, ctx.stride)  # linear in x


class _TransposedDepthwiseFilter(torch.autograd.Function):
    """The adjoint of :class:`_DepthwiseFilter`: ``[N, C, H', W'] -> [N, C, *size]``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad: torch.Tensor, kernel: torch.Tensor, stride: int, size: Sequence[int]) -> torch.Tensor:
        # Rows and columns that the strided forward skipped at the end come back as output padding.
        extra = [size[i] - ((grad.shape[2 + i] - 1) * stride + kernel.shape[2 + i]) for i in range(2)]
        return F.conv_transpose2d(grad, kernel.to(grad.dtype), stride=stride, output_padding=extra,
                                  groups=kernel.shape[0])

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, ctx.kernel, ctx.stride, ctx.size = inputs

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _DepthwiseFilter.apply(grad, ctx.kernel, ctx.stride), None, None, None

    @staticmethod
    def jvp(ctx, grad_tangent: torch.Tensor, kernel_tangent, stride_tangent, size_tangent) -> torch.Tensor:
        return _TransposedDepthwiseFilter.apply(grad_tangent, ctx.kernel, ctx.stride, ctx.size)


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """2x FIR up-sampling with the reference alignment.  ``[N, C, H, W] -> [N, C, H*up, W*up]``."""
    fw = f.shape[-1]
    pad0, pad1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(pad0, pad1, pad0, pad1), gain=up * up)


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add a per-channel bias (channel dim 1), apply the activation, scale by ``gain``, clamp.

    ``gain`` defaults to the activation's variance-preserving gain (sqrt(2) for leaky ReLU).
    """
    if bias is not None:
        x = x + bias.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif activation != "linear":
        raise ValueError(f"unknown activation {activation!r}; expected 'linear' or 'lrelu'")
    gain = ACTIVATION_GAINS[activation] if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _flip_if(weight: torch.Tensor, flip: bool) -> torch.Tensor:
    return weight.flip([2, 3]) if flip else weight


def conv2d_resample(
    x: torch.Tensor,
    weight: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    flip_weight: bool = True,
) -> torch.Tensor:
    """2-D convolution with optional 2x FIR up- or down-sampling.

    The pixel alignment is that of the reference implementation: up-sampling is a transposed
    convolution of stride ``up`` followed by the FIR filter, down-sampling the FIR filter followed by
    a strided convolution.  ``flip_weight=False`` computes a true convolution instead of a
    correlation (the reference uses that for up-sampling layers).

    Args:
        x: ``[N, C_in, H, W]``.
        weight: ``[C_out, C_in, kh, kw]`` (square kernels).
    Returns:
        ``[N, C_out, H * up / down, W * up / down]`` (with ``padding = kh // 2``).
    """
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample supports up-sampling or down-sampling, not both")
    kernel_size = weight.shape[-1]
    if up == 1 and down == 1:
        return F.conv2d(x, _flip_if(weight, not flip_weight), padding=padding)
    assert f is not None, "resampling needs a FIR filter"
    fw = f.shape[-1]
    if up > 1:
        pad0 = padding + (fw + up - 1) // 2
        pad1 = padding + (fw - up) // 2
        if kernel_size == 1:
            # A 1x1 convolution commutes with linear up-sampling: convolve first, on fewer pixels.
            x = F.conv2d(x, _flip_if(weight, not flip_weight))
            return upfirdn2d(x, f, up=up, padding=(pad0, pad1, pad0, pad1), gain=up * up)
        pad0 -= kernel_size - 1
        pad1 -= kernel_size - up
        assert pad0 >= 0 and pad1 >= 0, "unsupported kernel/padding combination for up-sampling"
        # The reference passes the opposite flip flag to its transposed convolution.
        x = F.conv_transpose2d(x, _flip_if(weight, flip_weight).transpose(0, 1), stride=up)
        return upfirdn2d(x, f, padding=(pad0, pad1, pad0, pad1), gain=up * up)
    pad0 = padding + (fw - down + 1) // 2
    pad1 = padding + (fw - down) // 2
    if kernel_size == 1:
        x = upfirdn2d(x, f, down=down, padding=(pad0, pad1, pad0, pad1))
        return F.conv2d(x, _flip_if(weight, not flip_weight))
    x = upfirdn2d(x, f, padding=(pad0, pad1, pad0, pad1))
    return F.conv2d(x, _flip_if(weight, not flip_weight), stride=down)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    input_gain: torch.Tensor | None = None,
) -> torch.Tensor:
    """Modulated convolution of StyleGAN2 (weight demodulation), batch-shared weight form.

    Modulating the weight by ``s`` (``w'_oi = w_oi s_i``) equals scaling the input channels by ``s``;
    demodulation divides output channel ``o`` by ``sqrt(sum_i s_i^2 sum_k w_oik^2 + 1e-8)``.

    Parameters
    ----------
    x : torch.Tensor
        ``[N, C_in, H, W]``.
    weight : torch.Tensor
        ``[C_out, C_in, k, k]``.
    styles : torch.Tensor
        ``[N, C_in]``.
    noise : torch.Tensor, optional
        Broadcastable to the output, added after demodulation.
    input_gain : torch.Tensor, optional
        Scalar that multiplies the input and does not enter the demodulation (StyleGAN3 divides its
        layers' inputs by their trained RMS magnitude this way).

    Returns
    -------
    torch.Tensor
        ``[N, C_out, H * up + 2 * padding - k + 1, ...]`` (``[N, C_out, H * up, W * up]`` with
        ``padding = k // 2``).
    """
    n, in_channels = styles.shape
    assert x.shape[:2] == (n, in_channels), f"x {tuple(x.shape)} does not match styles {tuple(styles.shape)}"
    if x.dtype == torch.float16 and demodulate:
        # Keep float16 activations in range; the scale cancels in the demodulation.
        weight = weight * (1 / math.sqrt(weight[0].numel())) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    weight = weight.to(x.dtype)
    styles = styles.to(x.dtype)
    modulation = styles if input_gain is None else styles * input_gain.to(x.dtype)  # [N, C_in]
    x = x * modulation[:, :, None, None]  # [N, C_in, H, W]
    x = conv2d_resample(x, weight, f=resample_filter, up=up, padding=padding, flip_weight=flip_weight)
    if demodulate:
        weight_energy = weight.square().sum(dim=[2, 3])  # [C_out, C_in]
        dcoefs = (styles.square() @ weight_energy.t() + 1e-8).rsqrt()  # [N, C_out]
        x = x * dcoefs[:, :, None, None]
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def filtered_lrelu(
    x: torch.Tensor,
    up_filter: torch.Tensor | None,
    down_filter: torch.Tensor | None,
    bias: torch.Tensor,
    up: int,
    down: int,
    padding: Sequence[int],
    activation: str = "lrelu",
    clamp: float | None = None,
) -> torch.Tensor:
    """StyleGAN3's filtered non-linearity (Karras et al. 2021, sec. 3.2 and Appendix C).

    Adds the bias, up-samples by ``up`` (zero insertion, ``padding``, ``up_filter``, gain ``up**2``),
    applies the activation (leaky ReLU with gain sqrt(2), or ``"linear"``) and the clamp at the
    higher rate, then low-pass filters with ``down_filter`` and keeps every ``down``-th sample.  The
    bias is added before up-sampling, as in the reference, so that it is filtered like the signal
    at the borders.

    Parameters
    ----------
    x : torch.Tensor
        ``[N, C, H, W]``.
    up_filter, down_filter : torch.Tensor or None
        1-D (separable) or 2-D (e.g. radially symmetric) FIR taps; None is the identity.
    bias : torch.Tensor
        ``[C]``.
    padding : sequence of int
        ``(left, right, top, bottom)`` applied after zero insertion.

    Returns
    -------
    torch.Tensor
        ``[N, C, H', W']`` with ``H' = ceil((H * up + top + bottom - fu + 1 - fd + 1) / down)``.
    """
    x = bias_act(x, bias)
    x = upfirdn2d(x, up_filter, up=up, padding=padding, gain=up * up)
    x = bias_act(x, activation=activation, clamp=clamp)
    return upfirdn2d(x, down_filter, down=down)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` to unit mean square along ``dim`` (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
