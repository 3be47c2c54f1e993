"""PyTorch / diffusers checkpoints → Flax state, read with safetensors (never torch). Empty for now."""
