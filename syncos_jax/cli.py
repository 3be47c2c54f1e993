"""The ``syncos`` command line.

    syncos generate SCENARIO.yaml [--sampler syncos|gen-l-video|fifo|csd-only|freenoise|ddim]
                    [--frames N] [--seed S] [--out DIR] [--steps K] [--guidance G] [--stride s]
                    [--set NAME=VALUE ...] [--weights FILE] [--overwrite]
                    [--backbone cogvideox --weights DST --text-embeddings FILE [--vae FOLDER] [--latent-size HxW]]
    syncos convert cogvideox SRC DST [--dtype bf16]

``generate`` samples a long video for a scenario file (:func:`syncos_jax.prompts.load_scenario`)
with the shipped toy model (or a converted CogVideoX), showing a progress bar, and writes into ``DIR``:

* ``video.mp4`` and ``video.gif``;
* ``contact_sheet.png``: every frame with its index, and the local prompt of each segment;
* ``run.json``: the resolved settings, the NFE, the wall time and the probes' per-segment
  readings next to what the prompts ask for (:mod:`syncos_jax.metrics`; toy model only);
* with CogVideoX, ``latents.npy`` too; without a VAE folder (or without torch) only the latents
  and ``run.json`` are written, and the command says so.

``convert`` turns a diffusers CogVideoX folder into this library's format (orbax + config; see
:mod:`converters.cogvideox`), with a progress bar over tensors.

Settings resolve in this order: command-line flags, then the scenario's ``sampler`` mapping, then
the defaults (``frames`` = 4 chunks, ``stride`` = half a chunk, the backbone's guidance scale,
50 steps). Everything is checked before sampling; a malformed scenario gives one line
``error: FILE: field 'FIELD': PROBLEM`` and exit status 2. The files are written into a temporary
directory beside ``DIR`` and moved into place at the end, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["generate", "main"]

SAMPLER_NAMES = ("syncos", "gen-l-video", "fifo", "csd-only", "freenoise", "ddim")
COMMON_SETTINGS = ("steps", "stride", "guidance_scale")


class CLIError(Exception):
    """An error reported as one line and exit status 2."""


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _resolve(args, scenario, backbone) -> dict:
    """Resolved settings: ``frames, seed, sampler, steps, stride, guidance_scale, options``."""
    from syncos_jax.prompts import ScenarioError

    settings = dict(scenario.sampler)
    for item in args.set or ():
        if "=" not in item:
            raise CLIError(f"--set {item!r}: expected NAME=VALUE")
        name, value = item.split("=", 1)
        settings[name.strip()] = _parse_value(value)
    for flag, name in (("steps", "steps"), ("stride", "stride"), ("guidance", "guidance_scale")):
        if getattr(args, flag) is not None:
            settings[name] = getattr(args, flag)
    f = backbone.chunk_frames
    frames = args.frames if args.frames is not None else (scenario.frames or 4 * f)
    where = "--frames" if args.frames is not None else "frames"
    if frames < f:
        raise ScenarioError(scenario.path, where, f"{frames} frames is fewer than one chunk ({f} frames)")
    steps = settings.pop("steps", 50)
    stride = settings.pop("stride", max(1, f // 2))
    guidance = settings.pop("guidance_scale", backbone.default_guidance)
    for name, value, ok in (
        ("steps", steps, isinstance(steps, int) and steps >= 1),
        ("stride", stride, isinstance(stride, int) and 1 <= stride <= f),
        ("guidance_scale", guidance, isinstance(guidance, (int, float)) and not isinstance(guidance, bool)),
    ):
        if not ok:
            expected = {"steps": "a positive integer", "stride": f"an integer in [1, {f}]", "guidance_scale": "a number"}[name]
            raise ScenarioError(scenario.path, f"sampler.{name}", f"expected {expected}, got {value!r}")
    seed = args.seed if args.seed is not None else (scenario.seed if scenario.seed is not None else 0)
    return dict(frames=int(frames), seed=int(seed), sampler=args.sampler, steps=int(steps), stride=int(stride),
                guidance_scale=float(guidance), options=settings)


def _check_words(scenario, backbone) -> None:
    from syncos_jax.prompts import ScenarioError

    # the toy tokenizer checks words, so each part alone names the field with the unknown word;
    # other backbones look texts up whole, so only the joined texts are checked
    fields = [("global_prompt", scenario.prompt.global_prompt)]
    fields += [(f"local_prompts[{i}]", p) for i, p in enumerate(scenario.prompt.local_prompts)]
    for field, text in fields if backbone.name == "toy" else ():
        try:
            backbone.encode([text])
        except ValueError as e:
            raise ScenarioError(scenario.path, field, str(e)) from None
    from syncos_jax.prompts import join_prompt

    for i, p in enumerate(scenario.prompt.local_prompts):
        try:
            backbone.encode([join_prompt(scenario.prompt.global_prompt, p)])
        except ValueError as e:
            raise ScenarioError(scenario.path, f"local_prompts[{i}]", str(e)) from None


def _load_backbone(args):
    if getattr(args, "backbone", "toy") == "cogvideox":
        from syncos_jax.backbones import cogvideox

        if not args.weights:
            raise CLIError("--backbone cogvideox needs --weights DST (a folder written by `syncos convert cogvideox`)")
        if not args.text_embeddings:
            raise CLIError("--backbone cogvideox needs --text-embeddings FILE (see experiments/encode_t5.py)")
        size = None
        if args.latent_size:
            try:
                size = tuple(int(v) for v in args.latent_size.lower().split("x"))
                assert len(size) == 2 and min(size) > 0
            except (ValueError, AssertionError):
                raise CLIError(f"--latent-size {args.latent_size!r}: expected HxW, e.g. 60x90") from None
        try:
            return cogvideox.load_backbone(args.weights, args.text_embeddings, vae=args.vae, latent_size=size)
        except (FileNotFoundError, ValueError) as e:
            raise CLIError(f"--backbone cogvideox: {e}") from None
    from syncos_jax.backbones import toy

    try:
        return toy.load_default(args.weights) if args.weights else toy.load_default()
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(f"--weights: {e}") from None


def _expected_factors(text: str) -> Optional[dict]:
    from syncos_jax.backbones.toy import world

    try:
        c = world.parse_caption(text)
    except ValueError:
        return None
    return {"colour": c.colour, "shape": c.shape, "size": c.size, "motion": c.motion, "background": c.background}


def _prepare_out(out: str, overwrite: bool) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out {out!r} exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise CLIError(f"--out {out!r} exists and is not empty; pass --overwrite to replace it")


def generate(
    scenario_path: str,
    *,
    sampler: str = "syncos",
    frames: Optional[int] = None,
    seed: Optional[int] = None,
    out: Optional[str] = None,
    steps: Optional[int] = None,
    guidance: Optional[float] = None,
    stride: Optional[int] = None,
    set: Sequence[str] = (),
    weights: Optional[str] = None,
    overwrite: bool = False,
    progress: bool = True,
    backbone: str = "toy",
    text_embeddings: Optional[str] = None,
    vae: Optional[str] = None,
    latent_size: Optional[str] = None,
) -> dict:
    """Runs ``syncos generate`` from Python; returns the ``run.json`` record.

    Raises:
      ScenarioError: for a malformed scenario (nothing is written).
      CLIError: for a bad command-line value (nothing is written).
    """
    args = argparse.Namespace(scenario=scenario_path, sampler=sampler, frames=frames, seed=seed, out=out, steps=steps,
                              guidance=guidance, stride=stride, set=list(set), weights=weights, overwrite=overwrite,
                              progress=progress, backbone=backbone, text_embeddings=text_embeddings, vae=vae,
                              latent_size=latent_size)
    return _generate(args)


def _generate(args) -> dict:
    import jax
    from tqdm import tqdm

    from syncos_jax import metrics, video
    from syncos_jax.chunking import ChunkLayout
    from syncos_jax.prompts import ScenarioError, join_prompt, load_scenario, segment_bounds
    from syncos_jax.samplers import SAMPLERS, build_conditioning, fifo

    t_start = time.time()
    if args.sampler not in SAMPLER_NAMES:
        raise CLIError(f"--sampler {args.sampler!r}: expected one of {', '.join(SAMPLER_NAMES)}")
    scenario = load_scenario(args.scenario)
    backbone = _load_backbone(args)
    _check_words(scenario, backbone)
    cfg = _resolve(args, scenario, backbone)
    stem = os.path.splitext(os.path.basename(scenario.path))[0]
    out = args.out or os.path.join("outputs", f"{stem}-{cfg['sampler']}-seed{cfg['seed']}")
    _prepare_out(out, args.overwrite)

    F, f = cfg["frames"], backbone.chunk_frames
    layout = ChunkLayout(F, f, cfg["stride"])
    schedule = backbone.schedule(cfg["steps"])
    cond = build_conditioning(backbone.encode, scenario.prompt)
    options = dict(cfg["options"], guidance_scale=cfg["guidance_scale"])
    if options.pop("dynamic_cfg", False):  # diffusers' CogVideoX dynamic CFG: one scale per grid step
        if cfg["sampler"] == "fifo":
            raise CLIError("--set dynamic_cfg=true: fifo steps every frame at its own time; dynamic CFG is not supported there")
        from syncos_jax.guidance import dynamic_cfg_scales

        options["guidance_scale"] = dynamic_cfg_scales(cfg["guidance_scale"], schedule.timesteps)
    if cfg["sampler"] == "fifo":
        total = fifo.num_iterations(layout, fifo.make_config(**options)) if _valid_fifo(options) else None
    else:
        total = cfg["steps"]
    bar = tqdm(total=total, desc=f"{cfg['sampler']} {F} frames", unit="step", disable=not args.progress, dynamic_ncols=True)

    def on_progress(n):
        bar.update(n - bar.n)

    t0 = time.time()
    try:
        result = SAMPLERS[cfg["sampler"]](backbone.denoiser, schedule, layout, cond, key=jax.random.key(cfg["seed"]),
                                          progress=on_progress, **options)
        latents = np.asarray(jax.block_until_ready(result.latents))
    except TypeError as e:
        raise ScenarioError(scenario.path, "sampler", f"{cfg['sampler']} does not take these settings: {e}") from None
    except ValueError as e:
        raise CLIError(f"--sampler {cfg['sampler']}: " + " ".join(str(e).split())) from None
    finally:
        bar.close()
    sample_seconds = time.time() - t0
    frames_px = backbone.decode(latents)

    segments = segment_bounds(F, len(scenario.prompt.local_prompts))
    probe = backbone.name == "toy" and frames_px is not None
    readings = metrics.read_segments(frames_px, segments) if probe else [None] * len(segments)
    seg_records = []
    for (a, b), local, r in zip(segments, scenario.prompt.local_prompts, readings):
        text = join_prompt(scenario.prompt.global_prompt, local)
        rec = {"frames": [a, b], "local_prompt": local, "text": text}
        if r is not None:
            expected = _expected_factors(text)
            rec.update(probe=r.as_dict(), expected=expected)
            if expected is not None:
                rec["match"] = {k: getattr(r, k) == v for k, v in expected.items()}
        seg_records.append(rec)
    record = {
        "scenario": os.path.abspath(scenario.path),
        "global_prompt": scenario.prompt.global_prompt,
        "local_prompts": list(scenario.prompt.local_prompts),
        "backbone": {"name": backbone.name, "weights": backbone.weights, "training_step": backbone.info.get("step"),
                     "frame_shape": list(backbone.frame_shape), "chunk_frames": backbone.chunk_frames},
        "settings": {**{k: v for k, v in cfg.items() if k != "options"}, "num_chunks": layout.num_chunks,
                     "options": cfg["options"], "schedule": "cogvideox_2b"},
        "nfe": int(result.nfe),
        "wall_seconds": {"sampling": round(sample_seconds, 3), "total": None},
        "segments": seg_records,
        "jax": {"version": jax.__version__, "backend": jax.default_backend(), "devices": jax.device_count()},
    }

    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out))}.tmp-", dir=parent)
    try:
        if backbone.name != "toy":
            np.save(os.path.join(tmp, "latents.npy"), latents)
        if frames_px is None:
            record["note"] = ("latents.npy holds the final latents [F, H, W, C]; no video was decoded "
                              "(give --vae FOLDER with the [torch] extra installed to decode)")
        else:
            # decoded frames can outnumber latent frames (the VAE's temporal upsampling): scale the segments
            k = len(frames_px) / F
            px_segments = [(int(round(a * k)), int(round(b * k))) for a, b in segments]
            video.write_mp4(os.path.join(tmp, "video.mp4"), frames_px)
            video.write_gif(os.path.join(tmp, "video.gif"), frames_px)
            sheet = video.contact_sheet(
                frames_px,
                segments=[(a, b, join_prompt(scenario.prompt.global_prompt, p))
                          for (a, b), p in zip(px_segments, scenario.prompt.local_prompts)],
                title=f"{stem}: {cfg['sampler']}, {F} frames, seed {cfg['seed']}, {cfg['steps']} steps, guidance {cfg['guidance_scale']:g}",
            )
            import imageio.v2 as imageio

            imageio.imwrite(os.path.join(tmp, "contact_sheet.png"), sheet)
        record["wall_seconds"]["total"] = round(time.time() - t_start, 3)
        with open(os.path.join(tmp, "run.json"), "w") as fh:
            json.dump(record, fh, indent=2)
        if os.path.isdir(out):
            if os.listdir(out):
                shutil.rmtree(out)  # only reached with --overwrite (checked above)
            else:
                os.rmdir(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    record["out"] = out
    return record


def _valid_fifo(options) -> bool:
    from syncos_jax.samplers import fifo

    try:
        fifo.make_config(**options)
        return True
    except (TypeError, ValueError):
        return False


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="syncos", description="SynCoS long-video sampling in JAX.")
    sub = ap.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="sample a long video for a scenario file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("scenario", help="a scenario YAML file")
    g.add_argument("--sampler", default="syncos", choices=SAMPLER_NAMES)
    g.add_argument("--frames", type=int, default=None, help="number of frames (default: the scenario's, else 4 chunks)")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--out", default=None, help="output directory (default outputs/<scenario>-<sampler>-seed<S>)")
    g.add_argument("--steps", type=int, default=None, help="sampling steps (default 50)")
    g.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    g.add_argument("--stride", type=int, default=None, help="chunk stride in frames (default half a chunk)")
    g.add_argument("--set", action="append", metavar="NAME=VALUE", help="any sampler setting, e.g. --set iters=10")
    g.add_argument("--backbone", default="toy", choices=("toy", "cogvideox"))
    g.add_argument("--weights", default=None, help="toy: a weights file (default: the shipped one); cogvideox: a converted folder")
    g.add_argument("--text-embeddings", default=None, help="cogvideox: .npz of T5 embeddings per prompt (experiments/encode_t5.py)")
    g.add_argument("--vae", default=None, help="cogvideox: a local AutoencoderKLCogVideoX folder to decode with ([torch] extra)")
    g.add_argument("--latent-size", default=None, help="cogvideox: latent HxW (default: the config's sample size)")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty --out directory")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    c = sub.add_parser("convert", help="convert a diffusers checkpoint to this library's format")
    c.add_argument("model", choices=("cogvideox",))
    c.add_argument("src", help="a diffusers folder (with transformer/config.json and safetensors)")
    c.add_argument("dst", help="the output folder (must not exist or be empty)")
    c.add_argument("--dtype", default="float32", choices=("float32", "fp32", "bfloat16", "bf16"))
    c.add_argument("--no-progress", dest="progress", action="store_false")
    return ap


def _convert(args) -> str:
    from tqdm import tqdm

    from converters import cogvideox
    from converters.common import ConversionError

    if os.path.exists(args.dst) and (not os.path.isdir(args.dst) or os.listdir(args.dst)):
        raise CLIError(f"{args.dst!r} exists and is not empty; choose a new destination")
    bar = tqdm(desc=f"convert {args.model}", unit="tensor", disable=not args.progress, dynamic_ncols=True)

    def on_progress(done, total):
        bar.total = total
        bar.update(done - bar.n)

    try:
        _, cfg = cogvideox.convert_folder(args.src, args.dst, dtype=args.dtype, progress=on_progress)
    except (ConversionError, FileNotFoundError, FileExistsError, NotImplementedError) as e:
        raise CLIError(f"convert {args.model} {args.src}: " + " ".join(str(e).split())) from None
    finally:
        bar.close()
    return f"converted {args.src} -> {args.dst} ({cfg.num_layers} layers, {args.dtype})"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``syncos`` command."""
    from syncos_jax.prompts import ScenarioError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "convert":
            print(_convert(args))
        elif args.command == "generate":
            record = _generate(args)
            s = record["wall_seconds"]
            print(f"wrote {record['out']}/{{{','.join(sorted(os.listdir(record['out'])))}}}: NFE {record['nfe']}, "
                  f"sampling {s['sampling']:.1f} s, total {s['total']:.1f} s")
            if "note" in record:
                print("  " + record["note"])
            for seg in record["segments"]:
                if "probe" not in seg:
                    continue
                p = seg["probe"]
                ok = "" if "match" not in seg else ("  [ok]" if all(seg["match"].values()) else
                                                    "  [differs: " + ", ".join(k for k, v in seg["match"].items() if not v) + "]")
                print(f"  frames {seg['frames'][0]}-{seg['frames'][1] - 1}: {seg['text']!r} -> probe: {p['size']} {p['colour']} "
                      f"{p['shape']} {p['motion']} on {p['background']}{ok}")
        return 0
    except (ScenarioError, CLIError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
