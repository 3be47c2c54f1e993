"""diffusers CogVideoX → this library: the transformer here, and the whole pipeline (:func:`convert_pipeline`).

    syncos convert cogvideox SRC DST [--dtype bf16]

``SRC`` is a diffusers folder (``transformer/config.json`` and ``diffusion_pytorch_model*.safetensors``,
possibly sharded with an index json; ``text_encoder/`` + ``tokenizer/`` and ``vae/`` when present),
or the ``transformer`` subfolder itself. :func:`convert_folder` converts the transformer:
``DST`` receives the orbax parameters and the config in the model's own format
(:func:`syncos_jax.backbones.cogvideox.save_weights`); :func:`syncos_jax.backbones.cogvideox.load`
reads them back without converting again. :func:`convert_pipeline` (what ``syncos convert`` runs)
also converts the text encoder into ``DST/text_encoder`` (:mod:`converters.t5`) and the VAE into
``DST/vae`` (:mod:`converters.cogvideox_vae`), all or nothing. This module only holds what is about
the conversion (the rule table, the diffusers folder layout); the model's shapes and weights folder
come from :mod:`syncos_jax.backbones.cogvideox`, which never imports this module.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

from flax import nnx

from converters.common import ConversionError, Rule, convert, read_safetensors
from syncos_jax.backbones.cogvideox import check_compatible, model_abstract, save_weights
from syncos_jax.backbones.weights_folder import read_json_object

__all__ = ["PARTS", "RULES", "convert_folder", "convert_pipeline", "pipeline_parts", "transformer_folder"]

_LN = [(r"(.+)\.weight", "{1}.scale", "norm"), (r"(.+)\.bias", "{1}.bias", "identity")]

RULES: tuple[Rule, ...] = (
    Rule(r"patch_embed\.proj\.weight", "patch_embed.proj.kernel", "conv2d"),
    Rule(r"patch_embed\.proj\.bias", "patch_embed.proj.bias"),
    Rule(r"patch_embed\.text_proj\.weight", "patch_embed.text_proj.kernel", "linear"),
    Rule(r"patch_embed\.text_proj\.bias", "patch_embed.text_proj.bias"),
    Rule(r"time_embedding\.(linear_[12])\.weight", "time_embedding.{1}.kernel", "linear"),
    Rule(r"time_embedding\.(linear_[12])\.bias", "time_embedding.{1}.bias"),
    Rule(r"transformer_blocks\.(\d+)\.(norm[12])\.linear\.weight", "transformer_blocks.{1}.{2}.linear.kernel", "linear"),
    Rule(r"transformer_blocks\.(\d+)\.(norm[12])\.linear\.bias", "transformer_blocks.{1}.{2}.linear.bias"),
    Rule(r"transformer_blocks\.(\d+)\.(norm[12])\.norm\.weight", "transformer_blocks.{1}.{2}.norm.scale", "norm"),
    Rule(r"transformer_blocks\.(\d+)\.(norm[12])\.norm\.bias", "transformer_blocks.{1}.{2}.norm.bias"),
    Rule(r"transformer_blocks\.(\d+)\.attn1\.(norm_[qk])\.weight", "transformer_blocks.{1}.attn1.{2}.scale", "norm"),
    Rule(r"transformer_blocks\.(\d+)\.attn1\.(norm_[qk])\.bias", "transformer_blocks.{1}.attn1.{2}.bias"),
    Rule(r"transformer_blocks\.(\d+)\.attn1\.(to_[qkv])\.weight", "transformer_blocks.{1}.attn1.{2}.kernel", "linear"),
    Rule(r"transformer_blocks\.(\d+)\.attn1\.(to_[qkv])\.bias", "transformer_blocks.{1}.attn1.{2}.bias"),
    Rule(r"transformer_blocks\.(\d+)\.attn1\.to_out\.0\.weight", "transformer_blocks.{1}.attn1.to_out.kernel", "linear"),
    Rule(r"transformer_blocks\.(\d+)\.attn1\.to_out\.0\.bias", "transformer_blocks.{1}.attn1.to_out.bias"),
    Rule(r"transformer_blocks\.(\d+)\.ff\.net\.0\.proj\.weight", "transformer_blocks.{1}.ff.proj_in.kernel", "linear"),
    Rule(r"transformer_blocks\.(\d+)\.ff\.net\.0\.proj\.bias", "transformer_blocks.{1}.ff.proj_in.bias"),
    Rule(r"transformer_blocks\.(\d+)\.ff\.net\.2\.weight", "transformer_blocks.{1}.ff.proj_out.kernel", "linear"),
    Rule(r"transformer_blocks\.(\d+)\.ff\.net\.2\.bias", "transformer_blocks.{1}.ff.proj_out.bias"),
    Rule(r"norm_final\.weight", "norm_final.scale", "norm"),
    Rule(r"norm_final\.bias", "norm_final.bias"),
    Rule(r"norm_out\.linear\.weight", "norm_out.linear.kernel", "linear"),
    Rule(r"norm_out\.linear\.bias", "norm_out.linear.bias"),
    Rule(r"norm_out\.norm\.weight", "norm_out.norm.scale", "norm"),
    Rule(r"norm_out\.norm\.bias", "norm_out.norm.bias"),
    Rule(r"proj_out\.weight", "proj_out.kernel", "linear"),
    Rule(r"proj_out\.bias", "proj_out.bias"),
)


def read_json(path: str) -> dict:
    """The JSON object in ``path``; raises :class:`ConversionError` naming the file if it is not one."""
    try:
        return read_json_object(path)
    except ValueError as e:
        raise ConversionError(str(e)) from None


def transformer_folder(src: str) -> str:
    """The folder holding ``config.json`` + weights: ``SRC/transformer`` if present, else ``SRC``."""
    sub = os.path.join(src, "transformer")
    folder = sub if os.path.isdir(sub) else src
    if not os.path.exists(os.path.join(folder, "config.json")):
        raise FileNotFoundError(f"no transformer/config.json under {src!r} (expected a diffusers CogVideoX folder)")
    return folder


def convert_folder(src: str, dst: Optional[str] = None, *, dtype: str = "float32",
                   progress: Optional[Callable[[int, int], None]] = None):
    """Converts a diffusers CogVideoX transformer folder. Returns ``(model, CogVideoXConfig)``.

    With ``dst``, also saves the converted parameters and config there with
    :func:`syncos_jax.backbones.cogvideox.save_weights` (nothing is written if the conversion fails).
    ``progress(done, total)`` is called per tensor.
    """
    folder = transformer_folder(src)
    config = read_json(os.path.join(folder, "config.json"))
    try:
        cfg, graphdef, abstract = model_abstract(config)
    except (TypeError, ValueError) as e:
        raise ConversionError(f"{os.path.join(folder, 'config.json')!r}: {' '.join(str(e).split())[:300]}") from None
    tensors = read_safetensors(folder)
    state = convert(tensors, RULES, abstract, dtype=dtype, progress=progress)
    if dst is not None:
        save_weights(dst, state, cfg, extra={"dtype": dtype, "source": os.path.abspath(src)})
    return nnx.merge(graphdef, state), cfg


PARTS = ("transformer", "text_encoder", "vae")  # DST: the transformer at the top, DST/text_encoder, DST/vae


def pipeline_parts(src: str) -> list[str]:
    """The :data:`PARTS` a diffusers CogVideoX folder holds: always ``transformer`` (``SRC`` may be that
    subfolder itself), plus ``text_encoder`` and ``vae`` when ``SRC/text_encoder`` and ``SRC/vae`` exist."""
    transformer_folder(src)  # raises naming SRC
    return ["transformer"] + [p for p in PARTS[1:] if os.path.isdir(os.path.join(src, p))]


def _preflight(src: str, parts: list[str]) -> None:
    """Before any tensor is read: every part's config parses, the text encoder has its tokenizer, and
    the parts fit together (:func:`syncos_jax.backbones.cogvideox.check_compatible`); raises as
    :func:`convert_pipeline`. Only the config files are read, so a mismatch costs milliseconds,
    not the minutes of converting a real checkpoint first."""
    from converters import cogvideox_vae, t5
    from syncos_jax.backbones.cogvideox import CogVideoXConfig
    from syncos_jax.backbones.cogvideox_vae import CogVideoXVAEConfig
    from syncos_jax.backbones.t5 import T5Config

    def parse(folder, make):
        path = os.path.join(folder, "config.json")
        try:
            return make(read_json(path))
        except (TypeError, ValueError, NotImplementedError) as e:
            raise ConversionError(f"{path!r}: {' '.join(str(e).split())[:300]}") from None

    cfg = parse(transformer_folder(src), CogVideoXConfig.from_diffusers)
    t5_cfg = parse(t5.text_encoder_folder(src), T5Config.from_hf_dict) if "text_encoder" in parts else None
    if t5_cfg is not None:
        t5.tokenizer_folder(src)  # raises FileNotFoundError naming where it looked
    vae_cfg = parse(cogvideox_vae.vae_folder(src), CogVideoXVAEConfig.from_hf_dict) if "vae" in parts else None
    problems = check_compatible(cfg, t5_cfg, vae_cfg)
    if problems:
        raise ConversionError(f"the parts of {src!r} do not fit together: " + "; ".join(problems))


def convert_pipeline(src: str, dst: str, *, dtype: str = "float32",
                     progress: Optional[Callable[[str], Optional[Callable[[int, int], None]]]] = None) -> dict:
    """Converts every part of a diffusers CogVideoX folder into ``DST``. Returns ``{part: config}``.

    ``DST`` holds the transformer (:func:`syncos_jax.backbones.cogvideox.save_weights`), and
    ``DST/text_encoder`` (T5 with its tokenizer, :func:`converters.t5.convert_folder`) and ``DST/vae``
    (:func:`converters.cogvideox_vae.convert_folder`) for the parts ``SRC`` has
    (:func:`pipeline_parts`). The configs, the tokenizer and whether the parts fit together
(:func:`syncos_jax.backbones.cogvideox.check_compatible`) are checked before any tensor is read. Atomic: all is
    written into a temporary folder renamed at the end, so nothing is written if any part fails.
    ``progress(part)`` returns the ``progress(done, total)`` callback of that part (or ``None``).

    Raises:
      ConversionError: a part's config or tensors, or parts that do not fit together.
      FileNotFoundError: no transformer, or a text encoder without tokenizer files.
      FileExistsError: ``dst`` exists and is not empty.
    """
    from converters import cogvideox_vae, t5
    from syncos_jax.backbones.weights_folder import atomic_folder

    parts = pipeline_parts(src)
    _preflight(src, parts)
    on = progress or (lambda part: None)
    configs = {}
    with atomic_folder(dst) as tmp:
        _, configs["transformer"] = convert_folder(src, tmp, dtype=dtype, progress=on("transformer"))
        if "text_encoder" in parts:
            _, configs["text_encoder"] = t5.convert_folder(src, os.path.join(tmp, "text_encoder"), dtype=dtype,
                                                           progress=on("text_encoder"))
        if "vae" in parts:
            _, configs["vae"] = cogvideox_vae.convert_folder(src, os.path.join(tmp, "vae"), dtype=dtype, progress=on("vae"))
    return configs
