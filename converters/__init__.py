"""PyTorch / diffusers checkpoints → Flax state, read with safetensors (never torch).

Data flows one way: ``converters`` imports :mod:`syncos_jax.backbones` (the target models, their
abstract shapes and their weights folders); the backbones never import ``converters``.
"""
