"""otresefa: local image editing with StyleGAN generators.

Region semantic discovery by optimal transport (OT-ReSeFa) and its baselines. The public API reads
like the paper::

    import otresefa

    G = otresefa.load_generator("synthfaces")            # or an NVIDIA .pkl / rosinality .pt
    w = otresefa.w_from_seed(G, 4, truncation_psi=0.7)
    J = otresefa.jacobian(G, w)                            # d image / d w, [H, W, 512]  (sec. 3.1)
    n = otresefa.discover(J, "mouth", method="ot-resefa")  # Algorithm 1 (sec. 3.3)
    images = otresefa.edit(G, w, n, alphas=[-3, 0, 3])     # eq. 1

The names are imported on first use, so ``import otresefa`` (and the command line's ``--help``)
does not pay for importing PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

from otresefa._version import __version__

_PUBLIC = {
    "Directions": "otresefa.directions",
    "Region": "otresefa.regions",
    "discover": "otresefa.discovery",
    "edit": "otresefa.editing",
    "jacobian": "otresefa.jacobian",
    "load_generator": "otresefa.checkpoints",
    "load_jacobian": "otresefa.jacobian",
    "region_grams": "otresefa.grams",
    "resolve_region": "otresefa.regions",
    "save_jacobian": "otresefa.jacobian",
    "w_from_seed": "otresefa.latents",
    "ws_from_seed": "otresefa.latents",
    "z_from_seed": "otresefa.latents",
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'otresefa' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
