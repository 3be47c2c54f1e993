"""Test-session settings: offline Hugging Face, a persistent JAX compilation cache, 64-bit off."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402


def pytest_configure(config):
    cache_dir = config.cache.mkdir("jax_compilation_cache") if config.cache is not None else None
    if cache_dir is not None:
        jax.config.update("jax_compilation_cache_dir", str(cache_dir))
        # Cache every compiled program, however small or quick to compile.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
