"""diffusers ``AutoencoderKLCogVideoX`` → :class:`syncos_jax.backbones.cogvideox_vae.CogVideoXVAE` (encoder and decoder).

``SRC`` is a diffusers root holding ``vae/config.json`` + ``diffusion_pytorch_model*.safetensors``
(possibly sharded with an index json), or the ``vae`` folder itself. ``DST`` receives
``params.safetensors`` and ``config.json`` (:func:`syncos_jax.backbones.cogvideox_vae.save_weights`);
:func:`syncos_jax.backbones.cogvideox_vae.load` reads them back. Every diffusers key is converted
(the encoder too): the rule table below has no skip rule, and :func:`converters.common.convert`
rejects anything unmapped, missing or mis-shaped.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from flax import nnx

from converters.common import ConversionError, Rule, convert, read_safetensors
from syncos_jax.backbones.cogvideox_vae import model_abstract, save_weights
from syncos_jax.backbones.weights_folder import read_json_object

__all__ = ["RULES", "convert_folder", "vae_folder"]

_RESNET = r"(?:mid_block|up_blocks\.\d+|down_blocks\.\d+)\.resnets\.\d+"
_SPATIAL_NORM = rf"decoder\.(?:{_RESNET}\.norm[12]|norm_out)"  # the decoder's CogVideoXSpatialNorm3D

RULES: tuple[Rule, ...] = (
    # CogVideoXCausalConv3d (3x3x3): conv_in, conv_out, each resnet's conv1 / conv2
    Rule(rf"((?:encoder|decoder)\.(?:conv_in|conv_out|{_RESNET}\.conv[12]))\.conv\.weight", "{1}.conv.kernel", "conv3d"),
    # the spatial norms' 1x1x1 causal convolutions
    Rule(rf"({_SPATIAL_NORM}\.conv_[yb])\.conv\.weight", "{1}.conv.kernel", "conv3d"),
    # the resnets' 1x1x1 shortcut (a plain CogVideoXSafeConv3d)
    Rule(rf"((?:encoder|decoder)\.{_RESNET}\.conv_shortcut)\.weight", "{1}.kernel", "conv3d"),
    # CogVideoXUpsample3D / CogVideoXDownsample3D: per-frame Conv2d
    Rule(r"(decoder\.up_blocks\.\d+\.upsamplers\.0\.conv|encoder\.down_blocks\.\d+\.downsamplers\.0\.conv)\.weight",
         "{1}.kernel", "conv2d"),
    # GroupNorms: inside the decoder's spatial norms; the encoder's resnet norms and norm_out
    Rule(rf"({_SPATIAL_NORM}\.norm_layer)\.weight", "{1}.scale", "norm"),
    Rule(rf"(encoder\.(?:{_RESNET}\.norm[12]|norm_out))\.weight", "{1}.scale", "norm"),
    # every bias keeps its path
    Rule(r"((?:encoder|decoder)\..+)\.bias", "{1}.bias"),
)


def vae_folder(src: str) -> str:
    """The folder holding ``config.json`` + weights: ``SRC/vae`` if present, else ``SRC``."""
    sub = os.path.join(src, "vae")
    folder = sub if os.path.isdir(sub) else src
    if not os.path.exists(os.path.join(folder, "config.json")):
        raise FileNotFoundError(f"no vae/config.json under {src!r} (expected a diffusers CogVideoX folder or its vae folder)")
    return folder


def convert_folder(src: str, dst: Optional[str] = None, *, dtype: str = "float32",
                   progress: Optional[Callable[[int, int], None]] = None):
    """Converts a diffusers ``AutoencoderKLCogVideoX`` folder. Returns ``(vae, CogVideoXVAEConfig)``.

    With ``dst``, also saves the parameters and config there
    (:func:`syncos_jax.backbones.cogvideox_vae.save_weights`); nothing is written if the conversion
    fails. ``progress(done, total)`` is called per tensor.

    Raises:
      ConversionError: one error listing every unmapped, missing and mis-shaped key, or naming a
        config.json that is not a valid CogVideoX VAE config.
    """
    folder = vae_folder(src)
    path = os.path.join(folder, "config.json")
    try:
        config = read_json_object(path)
        cfg, graphdef, abstract = model_abstract(config)
    except (TypeError, ValueError, NotImplementedError) as e:
        raise ConversionError(f"{path!r}: {' '.join(str(e).split())[:300]}") from None
    state = convert(read_safetensors(folder), RULES, abstract, dtype=dtype, progress=progress)
    if dst is not None:
        save_weights(dst, state, cfg, extra={"dtype": dtype, "source": os.path.abspath(src)})
    return nnx.merge(graphdef, state), cfg
