"""otresefa: local image editing with StyleGAN2 generators.

Region semantic discovery by optimal transport (OT-ReSeFa) and its baselines.
"""

__version__ = "0.1.0"
