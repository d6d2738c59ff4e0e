"""StyleGAN2 training objectives.

From Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020), Sec. 3.1-3.2
and Appendix B, and "A Style-Based Generator Architecture for GANs" (CVPR 2019), Sec. 3.1:

- Non-saturating logistic loss: ``L_D = softplus(D(G(z))) + softplus(-D(x))``, ``L_G = softplus(-D(G(z)))``.
- R1 regularisation of D on real data: ``gamma / 2 * ||grad_x D(x)||^2``.
- Path-length regularisation of G: ``(||J_w^T y||_2 - a)^2`` with ``y ~ N(0, I) / sqrt(H W)`` and
  ``a`` a running mean of the lengths (decay 0.01), weight 2, on half-size minibatches.
- Lazy regularisation: the regularisers run on every k-th minibatch only (k = 16 for R1, 4 for
  path length), multiplied by k; the optimiser's learning rate and betas are adjusted by
  ``mb_ratio = k / (k + 1)`` to account for the extra steps.
- Style mixing: with probability 0.9 an image uses a second latent's w from a random crossover layer on.

The loop drives the losses phase by phase: ``"Gmain"`` / ``"Greg"`` / ``"Gboth"`` and ``"Dmain"`` /
``"Dreg"`` / ``"Dboth"`` (the ``both`` phases are used when a regulariser is not lazy).  Each call of
:meth:`StyleGAN2Loss.accumulate_gradients` runs forward and backward; the caller zeroes gradients
and steps the optimiser.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PHASES = ("Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth")


def g_nonsaturating_loss(gen_logits: torch.Tensor) -> torch.Tensor:
    """Per-sample non-saturating generator loss ``softplus(-D(G(z)))``: ``[N, 1] -> [N, 1]``."""
    return F.softplus(-gen_logits)


def d_logistic_loss(real_logits: torch.Tensor, gen_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample discriminator losses ``(softplus(-D(x)), softplus(D(G(z))))``."""
    return F.softplus(-real_logits), F.softplus(gen_logits)


def r1_penalty(D: nn.Module, real_img: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared gradient norm of D's logits with respect to the real images.

    Returns ``(penalty [N], real_logits [N, 1])``; the penalty keeps its graph (``create_graph``) so
    that it can be back-propagated into D's parameters.
    """
    real_img = real_img.detach().requires_grad_(True)
    real_logits = D(real_img, c)  # [N, 1]
    (grads,) = torch.autograd.grad(real_logits.sum(), real_img, create_graph=True)  # [N, C, H, W]
    return grads.square().sum(dim=[1, 2, 3]), real_logits


def mix_styles(ws: torch.Tensor, ws2: torch.Tensor, prob: float) -> torch.Tensor:
    """Style mixing: per sample, with probability ``prob`` use ``ws2`` from a uniformly drawn
    crossover layer in ``[1, num_ws)`` on.  ``ws, ws2: [N, num_ws, w_dim] -> [N, num_ws, w_dim]``.

    Uses the global torch RNG (seeded by the training loop).
    """
    n, num_ws, _ = ws.shape
    if prob <= 0 or num_ws < 2:
        return ws
    cutoff = torch.randint(1, num_ws, [n], device=ws.device)  # [N]
    mixed = torch.rand([n], device=ws.device) < prob  # [N]
    cutoff = torch.where(mixed, cutoff, torch.full_like(cutoff, num_ws))
    layer = torch.arange(num_ws, device=ws.device)  # [num_ws]
    take_second = (layer[None, :] >= cutoff[:, None])[:, :, None]  # [N, num_ws, 1]
    return torch.where(take_second, ws2, ws)


def path_lengths(gen_img: torch.Tensor, gen_ws: torch.Tensor) -> torch.Tensor:
    """``||J_w^T y||_2`` per sample, with ``y ~ N(0, I) / sqrt(H W)`` (keeps the graph).

    ``gen_img: [N, C, H, W]`` computed from ``gen_ws: [N, num_ws, w_dim]`` -> ``[N]``.  The norm is
    over ``w_dim`` and averaged (as a squared norm) over the layers, as the reference does.
    """
    h, w = gen_img.shape[2:]
    noise = torch.randn_like(gen_img) / math.sqrt(h * w)
    (grads,) = torch.autograd.grad((gen_img * noise).sum(), gen_ws, create_graph=True)  # [N, num_ws, w_dim]
    return grads.square().sum(dim=2).mean(dim=1).sqrt()


def lazy_regularization(lr: float, betas: tuple[float, float], interval: int | None) -> tuple[float, tuple[float, float]]:
    """Adam settings for a network regularised every ``interval`` minibatches.

    With lazy regularisation the optimiser takes ``interval + 1`` steps per ``interval`` minibatches;
    ``mb_ratio = interval / (interval + 1)`` scales the learning rate and, as an exponent, the betas
    so that the effective step size and moment time constants match those of the non-lazy schedule.
    """
    if not interval:
        return lr, tuple(betas)
    mb_ratio = interval / (interval + 1)
    return lr * mb_ratio, tuple(beta**mb_ratio for beta in betas)


@dataclass
class LossSettings:
    r1_gamma: float = 10.0
    r1_interval: int | None = 16  # None or 0: regularise in every D step
    style_mixing_prob: float = 0.9
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    pl_interval: int | None = 4  # None or 0: regularise in every G step


class StyleGAN2Loss:
    """Non-saturating logistic loss with lazy R1 and path-length regularisation, and style mixing.

    ``pl_mean`` (the running mean of the path lengths) is training state: save it with
    :meth:`state_dict`.  ``G`` must expose ``mapping`` and ``synthesis`` (see
    :class:`otresefa.models.Generator`); ``D`` maps ``(img, c)`` to logits ``[N, 1]``.

    Two options concern the passes that differentiate once (the main losses) only; the regularisers
    differentiate twice (``create_graph``) and always run the eager float32 networks:

    - ``compile=True`` runs G's synthesis network and D through ``torch.compile`` (compiled graphs
      have no double backward);
    - ``main_dtype=torch.bfloat16`` runs them under ``torch.autocast`` (convolutions and matrix
      products in bfloat16, accumulated in float32; parameters, losses and the optimiser stay
      float32), as NVIDIA's training runs its high-resolution layers in float16.
    """

    def __init__(self, G: nn.Module, D: nn.Module, settings: LossSettings | None = None, compile: bool = False,
                 main_dtype: torch.dtype | None = None, **overrides):
        self.G = G
        self.D = D
        self.main_dtype = main_dtype
        # Static shapes: the shapes never change within a run, and automatic dynamic shapes failed
        # to compile the FIR filters (torch 2.13).
        self._synthesis_main = torch.compile(G.synthesis, dynamic=False) if compile else G.synthesis
        self._D_main = torch.compile(D, dynamic=False) if compile else D
        self.settings = settings or LossSettings()
        for key, value in overrides.items():
            if not hasattr(self.settings, key):
                raise TypeError(f"unknown loss setting {key!r}")
            setattr(self.settings, key, value)
        self.pl_mean = torch.zeros([], device=next(G.parameters()).device)

    # -- schedule ---------------------------------------------------------------------------------
    def g_phases(self) -> list[tuple[str, int]]:
        """``[(phase, interval)]`` for G; the regulariser's loss is multiplied by its interval."""
        s = self.settings
        if s.pl_weight == 0:
            return [("Gmain", 1)]
        if not s.pl_interval:
            return [("Gboth", 1)]
        return [("Gmain", 1), ("Greg", s.pl_interval)]

    def d_phases(self) -> list[tuple[str, int]]:
        s = self.settings
        if s.r1_gamma == 0:
            return [("Dmain", 1)]
        if not s.r1_interval:
            return [("Dboth", 1)]
        return [("Dmain", 1), ("Dreg", s.r1_interval)]

    # -- networks ---------------------------------------------------------------------------------
    def run_G(self, z: torch.Tensor, c: torch.Tensor | None = None, update_w_avg: bool = False,
              noise_mode: str = "random", twice_differentiable: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [N, z_dim] -> (img [N, C, R, R], ws [N, num_ws, w_dim])`` with style mixing."""
        ws = self.G.mapping(z, c, update_w_avg=update_w_avg)  # [N, num_ws, w_dim]
        if self.settings.style_mixing_prob > 0:
            ws2 = self.G.mapping(torch.randn_like(z), c)  # the second latent never updates w_avg
            ws = mix_styles(ws, ws2, self.settings.style_mixing_prob)
        if twice_differentiable:
            return self.G.synthesis(ws, noise_mode=noise_mode), ws
        with self._main_precision(ws.device):
            img = self._synthesis_main(ws, noise_mode=noise_mode)
        return img.float(), ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        with self._main_precision(img.device):
            return self._D_main(img, c).float()

    def _main_precision(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.main_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.main_dtype)

    # -- phases -----------------------------------------------------------------------------------
    def accumulate_gradients(
        self,
        phase: str,
        real_img: torch.Tensor | None,
        gen_z: torch.Tensor,
        gain: float = 1.0,
        real_c: torch.Tensor | None = None,
        gen_c: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """Forward and backward for one phase; returns detached statistics.

        ``gain`` multiplies the phase's loss: the loop passes the phase's interval, which makes a lazy
        regulariser's contribution match that of a per-minibatch one.
        """
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")
        s = self.settings
        stats: dict[str, float] = {}
        do_gmain = phase in ("Gmain", "Gboth")
        do_pl = phase in ("Greg", "Gboth") and s.pl_weight != 0
        do_dmain = phase in ("Dmain", "Dboth")
        do_r1 = phase in ("Dreg", "Dboth") and s.r1_gamma != 0

        if do_gmain or do_pl:
            d_flags = _freeze(self.D)
            try:
                total = gen_z.new_zeros([])
                if do_gmain:
                    gen_img, _ = self.run_G(gen_z, gen_c, update_w_avg=True)
                    gen_logits = self.run_D(gen_img, gen_c)  # [N, 1]
                    loss_g = g_nonsaturating_loss(gen_logits).mean()
                    total = total + loss_g
                    stats["loss_G"] = loss_g.item()
                    stats["scores_fake_G"] = gen_logits.mean().item()
                if do_pl:
                    batch = max(gen_z.shape[0] // s.pl_batch_shrink, 1)
                    gen_img, gen_ws = self.run_G(gen_z[:batch], None if gen_c is None else gen_c[:batch],
                                                 twice_differentiable=True)
                    lengths = path_lengths(gen_img, gen_ws)  # [batch]
                    pl_mean = self.pl_mean.lerp(lengths.mean(), s.pl_decay)
                    self.pl_mean.copy_(pl_mean.detach())
                    pl_penalty = (lengths - pl_mean).square().mean()
                    total = total + pl_penalty * s.pl_weight
                    stats["pl_penalty"] = pl_penalty.item()
                    stats["pl_mean"] = self.pl_mean.item()
                total.mul(gain).backward()
            finally:
                _restore(self.D, d_flags)

        if do_dmain or do_r1:
            total = gen_z.new_zeros([])
            if do_dmain:
                with torch.no_grad():
                    gen_img, _ = self.run_G(gen_z, gen_c)
                gen_logits = self.run_D(gen_img, gen_c)
                real_logits = self.run_D(real_img, real_c)
                loss_real, loss_gen = d_logistic_loss(real_logits, gen_logits)
                loss_d = loss_real.mean() + loss_gen.mean()
                total = total + loss_d
                stats["loss_D"] = loss_d.item()
                stats["loss_D_real"] = loss_real.mean().item()
                stats["loss_D_fake"] = loss_gen.mean().item()
                stats["scores_real"] = real_logits.mean().item()
                stats["scores_fake"] = gen_logits.mean().item()
            if do_r1:
                penalty, _ = r1_penalty(self.D, real_img, real_c)  # [N]
                total = total + penalty.mean() * (s.r1_gamma / 2)
                stats["r1_penalty"] = penalty.mean().item()
            total.mul(gain).backward()
        return stats

    # -- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"pl_mean": self.pl_mean.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.pl_mean.copy_(state["pl_mean"].to(self.pl_mean.device))


def _freeze(module: nn.Module) -> list[bool]:
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    return flags


def _restore(module: nn.Module, flags: list[bool]) -> None:
    for p, flag in zip(module.parameters(), flags):
        p.requires_grad_(flag)
