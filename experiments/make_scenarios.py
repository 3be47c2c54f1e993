"""Writes the experiment suite ``experiments/scenarios/*.yaml`` (30 multi-event scenarios).

Six kinds of change between events — motion, background, colour, and the combinations
motion+background, motion+colour, all three — each with four (events, frames) settings, so that
2, 3 and 4 events and 32, 48 and 64 frames all occur in every kind, and a fifth long one, 6 events
in 96 frames (23 chunks of 8 at stride 4: room for an unprompted identity to drift). The long
ones are drawn after the other 24, so those are the same as before they were added. The object (size, colour,
shape) and every event's factors are drawn from one seeded generator, so the suite is fixed:
``python experiments/make_scenarios.py`` rewrites the same files. The suite is kept apart from
``examples/`` (those are for people; these are for tables).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from syncos_jax.backbones.toy import world

KINDS = ("motion", "background", "colour", "motion+background", "motion+colour", "motion+background+colour")
SETTINGS = ((2, 32), (3, 48), (4, 64))  # (events, frames) shared by every kind; a fourth varies by kind
EXTRA = ((3, 32), (4, 48), (2, 64), (4, 32), (2, 48), (3, 64))
LONG = (6, 96)


def _distinct(rng, names, n, first=None):
    """``n`` names, each different from the one before it."""
    out = [first if first is not None else names[rng.integers(len(names))]]
    while len(out) < n:
        c = names[rng.integers(len(names))]
        if c != out[-1]:
            out.append(c)
    return out


def scenario(kind: str, events: int, frames: int, rng: np.random.Generator) -> dict:
    """One scenario dict (global prompt, local prompts, frames) of ``kind`` with ``events`` events."""
    size = world.SIZE_NAMES[rng.integers(2)]
    shape = world.SHAPES[rng.integers(3)]
    changes = kind.split("+")
    motions = world.MOTION_NAMES
    motion = _distinct(rng, motions, events) if "motion" in changes else [motions[rng.integers(len(motions))]] * events
    bgs = world.BACKGROUND_NAMES
    background = _distinct(rng, bgs, events) if "background" in changes else [bgs[rng.integers(len(bgs))]] * events
    cols = world.COLOUR_NAMES
    colour = _distinct(rng, cols, events) if "colour" in changes else [cols[rng.integers(len(cols))]] * events
    phrase = [world.MOTION_PHRASES[m] for m in motion]
    if "colour" in changes:  # the colour is local, the rest of the object global (as examples/chameleon.yaml)
        glob = f"a {size}"
        local = [f"{c} {shape} {p} on {b}" for c, p, b in zip(colour, phrase, background)]
    else:
        glob = f"a {size} {colour[0]} {shape}"
        local = [f"{p} on {b}" for p, b in zip(phrase, background)]
    return {"global_prompt": glob, "local_prompts": local, "frames": frames}


def suite(seed: int = 0) -> dict[str, dict]:
    """The suite as ``{name: scenario dict}``, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, kind in enumerate(KINDS):
        for events, frames in SETTINGS + (EXTRA[i],):
            name = f"{kind.replace('+', '_')}-{events}ev-{frames}f"
            out[name] = scenario(kind, events, frames, rng)
    events, frames = LONG
    for kind in KINDS:
        out[f"{kind.replace('+', '_')}-{events}ev-{frames}f"] = scenario(kind, events, frames, rng)
    return out


def _yaml(name: str, kind: str, s: dict) -> str:
    lines = [f"# {name}: {kind} changes between events (written by experiments/make_scenarios.py)",
             f"global_prompt: {s['global_prompt']}", "local_prompts:"]
    lines += [f"  - {p}" for p in s["local_prompts"]]
    lines.append(f"frames: {s['frames']}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for name, s in suite(args.seed).items():
        kind = name.split("-")[0].replace("_", "+")
        with open(os.path.join(args.out, name + ".yaml"), "w") as fh:
            fh.write(_yaml(name, kind, s))
    print(f"wrote {len(suite(args.seed))} scenarios to {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
