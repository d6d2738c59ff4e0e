"""What every generator family shares: the interface the rest of the project programs against.

A generator is ``G(z, c) = synthesis(mapping(z, c))`` with

- ``mapping``: a :class:`~otresefa.models.generator.MappingNetwork` (``fc{i}``, ``w_avg``), which maps
  ``z [N, z_dim]`` to ``ws [N, num_ws, w_dim]`` with the truncation trick;
- ``synthesis``: ``synthesis(ws, noise_mode, force_fp32) -> img [N, img_channels, R, R]`` and
  ``synthesis.affine_layers(layers)``, the style affines that take a w (used by SeFa);
- ``z_dim``, ``c_dim``, ``w_dim``, ``num_ws``, ``img_resolution``, ``img_channels`` and
  ``init_kwargs`` (the constructor arguments, which rebuild the same network).

Loaders attach ``checkpoint_id`` (file stem and content hash), ``checkpoint_source`` and, for the
project's own files, ``training_metadata``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from otresefa.io import save_module

GENERATOR_FORMAT = "otresefa-generator"
"""The ``format`` of the project's generator files (their header also names the family)."""
GENERATOR_FORMAT_VERSION = 1


class GeneratorBase(nn.Module):
    """Base class of the StyleGAN2 and StyleGAN3 generators (subclasses set ``family``, build
    ``synthesis`` and ``mapping`` and define :attr:`config`)."""

    family: str = ""

    @classmethod
    def for_loading(cls, **init_kwargs) -> GeneratorBase:
        """A network of this configuration that a state dict will fill (``load_state_dict``).

        Subclasses skip the work that loading replaces (StyleGAN3 does not design its filters:
        checkpoints carry them).
        """
        return cls(**init_kwargs)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
        force_fp32: bool = False,
    ) -> torch.Tensor:
        # z: [N, z_dim] -> img: [N, img_channels, R, R]
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32)

    @property
    def device(self) -> torch.device:
        return self.mapping.fc0.weight.device

    @property
    def config(self) -> str:
        """The architecture variant within the family (StyleGAN2: ``"skip"``, ``"resnet"``,
        ``"orig"``; StyleGAN3: ``"T"``, ``"R"``)."""
        raise NotImplementedError

    def architecture(self) -> dict:
        """A summary of the network: family, config, resolution, latent sizes, widths."""
        return {
            "family": self.family,
            "config": self.config,
            "resolution": self.img_resolution,
            "num_ws": self.num_ws,
            "z_dim": self.z_dim,
            "w_dim": self.w_dim,
            "c_dim": self.c_dim,
            "mapping_layers": self.mapping.num_layers,
            "channel_base": self.synthesis.channel_base,
            "channel_max": self.synthesis.channel_max,
        }

    def save(self, path: str | Path, metadata: dict | None = None, overwrite: bool = False) -> Path:
        """Write the project's format (:mod:`otresefa.checkpoints.native`): one safetensors file with
        the family, the constructor kwargs and ``metadata`` in its header, atomically.

        Raises
        ------
        FileExistsError
            When ``path`` exists and not ``overwrite``.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        return save_module(self, path, GENERATOR_FORMAT, GENERATOR_FORMAT_VERSION, metadata,
                           extra_header={"generator": self.family})
