"""Test-session settings: offline Hugging Face, a persistent JAX compilation cache, 64-bit off."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    # pytest's cache directory when the cacheprovider plugin is on; the same place when it is off
    # (``-p no:cacheprovider``), so the compilation cache is never silently dropped.
    cache = getattr(config, "cache", None)
    if cache is not None:
        cache_dir = cache.mkdir("jax_compilation_cache")
    else:
        cache_dir = config.rootpath / ".pytest_cache" / "d" / "jax_compilation_cache"
        cache_dir.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    # Cache every compiled program, however small or quick to compile.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A weights file of a tiny random toy model (quick to compile) for command-line and script smoke tests."""
    from flax import nnx

    from syncos_jax.backbones.toy.model import ToyConfig, ToyVideoDiT
    from syncos_jax.backbones.toy.weights import save_toy_weights

    cfg = ToyConfig(dim=16, depth=1, heads=2)
    path = str(tmp_path_factory.mktemp("w") / "tiny.safetensors")
    save_toy_weights(path, cfg, nnx.state(ToyVideoDiT(cfg, rngs=nnx.Rngs(0)), nnx.Param), {"step": 0})
    return path
