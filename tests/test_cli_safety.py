"""`syncos generate` never loses data, stops when asked, resumes bit for bit, and rejects bad input in one line.

One test (or parametrized case) per item of the issue's lists; the signal tests run the real
``syncos`` entry point in a subprocess. The property test drives ``cli.main`` in-process with
generated scenario files and flags.
"""

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jax
from sampler_helpers import draw
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from syncos_jax import cli, outdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEASONS = os.path.join(ROOT, "examples", "scenarios", "seasons.yaml")
SYNCOS = os.path.join(os.path.dirname(sys.executable), "syncos")
OK_SCENARIO = "global_prompt: a small red circle\nlocal_prompts: [moves left on snow, stays still on grass]\n"
FOUR = ["contact_sheet.png", "run.json", "video.gif", "video.mp4"]


def _run(argv):
    """``(exit status, stdout, stderr)`` of ``cli.main(argv)`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return rc, out.getvalue(), err.getvalue()


def _one_line_error(rc, err, *needles):
    assert rc == 2, err
    assert err.endswith("\n") and err.count("\n") == 1 and err.startswith("error: "), err
    for n in needles:
        assert n in err, err


def _tree(path):
    """Every file and folder under ``path`` with its bytes (folders: None)."""
    out = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), path)] = None
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, path)] = open(p, "rb").read()
    return out


@pytest.fixture
def scenario(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(OK_SCENARIO)
    return str(p)


def _args(scenario, out, weights, *extra):
    return ["generate", scenario, "--weights", weights, "--frames", "12", "--steps", "2", "--set", "iters=1",
            "--out", str(out), "--no-progress", *extra]


# ---------------------------------------------------------------------------------------------
# Output safety
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [".", "..", "sub/.."])
def test_overwrite_never_replaces_the_working_folder_or_a_parent(tmp_path, monkeypatch, tiny_weights, target):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "s.yaml").write_text(OK_SCENARIO)
    monkeypatch.chdir(work)
    before = _tree(tmp_path)
    rc, _, err = _run(_args("s.yaml", target, tiny_weights, "--overwrite"))
    _one_line_error(rc, err, "is the working folder or one of its parents; syncos never replaces it")
    assert _tree(tmp_path) == before


def test_overwrite_replaces_only_an_earlier_syncos_output(tmp_path, scenario, tiny_weights):
    unrelated = tmp_path / "photos"
    unrelated.mkdir()
    (unrelated / "cat.jpg").write_bytes(b"\xff\xd8 not really")
    before = _tree(tmp_path)
    rc, _, err = _run(_args(scenario, unrelated, tiny_weights, "--overwrite"))
    _one_line_error(rc, err, "is not an earlier syncos output (it holds files syncos did not write (cat.jpg))")
    # a run.json without the marker is not enough
    (unrelated / "run.json").write_text('{"nfe": 1}')
    (unrelated / "cat.jpg").unlink()
    rc, _, err = _run(_args(scenario, unrelated, tiny_weights, "--overwrite"))
    _one_line_error(rc, err, "it has no run.json written by syncos")
    (unrelated / "run.json").unlink()
    (unrelated / "cat.jpg").write_bytes(b"\xff\xd8 not really")
    assert _tree(tmp_path) == before

    out = tmp_path / "run"
    assert _run(_args(scenario, out, tiny_weights))[0] == 0
    assert sorted(os.listdir(out)) == FOUR and outdir.is_syncos_output(str(out))
    first = json.loads((out / "run.json").read_text())
    rc, _, err = _run(_args(scenario, out, tiny_weights, "--seed", "5"))
    _one_line_error(rc, err, "exists and is not empty; pass --overwrite")
    assert _run(_args(scenario, out, tiny_weights, "--seed", "5", "--overwrite"))[0] == 0
    second = json.loads((out / "run.json").read_text())
    assert second["settings"]["seed"] == 5 and second["latents_sha256"] != first["latents_sha256"]
    # an earlier output that the user added a file to is no longer replaced
    (out / "notes.txt").write_text("mine")
    rc, _, err = _run(_args(scenario, out, tiny_weights, "--overwrite"))
    _one_line_error(rc, err, "holds files syncos did not write (notes.txt)")
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p for p in os.listdir(tmp_path)) == ["photos", "run", "s.yaml"]  # no hidden leftovers


def _fake_output(path, tag):
    path.mkdir()
    (path / "run.json").write_text(json.dumps({**outdir.MARKER, "tag": tag}))
    (path / "video.mp4").write_bytes(tag.encode())


def test_replacement_is_atomic_and_restores_the_old_output_if_moving_in_fails(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _fake_output(out, "old")
    before = _tree(out)
    staged = outdir.staging_folder(str(out))
    open(os.path.join(staged, "run.json"), "w").write("{}")
    real_replace = os.replace

    def failing(src, dst):
        if src == staged:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="No space left"):
        outdir.replace_atomically(staged, str(out), True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert _tree(out) == before  # the old output is back, whole
    assert sorted(os.listdir(tmp_path)) == sorted(["out", os.path.basename(staged)])
    outdir.replace_atomically(staged, str(out), True)  # and a working replacement leaves only the new one
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(out) == ["run.json"]


def test_stale_temporary_folders_of_killed_runs_are_cleaned_up(tmp_path, scenario, tiny_weights):
    out = tmp_path / "run"
    dead = tmp_path / ".run.tmp-999999999-abcd1234"  # no such process
    dead.mkdir()
    (dead / "video.gif").write_bytes(b"half")
    live = tmp_path / f".run.tmp-{os.getppid()}-efgh5678"  # a live process's: left alone
    live.mkdir()
    others = [tmp_path / ".other.tmp-999999999-abcd1234",  # another output's
              tmp_path / ".run.tmp-3.resume",  # the run folder of an output named "run.tmp-3"
              tmp_path / ".run.old-2-x.resume"]
    for p in others:
        p.mkdir()
    assert _run(_args(scenario, out, tiny_weights))[0] == 0
    assert not dead.exists() and live.exists() and all(p.exists() for p in others)
    # killed between the two moves of a replacement: the old output comes back before the
    # destination is judged, so a run without --overwrite then refuses to replace it
    shutil.rmtree(out)
    _fake_output(tmp_path / ".run.old-999999998-zzzzzzzz", "old")
    rc, _, err = _run(_args(scenario, out, tiny_weights))
    _one_line_error(rc, err, "exists and is not empty; pass --overwrite")
    assert json.loads((out / "run.json").read_text())["tag"] == "old"


def test_an_output_that_appears_while_sampling_is_never_replaced(tmp_path, scenario, tiny_weights, monkeypatch):
    out = tmp_path / "o"
    real = cli._sample_in_segments

    def meanwhile(*a, **k):
        out.mkdir()
        (out / "thesis.tex").write_text("mine")  # the user (or another run) writes there meanwhile
        return real(*a, **k)

    monkeypatch.setattr(cli, "_sample_in_segments", meanwhile)
    rc, _, err = _run(_args(scenario, out, tiny_weights, "--overwrite"))
    _one_line_error(rc, err, "was filled while sampling ran and is not an earlier syncos output", "the sampled state is kept")
    assert os.listdir(out) == ["thesis.tex"] and (out / "thesis.tex").read_text() == "mine"
    run_dir = tmp_path / ".o.resume"
    assert sorted(os.listdir(run_dir)) == ["checkpoint", "resume.json"]  # resumable once the way is clear
    monkeypatch.setattr(cli, "_sample_in_segments", real)
    (out / "thesis.tex").unlink()
    rc, _, err = _run(["generate", "--resume", str(run_dir), "--no-progress"])
    assert rc == 0, err
    assert sorted(os.listdir(out)) == FOUR and not run_dir.exists()


# ---------------------------------------------------------------------------------------------
# Interrupt and resume (the real entry point, in a subprocess)
# ---------------------------------------------------------------------------------------------


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
    cache = jax.config.jax_compilation_cache_dir
    if cache:
        env.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
    return env


LONG = ["--frames", "12", "--steps", "60", "--set", "iters=1", "--no-progress"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_weights, tmp_path_factory):
    """The run.json of an uninterrupted run (default segments) of the signal tests' settings."""
    d = tmp_path_factory.mktemp("ref")
    rc, _, err = _run(["generate", SEASONS, "--weights", tiny_weights, "--out", str(d / "out"), *LONG])
    assert rc == 0, err
    return json.loads((d / "out" / "run.json").read_text())


def _start_and_signal(tmp_path, weights, sig):
    """Starts ``syncos generate`` with one step per segment, sends ``sig`` after its first
    checkpoint, and returns ``(process, stderr, run folder)``."""
    out = tmp_path / "out"
    run_dir = tmp_path / ".out.resume"
    proc = subprocess.Popen([SYNCOS, "generate", SEASONS, "--weights", weights, "--out", str(out), "--checkpoint-every", "1", *LONG],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    ckpt = run_dir / "checkpoint"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.is_dir() and any(p.isdigit() for p in os.listdir(ckpt)):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be signalled: " + proc.stderr.read()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    return proc, err, run_dir


def test_ctrl_c_stops_within_a_segment_and_the_resumed_video_is_bit_identical(tmp_path, tiny_weights, uninterrupted):
    proc, err, run_dir = _start_and_signal(tmp_path, tiny_weights, signal.SIGINT)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"resume with: syncos generate --resume {run_dir}" in err
    step = int(err.split("interrupted at step ")[1].split()[0])
    assert 0 < step < 60  # stopped mid-run, not after the whole loop
    assert not (tmp_path / "out").exists() and os.listdir(run_dir / "checkpoint") == [str(step)]
    rc, _, err = _run(["generate", "--resume", str(run_dir), "--no-progress"])
    assert rc == 0, err
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["resumed_from_step"] == step
    assert record["latents_sha256"] == uninterrupted["latents_sha256"]
    assert record["nfe"] == uninterrupted["nfe"]
    assert sorted(os.listdir(tmp_path)) == ["out"]  # the run folder is gone


def test_sigkill_loses_at_most_a_segment_and_resume_is_bit_identical(tmp_path, tiny_weights, uninterrupted):
    proc, err, run_dir = _start_and_signal(tmp_path, tiny_weights, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    # a fresh run into the same folder refuses to discard the unfinished one
    rc, _, err = _run(["generate", SEASONS, "--weights", tiny_weights, "--out", str(tmp_path / "out"), *LONG])
    _one_line_error(rc, err, f"an unfinished run of it is kept in {str(run_dir)!r}", f"syncos generate --resume {run_dir}")
    # resuming with the original command repeated is fine; with another setting it is refused
    rc, _, err = _run(["generate", SEASONS, "--weights", tiny_weights, "--out", str(tmp_path / "out"), *LONG[:-1],
                       "--resume", str(run_dir), "--steps", "7"])
    _one_line_error(rc, err, "steps=7 differs from the recorded run (60)")
    rc, out, err = _run(["generate", SEASONS, "--weights", tiny_weights, "--out", str(tmp_path / "out"), *LONG,
                         "--resume", str(run_dir), "--checkpoint-every", "7"])
    assert rc == 0, err
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["resumed_from_step"] >= 1 and "resumed from step" in out
    assert record["latents_sha256"] == uninterrupted["latents_sha256"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_the_command_line_video_is_the_library_video(tiny_weights, uninterrupted):
    """The segmented, checked, checkpointed command line gives the library's ``sample`` video, bit for bit."""
    import hashlib

    from syncos_jax.backbones import toy
    from syncos_jax.chunking import ChunkLayout
    from syncos_jax.prompts import build_conditioning, load_scenario
    from syncos_jax.samplers import syncos

    bb = toy.load_default(tiny_weights)
    cond = build_conditioning(bb.encode, load_scenario(SEASONS).prompt)
    result = draw(syncos.build, bb.denoiser, bb.schedule(60), ChunkLayout(12, 8, 4), cond, key=jax.random.key(0), iters=1,
                           guidance_scale=4.0)
    latents = np.asarray(result.latents, np.float32)
    assert uninterrupted["latents_sha256"] == hashlib.sha256(latents.tobytes()).hexdigest()
    assert uninterrupted["nfe"] == int(result.nfe)


def test_resume_refuses_a_folder_that_is_not_a_run_and_a_changed_scenario(tmp_path, scenario, tiny_weights):
    # a folder of the user's that happens to hold a resume.json is not a run folder (it would be deleted)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "resume.json").write_text(json.dumps({"format": cli.RESUME_FORMAT}))
    (mine / "paper.pdf").write_bytes(b"%PDF")
    rc, _, err = _run(["generate", "--resume", str(mine)])
    _one_line_error(rc, err, "not a run folder of syncos generate")
    assert sorted(os.listdir(mine)) == ["paper.pdf", "resume.json"]
    rc, _, err = _run(["generate", "--resume", str(tmp_path)])
    _one_line_error(rc, err, "not a run folder of syncos generate (no valid resume.json)")
    rc, _, err = _run(["generate", "--no-progress"])
    _one_line_error(rc, err, "generate needs a SCENARIO file (or --resume RUN_DIR)")
    # a run folder whose scenario changed since
    run_dir = tmp_path / ".o.resume"
    run_dir.mkdir()
    args = cli._recorded_args(cli.build_parser().parse_args(_args(scenario, tmp_path / "o", tiny_weights)))
    (run_dir / "resume.json").write_text(json.dumps({"format": cli.RESUME_FORMAT, "args": args,
                                                     "digests": {"scenario": "0" * 64, "weights": cli._digest(tiny_weights)}}))
    rc, _, err = _run(["generate", "--resume", str(run_dir), "--no-progress"])
    _one_line_error(rc, err, f"the scenario {scenario!r} changed since the run started")
    # a tampered record (wrong types) is refused, not a traceback
    for bad in ({"frames": "12"}, {"seed": "x"}, {"scenario": None}, {"set": [1]}):
        (run_dir / "resume.json").write_text(json.dumps({"format": cli.RESUME_FORMAT, "args": {**args, **bad}, "digests": {}}))
        rc, _, err = _run(["generate", "--resume", str(run_dir), "--no-progress"])
        _one_line_error(rc, err, "not a run folder of syncos generate (no valid resume.json)")
    (run_dir / "resume.json").write_text(json.dumps({"format": cli.RESUME_FORMAT, "args": args, "digests": []}))
    rc, _, err = _run(["generate", "--resume", str(run_dir), "--no-progress"])
    _one_line_error(rc, err, "not a run folder of syncos generate (no valid resume.json)")
    # a damaged checkpoint is one line too
    (run_dir / "resume.json").write_text(json.dumps({"format": cli.RESUME_FORMAT, "args": args, "digests": {
        "scenario": cli._digest(scenario), "weights": cli._digest(tiny_weights)}}))
    (run_dir / "checkpoint" / "3").mkdir(parents=True)
    (run_dir / "checkpoint" / "3" / "garbage").write_text("x")
    rc, _, err = _run(["generate", "--resume", str(run_dir), "--no-progress"])
    assert rc in (0, 2), err  # orbax ignores an incomplete step folder (then it starts afresh) or it is one line
    if rc == 2:
        _one_line_error(rc, err, "its checkpoint cannot be read")


# ---------------------------------------------------------------------------------------------
# Silent wrong results and tracebacks: each is one line, exit 2, nothing written, nothing sampled
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_sampling(monkeypatch):
    """Makes starting to sample an error: what these tests reject must be rejected before it."""

    def boom(*a, **k):
        raise AssertionError("sampling started")

    monkeypatch.setattr(cli, "_restore_or_init", boom)
    monkeypatch.setattr(cli, "_sample_in_segments", boom)


BAD_FLAGS = [
    (["--guidance", "nan"], "error: --guidance=nan: expected a finite number >= 0"),
    (["--guidance", "inf"], "error: --guidance=inf: expected a finite number >= 0"),
    (["--guidance", "-1"], "error: --guidance=-1.0: expected a finite number >= 0"),
    (["--set", "lr=.nan"], "error: --set lr=nan: expected a finite number >= 0"),
    (["--set", "t_min=[1, 2]"], "error: --set t_min=[1, 2]: expected none or a finite number"),
    (["--set", "iters=ten"], "error: --set iters='ten': expected an integer in [1, 1000000]"),
    (["--set", "eta=1.5"], "error: --set eta=1.5: expected a finite number in [0, 1]"),
    (["--set", "check_finite=1"], "error: --set check_finite=1: expected true or false"),
    (["--set", "stages=[1, 4]"], "error: --set stages=[1, 4]: expected a list of 1+ values, each an integer in [1, 3]"),
    (["--set", "bogus=1"], "error: --set bogus=1: not a setting of syncos"),
    (["--set", "x=*a"], "error: --set: field 'x': YAML aliases (*name) are not allowed here"),
    (["--seed", "4294967296"], "error: --seed=4294967296: expected an integer in [0, 4294967295]"),
    (["--seed", str(2**63)], "error: --seed=9223372036854775808: expected an integer in [0, 4294967295]"),
    (["--seed", "-1"], "error: --seed=-1: expected an integer in [0, 4294967295]"),
    (["--steps", "5000"], "error: --steps=5000: expected an integer in [1, 1000]"),
    (["--steps", "many"], "error: argument --steps: invalid int value: 'many'"),
    (["--stride", "0"], "error: --stride=0: expected an integer in [1, 8]"),
    (["--frames", "100000"], "field '--frames': expected an integer in [8, 10000]"),
    (["--sampler", "fifo", "--set", "num_partitions=0"], "error: --set num_partitions=0: expected an integer in [1, 10000]"),
    (["--sampler", "freenoise", "--set", "noise_stride=20"], "error: --set noise_stride=20: expected an integer in [1, window=8]"),
    (["--sampler", "gen-l-video", "--set", "stages=[1, 2, 3]"], "error: --set stages=[1, 2, 3]: not a setting of gen-l-video"),
    (["--set", "frame_shape=[1, 2, 3]"], "error: --set frame_shape=[1, 2, 3]: not a setting of syncos"),  # build keywords are not settings
    (["--set", "mesh=foo"], "error: --set mesh='foo': not a setting of syncos"),
    (["--set", "fusion_weights=[1, 2, 3]"], "error: --sampler syncos: fusion_weights must be 8 finite positive"),  # at trace time
    (["--set", "fusion_weights=[0, 1, 1, 1, 1, 1, 1, 1]"], "error: --set fusion_weights=[0, 1, 1, 1, 1, 1, ...]: expected"),
    (["--set", "lr=!!float abc"], "error: --set: field 'lr': a value YAML cannot build"),
    (["--set", "seed=2020-13-45"], "error: --set: field 'seed': a value YAML cannot build"),
    (["--steps", "9" * 5000], "error: argument --steps: invalid int value: '99999"),
]


@pytest.mark.parametrize("flags,message", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flags_are_one_line_before_sampling(tmp_path, scenario, tiny_weights, no_sampling, flags, message):
    argv = ["generate", scenario, "--weights", tiny_weights, "--frames", "12", "--out", str(tmp_path / "o"), "--no-progress", *flags]
    rc, _, err = _run(argv)
    _one_line_error(rc, err, message)
    assert sorted(os.listdir(tmp_path)) == ["s.yaml"]


BAD_SCENARIOS = [
    ("global_prompt: grass on right moves\nlocal_prompts: [a]\n", "local_prompts[0]",
     "caption 'grass on right moves a' does not parse; expected 'a SIZE COLOUR SHAPE MOTION on BACKGROUND"),
    ("global_prompt: circle moves right\nlocal_prompts: [on snow]\n", "local_prompts[0]", "caption 'circle moves right on snow' does not parse"),
    ("global_prompt: a small red circle\nlocal_prompts: [moves left on snow, moves up on snow, moves left on snow]\nframes: 8\n"
     "sampler: {lr: 1e-3, iters: 1, steps: 1}\n", None, None),  # valid (1e-3 is read as a number): see below
    ("global_prompt: a small red circle\nlocal_prompts: [" + ", ".join(["moves left on snow"] * 9) + "]\nframes: 8\n",
     "local_prompts", "9 local prompts need at least 9 frames (one per event), got 8"),
    ("global_prompt: a small red circle\nlocal_prompts: [moves left on snow]\nseed: 4294967296\n", "seed",
     "expected an integer in [0, 4294967295], got 4294967296"),
    ("global_prompt: a small red circle\nlocal_prompts: [moves left on snow]\nsampler: {iters: ten}\n", "sampler.iters",
     "expected an integer in [1, 1000000], got 'ten'"),
    ("global_prompt: a small red circle\nlocal_prompts: [moves left on snow]\nsampler: {t_min: [1, 2]}\n", "sampler.t_min",
     "expected none or a finite number, got [1, 2]"),
    ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
     "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
     "global_prompt: *e\nlocal_prompts: [x]\n", "(file)", "YAML aliases (*name) are not allowed here (line 2)"),
    ("global_prompt: a small red circle\nlocal_prompts: [" + "x" * 5000 + "]\n", "local_prompts[0]", "..."),
]


@pytest.mark.parametrize("text,field,problem", [b for b in BAD_SCENARIOS if b[1]], ids=lambda v: str(v)[:30])
def test_bad_scenarios_are_one_line_before_sampling(tmp_path, tiny_weights, no_sampling, text, field, problem):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    rc, _, err = _run(["generate", str(path), "--weights", tiny_weights, "--out", str(tmp_path / "o"), "--no-progress"])
    _one_line_error(rc, err, f"error: {path}: field '{field}': ", problem)
    assert len(err) < 700  # never the expanded value
    assert sorted(os.listdir(tmp_path)) == ["s.yaml"]


def test_exponent_numbers_in_yaml_are_numbers(tmp_path, tiny_weights):
    path = tmp_path / "s.yaml"
    path.write_text(BAD_SCENARIOS[2][0])
    rc, _, err = _run(["generate", str(path), "--weights", tiny_weights, "--out", str(tmp_path / "o"), "--no-progress",
                       "--set", "weight_decay=1E-2"])
    assert rc == 0, err
    assert json.loads((tmp_path / "o" / "run.json").read_text())["settings"]["options"] == {
        "lr": 1e-3, "iters": 1, "weight_decay": 1e-2}


def test_non_utf8_and_oversized_scenarios(tmp_path, tiny_weights, no_sampling):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"global_prompt: a small red circle \xe9\nlocal_prompts: [moves left on snow]\n")
    rc, _, err = _run(["generate", str(path), "--weights", tiny_weights, "--no-progress", "--out", str(tmp_path / "o")])
    _one_line_error(rc, err, "field '(file)': not UTF-8 text (byte 34)")
    path.write_bytes(b"#" * (70 * 1024))
    rc, _, err = _run(["generate", str(path), "--weights", tiny_weights, "--no-progress", "--out", str(tmp_path / "o")])
    _one_line_error(rc, err, "field '(file)': 71680 bytes; a scenario file may have at most 65536")


def _weights_variants(tmp_path, tiny):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    tensors = load_file(tiny)
    with safe_open(tiny, "numpy") as f:
        meta = f.metadata()
    (tmp_path / "text.safetensors").write_text("these are not weights")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "truncated.safetensors").write_bytes(open(tiny, "rb").read()[:-100])
    (tmp_path / "folder").mkdir()
    nan = dict(tensors)
    name = sorted(nan)[3]
    nan[name] = nan[name].copy()
    nan[name].flat[0] = np.nan
    save_file(nan, str(tmp_path / "nan.safetensors"), metadata=meta)
    save_file(tensors, str(tmp_path / "badjson.safetensors"), metadata={**meta, "config": "{not json"})
    cfg = json.loads(meta["config"])
    save_file(tensors, str(tmp_path / "badtype.safetensors"), metadata={**meta, "config": json.dumps({**cfg, "dim": "16"})})
    return {
        "text.safetensors": "is not a safetensors file",
        "empty.safetensors": "is not a safetensors file",
        "truncated.safetensors": "is not a safetensors file (Error while deserializing header: incomplete metadata",
        "folder": "is a folder, not a toy model weights file",
        "nan.safetensors": f"holds NaN or Inf in 1 tensor(s): [{name!r}]",
        "badjson.safetensors": "its metadata is not valid JSON",
        "badtype.safetensors": "ToyConfig.dim must be an integer >= 1, got '16'",
        "missing.safetensors": "does not exist (no toy model weights there)",
    }


def test_unusable_weights_files_are_named_in_one_line(tmp_path, scenario, tiny_weights, no_sampling, monkeypatch):
    for name, problem in _weights_variants(tmp_path, tiny_weights).items():
        path = str(tmp_path / name)
        rc, _, err = _run(["generate", scenario, "--weights", path, "--no-progress", "--out", str(tmp_path / "o")])
        _one_line_error(rc, err, f"error: --weights: {path!r}", problem)
    assert not (tmp_path / "o").exists()
    # without --weights, the message names the shipped weights, not a flag that was not given
    from syncos_jax.backbones import toy

    def broken(*a):
        raise ValueError("'toy_dit.safetensors' holds NaN or Inf in 1 tensor(s)")

    monkeypatch.setattr(toy, "load_default", broken)
    rc, _, err = _run(["generate", scenario, "--no-progress", "--out", str(tmp_path / "o")])
    _one_line_error(rc, err, "error: the shipped toy weights: 'toy_dit.safetensors' holds NaN")


def test_unwritable_or_symlinked_out_is_refused_before_sampling(tmp_path, scenario, tiny_weights, no_sampling):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    rc, _, err = _run(_args(scenario, tmp_path / "link", tiny_weights))
    _one_line_error(rc, err, "is a symbolic link; give the folder itself")
    (tmp_path / "file").write_text("x")
    rc, _, err = _run(_args(scenario, tmp_path / "file" / "o", tiny_weights))
    _one_line_error(rc, err, f"{str(tmp_path / 'file')!r} is not a folder")
    rc, _, err = _run(_args(scenario, tmp_path / "file", tiny_weights))
    _one_line_error(rc, err, "exists and is not a folder")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            rc, _, err = _run(_args(scenario, ro / "o", tiny_weights))
            _one_line_error(rc, err, "cannot write in")
        finally:
            ro.chmod(0o755)
    assert sorted(os.listdir(real)) == []


@pytest.mark.slow  # 20 s; test_samplers.py::test_check_finite_names_the_step_and_stage checks the same report by default
def test_non_finite_values_stop_the_run_with_step_time_and_stage(tmp_path, scenario, tiny_weights):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    # a tiny model whose output depends on the text, so that a huge guidance scale overflows
    rng = np.random.default_rng(0)
    with safe_open(tiny_weights, "numpy") as f:
        meta = f.metadata()
    live = str(tmp_path / "live.safetensors")
    save_file({k: (v + 0.3 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in load_file(tiny_weights).items()},
              live, metadata=meta)
    out = tmp_path / "o"
    rc, _, err = _run(_args(scenario, out, live, "--guidance", "1e30", "--steps", "3"))
    _one_line_error(rc, err, "error: non-finite value (NaN/Inf) first appeared at step ", "(grid time t=", " in stage ",
                    "Nothing was written.")
    rc, _, err = _run(["generate", scenario, "--weights", live, "--frames", "12", "--steps", "3", "--out", str(out), "--no-progress",
                       "--guidance", "1e30", "--sampler", "fifo", "--set", "num_partitions=1"])
    _one_line_error(rc, err, "error: non-finite value (NaN/Inf) first appeared in FIFO's base video, at DDIM step ", "(grid time t=")
    assert sorted(os.listdir(tmp_path)) == ["live.safetensors", "s.yaml"]  # no output, no run folder
    # the check can be turned off: then the run completes (and the record stays strict JSON)
    assert _run(_args(scenario, out, live, "--guidance", "1e30", "--steps", "3", "--set", "check_finite=false"))[0] == 0
    json.loads((out / "run.json").read_text(), parse_constant=lambda c: pytest.fail(f"run.json holds {c}"))


def test_fifo_names_the_queue_iteration_not_a_grid_time():
    import jax.numpy as jnp

    from syncos_jax import schedules
    from syncos_jax.backbones.protocol import DenoiserDef
    from syncos_jax.chunking import ChunkLayout
    from syncos_jax.prompts import Conditioning
    from syncos_jax.samplers import fifo

    # NaN only in per-frame calls (the queue); the base video's per-chunk calls stay finite
    defn = DenoiserDef(prediction_type="epsilon", frames_per_chunk=4, per_frame_timesteps=True,
                       fn=lambda p, x, t, c: x * 0 + (jnp.nan if t.ndim == 2 else 0.0))
    sch = schedules.ddpm(num_inference_steps=8)
    layout = ChunkLayout(8, 4, 2)
    cond = Conditioning(prompts=jnp.zeros((1,), jnp.int32), uncond=jnp.zeros((1,), jnp.int32))
    with pytest.raises(FloatingPointError, match=r"^non-finite value \(NaN/Inf\) first appeared at FIFO iteration 0 of 12 "
                                                 r"\(warm-up, 4 iterations before the first output frame\) in the queue update"):
        draw(fifo.build, (defn, ()), sch, layout, cond, key=jax.random.key(0), frame_shape=(2, 2, 1), num_partitions=2,
                    guidance_scale=1.0, check_finite=True)


def test_run_json_is_strict_json_even_with_nan_readings():
    record = cli._json_safe({"a": float("nan"), "b": [np.float32(np.inf), np.int64(3)], "c": {"d": -float("inf")}})
    assert record == {"a": None, "b": [None, 3], "c": {"d": None}}
    json.dumps(record, allow_nan=False)


def test_convert_with_a_bad_config_is_one_line_and_writes_nothing(tmp_path):
    src = tmp_path / "src" / "transformer"
    src.mkdir(parents=True)
    for text, problem in [("{not json", "is not valid JSON"), ("[1, 2]", "must hold a JSON object, got list"),
                          ('{"num_layers": "two"}', "CogVideoX config key 'num_layers' must be int, got str 'two'"),
                          ('{"norm_eps": null}', "CogVideoX config key 'norm_eps' must be float, got NoneType")]:
        (src / "config.json").write_text(text)
        rc, _, err = _run(["convert", "cogvideox", str(tmp_path / "src"), str(tmp_path / "dst"), "--no-progress"])
        _one_line_error(rc, err, "error: convert cogvideox ", problem)
        assert not (tmp_path / "dst").exists()


def test_interrupt_before_sampling_is_one_line_and_writes_nothing(tmp_path, scenario, tiny_weights, monkeypatch):
    from syncos_jax.backbones import toy

    def interrupted(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(toy, "load_default", interrupted)
    rc, _, err = _run(_args(scenario, tmp_path / "o", tiny_weights))
    assert rc == 130 and err == "interrupted before sampling started; nothing was written\n"
    assert sorted(os.listdir(tmp_path)) == ["s.yaml"]


# ---------------------------------------------------------------------------------------------
# The property: any scenario file and flags end in exit 0 with all four files, or exit 2 with
# one line; never a traceback, a partial output, or a change to a folder that was not an output
# ---------------------------------------------------------------------------------------------

_PROMPTS = ["a small red circle", "a large blue square", "a tiny red circle", "circle", "", "a small cyan triangle moves left on"]
_LOCALS = ["moves left on snow", "stays still on grass", "moves up on sand then night", "on snow", "moves left", "  "]
_VALUES = [1, 2, 0, -1, 0.5, float("nan"), "ten", [1, 2], None, True, 1e30, "1e-3", 10**400, [0.0] * 8, [1.0] * 8,
           {"a": 1}]
_SETTINGS = ["steps", "iters", "lr", "t_min", "stride", "guidance_scale", "bogus", "eta", "check_finite", "batch_chunks",
             "fusion_weights"]

valid_scenario = st.fixed_dictionaries(  # few distinct sampler configs: each is a compilation
    {"global_prompt": st.sampled_from(["a small red circle", "a large blue square"]),
     "local_prompts": st.lists(st.sampled_from(_LOCALS[:3]), min_size=1, max_size=3)},
    optional={"frames": st.sampled_from([8, 12]), "seed": st.sampled_from([0, 7]),
              "sampler": st.just({"iters": 1})},
)
any_scenario = st.fixed_dictionaries(
    {"global_prompt": st.sampled_from(_PROMPTS + [7, None])},
    optional={
        "local_prompts": st.one_of(st.lists(st.sampled_from(_LOCALS), max_size=3), st.sampled_from(["moves left on snow", 3])),
        "frames": st.sampled_from([8, 12, 5, 0, -3, 10**9, "ten", 1.5, True]),
        "seed": st.sampled_from([0, 7, -1, 2**32, 2**63, "x", 1.0]),
        "sampler": st.dictionaries(st.sampled_from(_SETTINGS), st.sampled_from(_VALUES), max_size=2),
        "colour": st.just("red"),
    },
)
_VALID_FLAGS = [("--frames", "8"), ("--frames", "12"), ("--seed", "3"), ("--stride", "4"), ("--set", "iters=1"),
                ("--sampler", "gen-l-video")]
any_flags = st.lists(st.sampled_from([
    ("--steps", "1"), ("--steps", "2"), ("--steps", "0"), ("--steps", "5000"), ("--steps", "x"),
    ("--guidance", "1"), ("--guidance", "nan"), ("--guidance", "-2"), ("--frames", "8"), ("--frames", "12"),
    ("--frames", "3"), ("--seed", "4294967296"), ("--seed", "3"), ("--stride", "4"), ("--stride", "9"),
    ("--set", "iters=1"), ("--set", "iters=ten"), ("--set", "lr=.nan"), ("--set", "t_min=[1, 2]"), ("--set", "bogus=1"),
    ("--set", "check_finite=false"), ("--set", "eta=0"), ("--set", "num_partitions=1"), ("--set", "noise"),
    ("--sampler", "gen-l-video"), ("--sampler", "fifo"), ("--sampler", "ddim"), ("--sampler", "nope"),
]), max_size=5)
scenario_data = st.one_of(valid_scenario, any_scenario)  # some runs valid (each compiles), most not
flag_lists = st.one_of(st.lists(st.sampled_from(_VALID_FLAGS), max_size=3), any_flags)


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=scenario_data, flags=flag_lists,
       out_kind=st.sampled_from(["new", "new", "unrelated", "nested/new", "earlier", "link", "empty"]),
       overwrite=st.booleans(),
       raw=st.sampled_from([None] * 8 + ["{unclosed", "a: *x", b"\xff\xfe", "global_prompt: !!float abc\n",
                                         "seed: 2020-13-45\n", "frames: " + "9" * 5000 + "\n"]))
def test_any_scenario_and_flags_end_cleanly(tiny_weights, data, flags, out_kind, overwrite, raw):
    box = tempfile.mkdtemp()
    try:
        path = os.path.join(box, "s.yaml")
        if raw is None:
            with open(path, "w") as fh:
                yaml.safe_dump(data, fh)
        else:
            with open(path, "wb") as fh:
                fh.write(raw if isinstance(raw, bytes) else raw.encode())
        os.mkdir(os.path.join(box, "unrelated"))
        with open(os.path.join(box, "unrelated", "keep.txt"), "w") as fh:
            fh.write("mine")
        os.mkdir(os.path.join(box, "empty"))
        os.symlink(os.path.join(box, "unrelated"), os.path.join(box, "link"))
        os.mkdir(os.path.join(box, "earlier"))  # an earlier output: replaced only with --overwrite
        with open(os.path.join(box, "earlier", "run.json"), "w") as fh:
            json.dump(outdir.MARKER, fh)
        out = os.path.join(box, out_kind)
        argv = ["generate", path, "--weights", tiny_weights, "--out", out, "--no-progress", "--steps", "1"]
        argv += [v for pair in flags for v in pair] + (["--overwrite"] if overwrite else [])
        before = _tree(box)
        rc, _, err = _run(argv)
        event(f"exit {rc}")
        after = _tree(box)
        if rc == 0:
            assert sorted(os.listdir(out)) == FOUR, err
            assert out_kind in ("new", "nested/new", "empty") or (out_kind == "earlier" and overwrite), out_kind
            json.loads(open(os.path.join(out, "run.json")).read(), parse_constant=lambda c: pytest.fail(c))
            changed = {k for k in set(before) | set(after) if before.get(k, 0) != after.get(k, 0)}
            rel = os.path.relpath(out, box)
            assert all(k == rel or k.startswith(rel + os.sep) or rel.startswith(k + os.sep) for k in changed), changed
        else:
            _one_line_error(rc, err)
            assert after == before, sorted(set(after) ^ set(before))
    finally:
        shutil.rmtree(box, ignore_errors=True)
