"""`syncos generate`: a smoke run writing all four files, and malformed scenarios rejected cleanly."""

import json
import os
import subprocess
import sys

import imageio.v2 as imageio
import numpy as np
import pytest

from syncos_jax import cli
from syncos_jax.prompts import load_scenario, segment_bounds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = os.path.join(ROOT, "examples", "scenarios")


def _write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_example_scenarios_are_valid_and_cover_the_events():
    from syncos_jax.backbones.toy import Tokenizer, world
    from syncos_jax.prompts import join_prompt

    files = sorted(f for f in os.listdir(SCENARIOS) if f.endswith(".yaml"))
    assert len(files) >= 6
    kinds = set()
    tok = Tokenizer()
    for name in files:
        s = load_scenario(os.path.join(SCENARIOS, name))
        assert len(s.prompt.local_prompts) >= 2
        factors = [world.parse_caption(join_prompt(s.prompt.global_prompt, p)) for p in s.prompt.local_prompts]
        tok([join_prompt(s.prompt.global_prompt, p) for p in s.prompt.local_prompts])
        for a, b in zip(factors, factors[1:]):
            kinds |= {k for k in ("motion", "background", "colour") if getattr(a, k) != getattr(b, k)}
    assert kinds == {"motion", "background", "colour"}


def test_generate_smoke_writes_all_four_files(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main([
        "generate", os.path.join(SCENARIOS, "four_turns.yaml"), "--frames", "12", "--steps", "2",
        "--set", "iters=1", "--seed", "3", "--out", str(out), "--no-progress",
    ])
    assert rc == 0
    assert sorted(os.listdir(out)) == ["contact_sheet.png", "run.json", "video.gif", "video.mp4"]
    record = json.loads((out / "run.json").read_text())
    assert record["settings"]["frames"] == 12 and record["settings"]["seed"] == 3
    assert record["settings"]["num_chunks"] == 2 and record["settings"]["options"] == {"iters": 1}
    assert record["nfe"] > 0 and record["wall_seconds"]["sampling"] > 0
    assert [s["frames"] for s in record["segments"]] == [[0, 3], [3, 6], [6, 9], [9, 12]]
    assert record["segments"][0]["expected"]["motion"] == "right"
    assert set(record["segments"][0]["probe"]) >= {"background", "colour", "shape", "motion"}
    gif = imageio.mimread(str(out / "video.gif"))
    assert len(gif) == 12
    sheet = imageio.imread(str(out / "contact_sheet.png"))
    assert sheet.ndim == 3 and sheet.shape[2] in (3, 4)
    assert "wrote" in capsys.readouterr().out
    # a second run into the same non-empty directory is refused, and leaves it untouched
    before = (out / "run.json").read_text()
    assert cli.main(["generate", os.path.join(SCENARIOS, "four_turns.yaml"), "--frames", "12", "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (out / "run.json").read_text() == before


MALFORMED = [
    ("local_prompts: [moves left on snow]\n", "global_prompt", "missing"),
    ("global_prompt: a small red circle\n", "local_prompts", "missing"),
    ("global_prompt: a small red circle\nlocal_prompts: []\n", "local_prompts", "empty; give at least one local prompt"),
    ("global_prompt: a small red circle\nlocal_prompts: [moves left on lava]\n", "local_prompts[0]", "unknown word 'lava'"),
    ("global_prompt: a tiny red circle\nlocal_prompts: [moves left on snow]\n", "global_prompt", "unknown word 'tiny'"),
    ("global_prompt: a small red circle\nlocal_prompts: [moves left on snow]\nframes: 5\n", "frames", "5 frames is fewer than one chunk (8 frames)"),
    ("global_prompt: a small red circle\nlocal_prompts: [moves left on snow]\nframes: zero\n", "frames", "expected an integer in [1, 10000], got 'zero'"),
    ("global_prompt: a small red circle\nlocal_prompts: [moves left on snow, '']\n", "local_prompts[1]", "expected a non-empty string"),
    ("global_prompt: a small red circle\nlocal_prompts: moves left on snow\n", "local_prompts", "expected a list of strings"),
    ("global_prompt: a small red circle\nlocal_prompts: [moves left on snow]\ncolour: red\n", "colour", "unknown field"),
    ("global_prompt: [unclosed\n", "(file)", "not valid YAML"),
    ("global_prompt: a small red circle\nlocal_prompts: [moves left on snow]\nsampler: {stride: 99}\n", "sampler.stride", "expected an integer in [1, 8], got 99"),
]


@pytest.mark.parametrize("text,field,problem", MALFORMED)
def test_malformed_scenarios_give_one_clear_line_and_no_output(tmp_path, capsys, text, field, problem):
    path = _write(tmp_path, text)
    out = tmp_path / "out"
    assert cli.main(["generate", path, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith(f"error: {path}: field '{field}': "), err
    assert problem in err
    assert not out.exists()
    assert os.listdir(tmp_path) == ["s.yaml"]


def test_missing_file_and_command_line_errors(tmp_path, capsys):
    assert cli.main(["generate", str(tmp_path / "none.yaml")]) == 2
    assert "field '(file)': no such file" in capsys.readouterr().err
    ok = _write(tmp_path, "global_prompt: a small red circle\nlocal_prompts: [moves left on snow]\n")
    assert cli.main(["generate", ok, "--frames", "4", "--out", str(tmp_path / "o")]) == 2
    assert "field '--frames': expected an integer in [8, 10000] (at least one chunk), got 4" in capsys.readouterr().err
    assert cli.main(["generate", ok, "--set", "nonsense", "--out", str(tmp_path / "o")]) == 2
    assert "--set 'nonsense': expected NAME=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unknown_sampler_setting_is_reported_without_output(tmp_path, capsys):
    ok = _write(tmp_path, "global_prompt: a small red circle\nlocal_prompts: [moves left on snow]\nframes: 8\n")
    out = tmp_path / "o"
    assert cli.main(["generate", ok, "--set", "bogus=1", "--steps", "1", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set bogus=1: not a setting of syncos (its settings: stages, t_min,") and err.count("\n") == 1
    assert not out.exists() and [p for p in os.listdir(tmp_path) if p != "s.yaml"] == []


def test_segment_bounds_follow_the_chunk_prompt_rule():
    from syncos_jax.chunking import ChunkLayout, assign_prompts

    for F, P in [(32, 4), (30, 4), (12, 5), (8, 3), (9, 9)]:
        bounds = segment_bounds(F, P)
        owner = np.concatenate([np.full(b - a, p) for p, (a, b) in enumerate(bounds)])
        assert len(owner) == F
        layout = ChunkLayout(F, 1, 1)  # one chunk per frame: its centre is the frame itself
        np.testing.assert_array_equal(owner, assign_prompts(layout, P))


def test_console_script_is_installed():
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "syncos"), "generate", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "SCENARIO" in r.stdout or "scenario" in r.stdout


@pytest.mark.parametrize("sampler,extra", [("gen-l-video", []), ("csd-only", ["--set", "iters=1"]), ("ddim", ["--frames", "8"]),
                                            ("fifo", ["--set", "num_partitions=1"]), ("freenoise", [])])
def test_every_sampler_runs_through_the_command_line(tmp_path, tiny_weights, sampler, extra):
    out = tmp_path / sampler
    rc = cli.main(["generate", os.path.join(SCENARIOS, "seasons.yaml"), "--sampler", sampler, "--frames", "12",
                   "--steps", "2", "--weights", tiny_weights, "--out", str(out), "--no-progress"] + extra)
    assert rc == 0
    record = json.loads((out / "run.json").read_text())
    assert record["settings"]["sampler"] == sampler and record["nfe"] > 0
    assert len(imageio.mimread(str(out / "video.gif"))) == record["settings"]["frames"]


def test_whole_video_ddim_needs_one_chunk(tmp_path, tiny_weights, capsys):
    out = tmp_path / "o"
    rc = cli.main(["generate", os.path.join(SCENARIOS, "seasons.yaml"), "--sampler", "ddim", "--frames", "12",
                   "--steps", "1", "--weights", tiny_weights, "--out", str(out), "--no-progress"])
    assert rc == 2 and not out.exists()
    assert "error: --sampler ddim: ddim needs a backbone that sees the whole video of F=12 frames" in capsys.readouterr().err


def test_sampler_names_are_the_registry():
    """The command line's sampler names (kept as a tuple so that ``--help`` does not import jax) are
    exactly :data:`syncos_jax.samplers.SAMPLERS`'s."""
    from syncos_jax.cli import SAMPLER_NAMES
    from syncos_jax.samplers import SAMPLERS

    assert sorted(SAMPLER_NAMES) == sorted(SAMPLERS)


def test_backbone_names_are_the_registry_and_the_protocol_holds():
    """The ``--backbone`` choices are :data:`syncos_jax.backbones.BACKBONES`; the toy backbone is a
    :class:`~syncos_jax.backbones.Backbone` whose prompt check names the field at fault."""
    from syncos_jax.backbones import BACKBONES, Backbone, BackboneError, open_backbone
    from syncos_jax.cli import build_parser
    from syncos_jax.prompts import PromptError, StructuredPrompt

    action = next(a for a in build_parser()._subparsers._group_actions[0].choices["generate"]._actions
                  if "--backbone" in a.option_strings)
    assert sorted(action.choices) == sorted(BACKBONES)
    toy = open_backbone("toy")
    assert isinstance(toy, Backbone) and not toy.latent_space
    toy.check_prompt(StructuredPrompt.make("a small red circle", ["moves right on grass", "moves up on snow"]))
    with pytest.raises(PromptError, match=r"^local_prompts\[1\]: .*blorp"):  # an unknown word, in its own field
        toy.check_prompt(StructuredPrompt.make("a small red circle", ["moves right on grass", "blorp on snow"]))
    with pytest.raises(PromptError, match=r"^local_prompts\[0\]: caption .* does not parse"):  # known words, no grammar
        toy.check_prompt(StructuredPrompt.make("a small red circle", ["on grass moves right"]))
    with pytest.raises(BackboneError, match="^vae: the toy backbone takes only weights"):
        open_backbone("toy", vae="somewhere")
    with pytest.raises(BackboneError, match="^weights: 'somewhere' is not a converted CogVideoX folder"):
        open_backbone("cogvideox", weights="somewhere")
