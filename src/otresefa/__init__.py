"""otresefa: local image editing with StyleGAN2 generators.

Region semantic discovery by optimal transport (OT-ReSeFa) and its baselines. The public API reads
like the paper::

    import otresefa

    G = otresefa.load_generator("synthfaces")            # or an NVIDIA .pkl / rosinality .pt
    w = otresefa.w_from_seed(G, 4, truncation_psi=0.7)
    J = otresefa.jacobian(G, w)                            # d image / d w, [H, W, 512]  (sec. 3.1)
    n = otresefa.discover(J, "mouth", method="ot-resefa")  # Algorithm 1 (sec. 3.3)
    images = otresefa.edit(G, w, n, alphas=[-3, 0, 3])     # eq. 1
"""

__version__ = "0.1.0"

from otresefa.checkpoints import load_generator  # noqa: E402
from otresefa.directions import Directions  # noqa: E402
from otresefa.discovery import discover  # noqa: E402
from otresefa.editing import edit  # noqa: E402
from otresefa.jacobian import jacobian, load_jacobian, region_grams, save_jacobian  # noqa: E402
from otresefa.latents import w_from_seed, ws_from_seed, z_from_seed  # noqa: E402
from otresefa.regions import Region, resolve_region  # noqa: E402

__all__ = [
    "Directions",
    "Region",
    "__version__",
    "discover",
    "edit",
    "jacobian",
    "load_generator",
    "load_jacobian",
    "region_grams",
    "resolve_region",
    "save_jacobian",
    "w_from_seed",
    "ws_from_seed",
    "z_from_seed",
]
