"""StyleGAN2 and StyleGAN3 networks in plain PyTorch, compatible with NVIDIA's stylegan2-ada-pytorch
and stylegan3 (parameter names, constructor arguments and outputs)."""

from otresefa.models.base import GeneratorBase
from otresefa.models.generator import (
    Generator,
    MappingNetwork,
    SynthesisBlock,
    SynthesisNetwork,
    check_layer_indices,
    layer_mask,
)
from otresefa.models.layers import Conv2dLayer, FullyConnectedLayer, SynthesisLayer, ToRGBLayer
from otresefa.models.stylegan3 import AliasFreeLayer, AliasFreeSynthesis, FourierInput, StyleGAN3Generator

# Generator class of each family, by the ``family`` name the native format records.
GENERATOR_CLASSES: dict[str, type[GeneratorBase]] = {cls.family: cls for cls in (Generator, StyleGAN3Generator)}

__all__ = [
    "AliasFreeLayer",
    "AliasFreeSynthesis",
    "Conv2dLayer",
    "FourierInput",
    "FullyConnectedLayer",
    "GENERATOR_CLASSES",
    "Generator",
    "GeneratorBase",
    "MappingNetwork",
    "StyleGAN3Generator",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
    "check_layer_indices",
    "layer_mask",
]
