"""transformers ``T5EncoderModel`` → :class:`syncos_jax.backbones.t5.T5Encoder`, with its tokenizer.

``SRC`` is a CogVideoX diffusers folder (the encoder in ``text_encoder/`` — ``config.json`` and
``model.safetensors`` or shards with ``model.safetensors.index.json`` — and the tokenizer in
``tokenizer/``), or a transformers T5 encoder folder itself (its tokenizer next to it, or in a
sibling ``tokenizer/`` folder, or given explicitly). The tensors are read with safetensors' numpy
API (never torch). ``DST`` receives the converted parameters, the config and a copy of the
tokenizer files (:func:`syncos_jax.backbones.t5.save_weights`); :func:`syncos_jax.backbones.t5.load`
reads it back without converting again.

transformers stores the token embedding twice in memory (``shared.weight`` and its tied alias
``encoder.embed_tokens.weight``) and usually saves only ``shared.weight``. A checkpoint that holds
both is accepted only if they are equal (the alias is then dropped); one holding only the alias
uses it as the embedding (as transformers does); two different tables are a
:class:`~converters.common.ConversionError`.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np
from flax import nnx

from converters.cogvideox import read_json
from converters.common import ConversionError, Rule, convert, read_safetensors
from syncos_jax.backbones.t5 import model_abstract, save_weights, tokenizer_files

__all__ = ["RULES", "convert_folder", "convert_tensors", "text_encoder_folder", "tokenizer_folder", "untie_embeddings"]

SHARED, TIED = "shared.weight", "encoder.embed_tokens.weight"

RULES: tuple[Rule, ...] = (
    Rule(r"shared\.weight", "shared.embedding"),
    # transformers keeps the bias table in block 0 only; every block uses it
    Rule(r"encoder\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.weight", "relative_attention_bias.embedding"),
    Rule(r"encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.weight", "blocks.{1}.attention.{2}.kernel", "linear"),
    Rule(r"encoder\.block\.(\d+)\.layer\.0\.layer_norm\.weight", "blocks.{1}.attention_norm.scale", "norm"),
    Rule(r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.(wi_0|wi_1|wi|wo)\.weight", "blocks.{1}.ff.{2}.kernel", "linear"),
    Rule(r"encoder\.block\.(\d+)\.layer\.1\.layer_norm\.weight", "blocks.{1}.ff_norm.scale", "norm"),
    Rule(r"encoder\.final_layer_norm\.weight", "final_norm.scale", "norm"),
)


def untie_embeddings(tensors: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """``(tensors without the tied alias, problems)``: a new dict; ``tensors`` is not modified.

    ``encoder.embed_tokens.weight`` is dropped if it equals ``shared.weight``, renamed to
    ``shared.weight`` if that is absent, and reported as a problem if the two differ.
    """
    if TIED not in tensors:
        return dict(tensors), []
    out = {k: v for k, v in tensors.items() if k != TIED}
    if SHARED not in tensors:
        out[SHARED] = tensors[TIED]
        return out, []
    a, b = tensors[SHARED], tensors[TIED]
    if a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b):
        return out, []
    return out, [f"tied duplicate differs: {TIED} {tuple(b.shape)} {b.dtype} is not equal to {SHARED} {tuple(a.shape)} {a.dtype}"]


def convert_tensors(tensors: dict[str, np.ndarray], abstract, *, dtype: str = "float32",
                    progress: Optional[Callable[[int, int], None]] = None):
    """The params nnx.State of ``abstract`` (:func:`syncos_jax.backbones.t5.model_abstract`) filled from a
    ``T5EncoderModel`` state dict (numpy). Raises one :class:`ConversionError` listing every problem."""
    source, problems = untie_embeddings(tensors)
    try:
        state = convert(source, RULES, abstract, dtype=dtype, progress=progress)
    except ConversionError as e:
        if problems:
            raise ConversionError("; ".join(problems) + "; " + str(e)) from None
        raise
    if problems:
        raise ConversionError("checkpoint does not match the model: " + "; ".join(problems))
    return state


def text_encoder_folder(src: str) -> str:
    """The folder holding the encoder's ``config.json`` + weights: ``SRC/text_encoder`` if present, else ``SRC``."""
    sub = os.path.join(src, "text_encoder")
    folder = sub if os.path.isdir(sub) else src
    if not os.path.exists(os.path.join(folder, "config.json")):
        raise FileNotFoundError(f"no text_encoder/config.json or config.json under {src!r} "
                                "(expected a CogVideoX diffusers folder or a transformers T5 encoder folder)")
    return folder


def tokenizer_folder(src: str, tokenizer: Optional[str] = None) -> str:
    """The folder with the T5 tokenizer files: ``tokenizer`` if given, else the first of ``SRC/tokenizer``,
    the encoder folder, and a ``tokenizer/`` next to it that holds ``tokenizer.json`` or ``spiece.model``.

    Raises:
      FileNotFoundError: naming the places looked at.
    """
    if tokenizer is not None:
        tokenizer_files(tokenizer)  # raises naming it
        return tokenizer
    encoder = text_encoder_folder(src)
    candidates = [os.path.join(src, "tokenizer"), encoder, os.path.join(os.path.dirname(os.path.abspath(encoder)), "tokenizer")]
    for c in candidates:
        if any(os.path.isfile(os.path.join(c, f)) for f in ("tokenizer.json", "spiece.model")):
            return c
    raise FileNotFoundError(f"no T5 tokenizer (tokenizer.json or spiece.model) in any of {list(dict.fromkeys(candidates))}")


def convert_folder(src: str, dst: Optional[str] = None, *, dtype: str = "float32", tokenizer: Optional[str] = None,
                   progress: Optional[Callable[[int, int], None]] = None):
    """Converts a transformers T5 encoder folder (or a CogVideoX diffusers root). Returns ``(T5Encoder, T5Config)``.

    With ``dst``, also writes the converted parameters, the config and a copy of the tokenizer
    files (found by :func:`tokenizer_folder`, or ``tokenizer``) there with
    :func:`syncos_jax.backbones.t5.save_weights`; nothing is written if anything fails.
    ``progress(done, total)`` is called per tensor.

    Raises:
      ConversionError: a config that is not a supported T5, or tensors that do not match it
        (unmapped, missing, mis-shaped, or an embedding alias that differs), all listed in one error.
      FileNotFoundError: no config.json, or (with ``dst``) no tokenizer files.
      FileExistsError: ``dst`` exists and is not empty.
    """
    folder = text_encoder_folder(src)
    config_path = os.path.join(folder, "config.json")
    config = read_json(config_path)
    try:
        cfg, graphdef, abstract = model_abstract(config)
    except (TypeError, ValueError) as e:
        raise ConversionError(f"{config_path!r}: {' '.join(str(e).split())[:300]}") from None
    tok = tokenizer_folder(src, tokenizer) if dst is not None else None
    if dst is not None and os.path.exists(dst) and (not os.path.isdir(dst) or os.listdir(dst)):
        raise FileExistsError(f"{os.path.abspath(dst)!r} exists and is not empty")
    state = convert_tensors(read_safetensors(folder), abstract, dtype=dtype, progress=progress)
    if dst is not None:
        save_weights(dst, state, cfg, tokenizer=tok,
                     extra={"dtype": dtype, "source": os.path.abspath(folder), "tokenizer_source": os.path.abspath(tok)})
    return nnx.merge(graphdef, state), cfg
