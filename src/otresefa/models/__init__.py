"""StyleGAN2 networks in plain PyTorch, compatible with NVIDIA's stylegan2-ada-pytorch."""

from otresefa.models.generator import (
    Generator,
    MappingNetwork,
    SynthesisBlock,
    SynthesisNetwork,
    check_layer_indices,
    layer_mask,
)
from otresefa.models.layers import Conv2dLayer, FullyConnectedLayer, SynthesisLayer, ToRGBLayer

__all__ = [
    "Conv2dLayer",
    "FullyConnectedLayer",
    "Generator",
    "MappingNetwork",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
    "check_layer_indices",
    "layer_mask",
]
