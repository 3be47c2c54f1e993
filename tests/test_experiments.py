"""Smoke test of the experiment scripts: ``experiments/run_all.py`` end to end on one tiny scenario.

A tiny random toy model (so compiling is quick), one scenario, one seed, two steps: every script
runs, writes strict JSON, Markdown and its plots, and the run cache makes a second call sample
nothing. The figures themselves are results, not tests (see experiments/results/).
"""

import json
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "experiments"))


def test_scenario_suite_is_what_its_script_writes(tmp_path):
    import make_scenarios

    make_scenarios.main(["--out", str(tmp_path)])
    ours = sorted(os.listdir(os.path.join(HERE, "..", "experiments", "scenarios")))
    assert sorted(os.listdir(tmp_path)) == ours and len(ours) >= 24
    for name in ours:
        with open(tmp_path / name) as a, open(os.path.join(HERE, "..", "experiments", "scenarios", name)) as b:
            assert a.read() == b.read(), name
    from syncos_jax.prompts import load_scenario

    frames = {load_scenario(str(tmp_path / n)).frames for n in ours}
    events = {len(load_scenario(str(tmp_path / n)).prompt.local_prompts) for n in ours}
    assert frames == {32, 48, 64, 96} and events == {2, 3, 4, 6}
    assert sum(load_scenario(str(tmp_path / n)).frames == 96 for n in ours) == 6  # one long one per kind


def test_run_all_smoke(tmp_path, tiny_weights):
    """Tables 1, 3 and 4 and the identity drift through ``run_all`` (all reuse Table 1's compiled programs and runs)."""
    import common
    import run_all

    scripts = ["table1_baselines", "identity_drift", "table3_stages", "table4_cost"]
    argv = ["--quick", "--names", "motion-2ev-32f", "--seeds", "0", "--steps", "2", "--weights", tiny_weights,
            "--results", str(tmp_path), "--only"] + scripts
    run_all.main(argv)
    for name in scripts:
        with open(tmp_path / f"{name}.json") as fh:
            payload = json.load(fh)  # strict JSON: no NaN
        assert payload["title"]
        assert (tmp_path / f"{name}.md").read_text().startswith("# ")
    for png in ("table1_baselines", "table3_stages", "identity_drift", "identity_drift_distance"):
        assert (tmp_path / f"{png}.png").stat().st_size > 1000
    t1 = json.load(open(tmp_path / "table1_baselines.json"))
    assert set(t1["summary"]) == {"gen_l_video", "fifo", "csd_only", "syncos"}
    assert t1["summary"]["syncos"]["subject_consistency"]["n"] == 1
    assert t1["setup"]["weights"] == "tiny.safetensors"  # no machine paths in results
    drift = json.load(open(tmp_path / "identity_drift.json"))["summary"]["syncos"]
    assert drift["identity_agreement_1"]["n"] == 1 and drift["identity_drift"]["n"] == 0  # 32 frames: no pair 32 apart
    by_seed = json.load(open(tmp_path / "identity_drift.json"))["paired_by_seed"]
    assert set(by_seed) == {"fifo", "csd_only", "syncos", "renoise_only"} and by_seed["syncos"]["0"]["identity_unprompted"]["n"] == 1
    assert "seed by seed" in (tmp_path / "identity_drift.md").read_text()
    # SynCoS paired against its re-noise-only control: the same (scenario, seed), so one pair here
    control = json.load(open(tmp_path / "identity_drift.json"))["syncos_vs_renoise_only"]
    assert control["pooled"]["identity_unprompted"]["n"] == 1 and set(control["by_seed"]) == {"0"}
    assert "re-noise-only control" in (tmp_path / "identity_drift.md").read_text()
    t4 = json.load(open(tmp_path / "table4_cost.json"))
    assert {r["method"]: r["nfe_ratio"] for r in t4["rows"]}["Gen-L-Video"] == 1.0
    # Every run is cached once; a second call samples nothing and reproduces the table.
    assert sum(1 for _ in open(tmp_path / "runs" / "syncos.jsonl")) == 1
    sample = common.sample_scenario
    common.sample_scenario = None  # any sampling now would fail
    try:
        run_all.main(argv[:-len(scripts)] + ["table1_baselines"])
        assert json.load(open(tmp_path / "table1_baselines.json"))["summary"] == t1["summary"]
        # --cached-only tables a partial run: seed 1 was never sampled, so each variant has one video.
        run_all.main(argv[:-len(scripts)] + ["table1_baselines", "--seeds", "0", "1", "--cached-only"])
    finally:
        common.sample_scenario = sample
    partial = json.load(open(tmp_path / "table1_baselines.json"))
    assert partial["setup"]["seeds"] == [0, 1] and partial["setup"]["cached_only"]
    assert partial["summary"]["syncos"]["videos"]["n"] == 1


def test_every_variant_of_every_table_is_a_valid_setting():
    """The variants of Table 2, the mechanism study and the sweeps build valid sampler configs (no sampling)."""
    import mechanism
    import sweeps
    import table2_ablations

    from syncos_jax.chunking import ChunkLayout
    from syncos_jax.samplers import fifo, syncos

    variants = list(table2_ablations.VARIANTS) + list(mechanism.variants()) + sweeps.variants(False) + sweeps.variants(True)
    assert len({v.name for v in variants}) == len({(v.name, v.settings["sampler"], str(v.settings)) for v in variants})
    defaults = {"syncos": {}, "gen-l-video": {"stages": (1, 3)}, "csd-only": {"stages": (2,), "t_min": None}}
    for v in variants:
        ChunkLayout(32, 8, v.stride)
        if v.sampler == "fifo":
            fifo.make_config(**dict(v.options))
        else:
            syncos.make_config(**{**defaults[v.sampler], **dict(v.options)})
    gamma = mechanism.data_gamma()
    assert 0 < gamma < 1e-2  # log(5)/median squared distance of 8-frame clips (thousands of px²)


def test_toy_denoise_from_smoke(tmp_path, tiny_weights, capsys):
    """The shape-loss diagnostic runs end to end and records each start level; from the last grid step
    (α near 1) the one-step x̂_0 of the tiny model is judged, and the renders themselves read 100 %."""
    import toy_denoise_from

    out = tmp_path / "d.json"
    assert toy_denoise_from.main(["--weights", tiny_weights, "--num", "2", "--starts", "49", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    rows = record["rows"]
    assert record["weights"] == "tiny.safetensors" and len(record["weights_sha256_16"]) == 16  # no machine paths
    assert [r["k"] for r in rows] == [49] and 0.0 < rows[0]["alpha"] <= 1.0
    assert set(rows[0]["one_step"]) == set(rows[0]["ddim"]) == {"shape", "colour", "size", "unprompted_clip"}
    assert "renders themselves: shape 100%, colour 100%, size 100%, unprompted_clip 100%" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--starts must lie in"):
        toy_denoise_from.main(["--weights", tiny_weights, "--num", "1", "--starts", "50"])


def test_eval_toy_model_smoke_and_rejudging_saved_samples(tmp_path, tiny_weights):
    """The quality-bar script end to end on a tiny model; judging its saved samples again
    (``--from-samples``) gives the same record; samples of other captions, other starting noise or
    another sampler are refused, as are files that do not record them; ``--paired-with`` the same
    samples gives zero differences."""
    import numpy as np

    import eval_toy_model

    a, b, npz = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "s.npz"
    common = ["--weights", tiny_weights, "--num", "3", "--steps", "2", "--batch", "3"]
    assert eval_toy_model.main(common + ["--json", str(a), "--save-samples", str(npz)]) == 0
    assert eval_toy_model.main(common + ["--json", str(b), "--from-samples", str(npz)]) == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["weights"] == "tiny.safetensors" and rb["from_samples"] == "s.npz" and ra["from_samples"] is None
    for key in ("model", "confusion", "identity_histogram", "agreement", "agreement_renders"):
        assert ra[key] == rb[key]
    assert rb["agreement_renders"]["within_clip"] == 1.0  # a render keeps its shade and pattern
    with pytest.raises(SystemExit, match="not those of --num 3 --seed 7"):
        eval_toy_model.main(common + ["--seed", "7", "--json", "", "--from-samples", str(npz)])
    with pytest.raises(SystemExit, match="sampled with --batch 3, this run has --batch 2"):  # other starting noise
        eval_toy_model.main(common + ["--batch", "2", "--json", "", "--from-samples", str(npz)])
    with pytest.raises(SystemExit, match="--paired-with .* sampled with --steps 2, this run has --steps 3"):
        eval_toy_model.main(common + ["--steps", "3", "--json", "", "--paired-with", str(npz)])
    # paired with itself: every difference is zero, and the record names the other file
    assert eval_toy_model.main(common + ["--json", str(b), "--from-samples", str(npz), "--paired-with", str(npz)]) == 0
    paired = json.loads(b.read_text())["paired"]
    assert paired.pop("with") == "s.npz" and all(v["mean"] == 0.0 for v in paired.values())
    old = tmp_path / "old.npz"  # written before the settings were stored
    saved = np.load(npz)
    np.savez_compressed(old, clips=saved["clips"], texts=saved["texts"])
    with pytest.raises(SystemExit, match="does not record --seed"):
        eval_toy_model.main(common + ["--json", "", "--from-samples", str(old)])


def test_eval_toy_images_smoke_reads_renders_exactly(tmp_path, tiny_weights, capsys):
    """The single-frame diagnostic end to end on a tiny model (JSON without machine paths, a picture of
    one (sample | render) pair per sample); its judge reads a render of each caption exactly."""
    import numpy as np

    import eval_toy_images
    from syncos_jax.backbones.toy import world

    out, png = tmp_path / "i.json", tmp_path / "g.png"
    assert eval_toy_images.main(["--weights", tiny_weights, "--num", "3", "--steps", "2", "--batch", "2",
                                 "--json", str(out), "--grid", str(png)]) == 0
    record = json.loads(out.read_text())
    assert record["weights"] == "tiny.safetensors" and record["num"] == 3
    assert all(record["renders"][k] == 1.0 for k in ("colour", "shape", "size", "background"))
    assert sum(record["model"]["shade_histogram"].values()) == 3 == sum(map(sum, record["model"]["shape_confusion"]))
    import imageio.v3 as iio

    assert iio.imread(png).shape == (3 * 35, 3 * 8 * 68, 3)  # one row of 8 pairs (32 + 1 + 32 + 3 px), 3× scale
    rng = np.random.default_rng(0)
    for _ in range(12):
        text = world.random_caption(rng, event_probability=0.0)
        track = world.track_from_caption(text, 1, rng)
        j = eval_toy_images.judge_frame(text, world.render(track)[0])
        assert all(j[k] for k in eval_toy_images.FACTORS)
        assert (j["shade"], j["pattern"]) == (int(track.shade[0]), int(track.pattern[0]))
    with pytest.raises(SystemExit):
        eval_toy_images.main(["--weights", tiny_weights, "--num", "0"])


def test_toy_x0_error_is_zero_for_an_oracle_and_one_for_a_do_nothing_model(tiny_weights):
    """x0_errors against closed forms: a model whose v̂ is the true v has error 0; one whose v̂ makes
    x̂_0 = x_t / α_t (v̂ = (α_t² − 1) x_t / (α_t σ_t)) has the input's error σ_t² / α_t² exactly."""
    import jax.numpy as jnp
    import numpy as np

    import toy_x0_error
    from syncos_jax.backbones import toy
    from syncos_jax.backbones.toy import world
    from syncos_jax.schedules import cogvideox_2b

    texts, clips, _ = world.sample_batch(3, 2, 8, 0.0, 0.0)
    backbone = toy.load_default(tiny_weights)
    sch = cogvideox_2b()

    class Lazy:  # x̂_0 = x_t / α_t
        def __call__(self, x, t, tok):
            a, s = sch.train_alphas[t][:, None, None, None, None], sch.train_sigmas[t][:, None, None, None, None]
            return (a**2 - 1) * x / (a * s)

    class Oracle:  # v̂ = v, i.e. x̂_0 = x_0
        def __call__(self, x, t, tok):
            a, s = sch.train_alphas[t][:, None, None, None, None], sch.train_sigmas[t][:, None, None, None, None]
            return (a * x - jnp.asarray(clips)) / s

    backbone.model = Lazy()
    got = toy_x0_error.x0_errors(backbone, clips, texts, [5, 300])
    for t, (err, ref) in got.items():
        import jax

        eps = jax.random.normal(jax.random.fold_in(jax.random.key(0), t), clips.shape)  # the noise x0_errors draws
        assert ref == pytest.approx(float(sch.train_sigmas[t] / sch.train_alphas[t]) ** 2)
        assert err == pytest.approx(ref * float(jnp.mean(eps**2)), rel=1e-4)  # (σ/α)² · mean ε², exactly
    backbone.model = Oracle()
    assert all(err < 1e-10 for err, _ in toy_x0_error.x0_errors(backbone, clips, texts, [5, 300]).values())


def test_toy_x0_error_regions_partition_the_pixels_and_the_box_filter_matches_by_hand(tiny_weights):
    """pixel_regions partitions every pixel into flat background, flat object interior and detail
    (a pixel with a different neighbour within 3×3); the per-pixel maps of the do-nothing model are
    (σ/α)² · ε² exactly; the box filter's error, inside a frame and at a corner (edges replicated),
    is that of the 3×3 mean of x_t / α_t there, computed by hand."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import toy_x0_error
    from syncos_jax.backbones import toy
    from syncos_jax.backbones.toy import world
    from syncos_jax.schedules import cogvideox_2b

    clip = np.zeros((1, 1, 8, 8, 3), np.float32)
    clip[0, 0, 5, 5, 1] = 0.5
    changes = toy_x0_error.neighbourhood_changes(clip)[0, 0]
    assert changes.sum() == 9 and changes[4:7, 4:7].all()
    texts, clips, tracks = world.sample_batch(3, 2, 8, 0.0, 0.0)
    regions = toy_x0_error.pixel_regions(clips, tracks)
    total = sum(m.astype(int) for m in regions.values())
    assert (total == 1).all() and all(m.any() for m in regions.values())
    inside = np.stack([world.object_masks(tr, 32) for tr in tracks]) > 0
    assert not (regions["object"] & ~inside).any() and not (regions["background"] & inside).any()
    outline = inside & ~np.roll(inside, 1, axis=3)  # object pixels whose left neighbour is outside
    outline[..., 0] = False  # (np.roll wraps around)
    assert outline.any() and regions["detail"][outline].all()

    sch = cogvideox_2b()
    backbone = toy.load_default(tiny_weights)

    class Lazy:  # x̂_0 = x_t / α_t
        def __call__(self, x, t, tok):
            a, s = sch.train_alphas[t][:, None, None, None, None], sch.train_sigmas[t][:, None, None, None, None]
            return (a**2 - 1) * x / (a * s)

    backbone.model = Lazy()
    t = 300
    a, s = float(sch.train_alphas[t]), float(sch.train_sigmas[t])
    eps = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.key(0), t), clips.shape))
    maps = toy_x0_error.x0_error_maps(backbone, clips, texts, [t])[t]
    np.testing.assert_allclose(maps, (s / a) ** 2 * np.mean(eps**2, axis=-1), rtol=1e-3, atol=1e-9)
    assert toy_x0_error.x0_errors(backbone, clips, texts, [t])[t][0] == pytest.approx(float(maps.mean()), rel=1e-6)
    box = toy_x0_error.box_filter_error_maps(clips, [t])[t]
    y = clips + (s / a) * eps  # x_t / α_t
    n, k = 1, 3
    for i, j, rows, cols in ((10, 20, [9, 10, 11], [19, 20, 21]), (0, 31, [0, 0, 1], [30, 31, 31])):  # inside; a corner
        mean = y[n, k][np.ix_(rows, cols)].mean(axis=(0, 1))  # the corner's missing neighbours replicate its edge
        assert box[n, k, i, j] == pytest.approx(float(np.mean((mean - clips[n, k, i, j]) ** 2)), rel=1e-4)


def test_toy_x0_error_swap_factor_changes_exactly_one_factor():
    """swap_factor changes the named factor to another value and leaves the rest of the caption as it
    was (parsed back); a background is never swapped onto its event's background."""
    import numpy as np

    import toy_x0_error
    from syncos_jax.backbones.toy import world

    rng = np.random.default_rng(5)
    texts = [world.random_caption(rng, event_probability=0.5) for _ in range(40)]
    for text in texts:
        before = world.parse_caption(text)
        for factor in toy_x0_error.FACTOR_VALUES:
            after = world.parse_caption(toy_x0_error.swap_factor(text, factor))
            assert getattr(after, factor) != getattr(before, factor)
            assert after._replace(**{factor: getattr(before, factor)}) == before
            assert after.then is None or after.then != after.background
        assert toy_x0_error.swap_factor(text, "caption") == ""
    with pytest.raises(ValueError, match="pattern"):
        toy_x0_error.swap_factor(texts[0], "pattern")


def test_toy_x0_error_main_writes_every_swap_and_refuses_t_999(tmp_path, tiny_weights, capsys):
    """The command's json holds, per model and time, the error under the right caption, the input's
    (σ_t/α_t)² and one error per swapped factor, equal to x0_errors under the swapped captions; a
    time with α_t = 0 is refused by name."""
    import toy_x0_error
    from syncos_jax.backbones import toy
    from syncos_jax.backbones.toy import world
    from syncos_jax.schedules import cogvideox_2b

    out = tmp_path / "x0.json"
    assert toy_x0_error.main(["--weights", tiny_weights, "--num", "2", "--times", "3", "998", "--swap", "shape", "caption",
                              "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    (name, rows), = record["models"].items()
    assert set(rows) == {"3", "998"}
    texts, clips, _ = world.sample_batch(record["seed"], 2, 8, 0.2, 0.3)
    backbone = toy.load_default(tiny_weights)
    for f in ("shape", "caption"):
        want = toy_x0_error.x0_errors(backbone, clips, [toy_x0_error.swap_factor(t, f) for t in texts], [3, 998])
        for t in (3, 998):
            assert rows[str(t)][f"mse_swapped_{f}"] == pytest.approx(want[t][0], rel=1e-6)
    sch = cogvideox_2b()
    assert rows["998"]["mse_input"] == pytest.approx(float(sch.train_sigmas[998] / sch.train_alphas[998]) ** 2)
    assert "shape" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        toy_x0_error.main(["--weights", tiny_weights, "--times", "999"])
    assert "[0, 998]" in capsys.readouterr().err


def test_discrete_identity_readout_and_agreement_closed_forms():
    """The readout picks the nearest (prompt mean + atom), whichever prompt; the agreement of a video
    that switches once at frame s is the closed form (F − d − #pairs straddling s) / (F − d)."""
    import numpy as np

    import discrete_identity as di

    rng = np.random.default_rng(0)
    means, atoms = rng.normal(size=(3, 2, 2, 1)), 4.0 * rng.normal(size=(5, 2, 2, 1))
    p, k = rng.integers(3, size=(6, 10)), rng.integers(5, size=(6, 10))
    x = means[p] + atoms[k] + 0.01 * rng.normal(size=(6, 10, 2, 2, 1))
    ids, residual = di.read_identity(x, means, atoms)
    np.testing.assert_array_equal(ids, k)
    np.testing.assert_allclose(residual, np.sqrt(((x - means[p] - atoms[k]) ** 2).mean((2, 3, 4))), rtol=1e-6)
    F, s = 12, 5
    ids = np.array([[0] * s + [1] * (F - s)])
    per = di.agreement_by_distance(ids)[0]
    for d in range(1, F):
        straddling = sum(1 for i in range(F - d) if i < s <= i + d)
        assert per[d - 1] == pytest.approx((F - d - straddling) / (F - d))
    summ = di.summarise(np.concatenate([ids, np.zeros((1, F), int)]), np.ones((2, F)))
    assert summ["residual_rms"] == {"mean": 1.0, "se": 0.0}
    assert summ["kept"]["mean"] == 0.5 and summ["switches"]["mean"] == 0.5
    assert di.bin_edges(12) == [1, 8, 12] and {k for k, v in summ.items() if k.startswith("agreement_") and isinstance(v, dict)} == {"agreement_1", "agreement_8"}
    # near an event: steps i -> i+1 with |i + 1/2 - (b - 1/2)| < radius; F = 12, events start at 4 and 8, radius 2
    near = di.near_events(12, [4, 8], 2.0)
    np.testing.assert_array_equal(np.flatnonzero(near), [2, 3, 4, 6, 7, 8])
    assert not di.near_events(5, [], 2.0).any()
    # one video switching at the steps 3 -> 4 (an event) and 9 -> 10 (not near one)
    ids = np.array([[0] * 4 + [1] * 6 + [2] * 2])
    summ = di.summarise(ids, None, near)
    assert summ["switches"]["mean"] == 2 and summ["switches_near_events"]["mean"] == 1
    assert summ["near_event_share"] == pytest.approx(6 / 11)


@pytest.mark.slow  # compiling five samplers' long-video programs takes minutes on 2 cores
def test_discrete_identity_smoke(tmp_path):
    """End to end on 4 videos: the exact prior's videos and whole-video DDIM keep one identity when
    the atoms are large; JSON, Markdown and the plot are written."""
    import discrete_identity as di

    payload = di.main(["--quick", "--keys", "4", "--samplers", "ddim", "gen_l_video", "--atom-scales", "4",
                       "--out", str(tmp_path)])
    row = payload["results"]["4"]
    assert row["prior"]["kept"]["mean"] == 1.0 and row["ddim"]["kept"]["mean"] == 1.0
    assert 0 <= row["gen_l_video"]["agreement_1"]["mean"] <= 1 and row["decided"]["t"] is not None
    assert row["decided"]["t"] > 500  # atoms this large are decided early in sampling
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"discrete_identity_quick.{ext}").stat().st_size > 0
    with pytest.raises(SystemExit):
        di.main(["--keys", "1"])
    with pytest.raises(SystemExit):
        di.main(["--stride", "9"])


@pytest.mark.slow  # compiles the toy sampler with its x̂₀ diagnostics (minutes on 2 cores)
def test_settling_smoke_names_its_weights(tmp_path, tiny_weights):
    """settling.py runs end to end on a tiny model; every attribute's curve is a fraction per step, the
    final step agrees with the final clip exactly (x̂₀ of the last step is the clip), and the Markdown's
    command names the weights it used (by file name, no machine path)."""
    import settling

    assert settling.main(["--weights", tiny_weights, "--num", "2", "--steps", "3", "--batch", "2", "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "settling.json").read_text())
    assert rec["weights"] == "tiny.safetensors" and set(rec["agreement"]) == set(settling.ATTRIBUTES)
    for a, curve in rec["agreement"].items():
        assert len(curve) == 3 and all(0.0 <= v <= 1.0 for v in curve)
    assert rec["agreement"]["background"][-1] == 1.0
    md = (tmp_path / "settling.md").read_text()
    assert "--weights tiny.safetensors" in md and str(tmp_path) not in md


def test_identity_pooling_reads_an_oracle_as_exact_and_a_flickering_model_as_flicker(tiny_weights):
    """identity_pooling.pooling_table, with stand-in models whose x̂_0 is known for the whole clip and
    for each frame alone: x̂_0 = the clean frame (found by nearest neighbour among the clean frames,
    exact at t ≤ 300 here) reads the true shade and pattern in every frame (acc = agree = 1) for both;
    x̂_0 = the frame re-rendered with shade k mod 3 at frame k reads acc = the fraction of frames with
    k mod 3 = the true shade and agree = 7/28 (the pairs i < j of 0..7 with i ≡ j mod 3)."""
    import jax.numpy as jnp
    import numpy as np

    import identity_pooling
    from syncos_jax.backbones import toy
    from syncos_jax.backbones.toy import world
    from syncos_jax.schedules import cogvideox_2b

    assert identity_pooling.pair_agreement(np.array([0, 0, 1, -1])) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="at least 2"):
        identity_pooling.pair_agreement(np.array([1]))
    rng = np.random.default_rng(3)
    pairs = [world.random_track(rng, 8, 0.0) for _ in range(12)]
    pairs = [p for p in pairs if "still" not in p[0]][:3]  # moving objects: every frame differs (a lookup key)
    texts, tracks = [p[0] for p in pairs], [p[1] for p in pairs]
    clips = np.stack([world.render(tr) for tr in tracks]).astype(np.float32)
    assert len(tracks) == 3 and len({f.tobytes() for f in clips.reshape(-1, 32, 32, 3)}) == 24
    flicker = np.stack([world.render(tr._replace(shade=np.arange(8) % 3)) for tr in tracks]).astype(np.float32)
    sch = cogvideox_2b()
    backbone = toy.load_default(tiny_weights)

    class Lookup:  # x̂_0 = table[the clean frame nearest to x_t / α_t], for clips or single frames
        def __init__(self, table):
            self.table = jnp.asarray(table.reshape(-1, 32, 32, 3))

        def __call__(self, x, t, tok):
            a, s = sch.train_alphas[t][:, None, None, None, None], sch.train_sigmas[t][:, None, None, None, None]
            flat = (x / a).reshape(-1, 1, 32 * 32 * 3)
            d = ((flat - jnp.asarray(clips).reshape(1, -1, 32 * 32 * 3)) ** 2).sum(-1)
            x0 = self.table[jnp.argmin(d, axis=1)].reshape(x.shape)
            return (a * x - x0) / s

    backbone.model = Lookup(clips)
    table = identity_pooling.pooling_table(backbone, texts, tracks, clips, [5, 300])
    for t in (5, 300):
        for kind in ("clip", "frame"):
            row = table[t][kind]
            assert row["found"] == 1.0
            assert row["shade_acc"] == row["pattern_acc"] == row["shade_agree"] == row["pattern_agree"] == 1.0
    backbone.model = Lookup(flicker)
    row = identity_pooling.pooling_table(backbone, texts, tracks, clips, [5])[5]["frame"]
    assert row["shade_acc"] == pytest.approx(np.mean([np.mean(np.arange(8) % 3 == tr.shade[0]) for tr in tracks]))
    assert row["shade_agree"] == pytest.approx(7 / 28) and row["pattern_agree"] == 1.0
    want = np.zeros((3, 4), int)  # frame k of every clip is read as shade k mod 3
    for tr in tracks:
        np.add.at(want, (tr.shade, np.arange(8) % 3), 1)
    assert row["shade_confusion"] == want.tolist()
    assert table[5]["bayes_clip"] == {"shade_acc": 1.0, "pattern_acc": 1.0}  # σ_5 is tiny: the posterior is exact


def test_identity_pooling_bayes_reader_is_the_exact_posterior():
    """identity_log_likelihood is −‖x − α r‖² / (2σ²) per frame and identity (checked by hand on one
    entry); on x = α·r exactly the reader returns the truth; on the midpoint of two identities'
    renders the two are equally likely; summing frames (the clip) reads right where each frame is
    ambiguous about a different pair."""
    import numpy as np

    import identity_pooling
    from syncos_jax.backbones.toy import world

    _, tr = world.random_track(np.random.default_rng(11), 8, 0.0)
    R = identity_pooling.identity_renders(tr)  # [3, 4, 8, 32, 32, 3]
    assert R.shape == (3, 4, 8, 32, 32, 3)
    assert np.array_equal(R[tr.shade[0], tr.pattern[0]], world.render(tr).astype(np.float32))
    alpha, sigma = 0.5, 0.8
    x = alpha * R[2, 1]
    ll = identity_pooling.identity_log_likelihood(x, R, alpha, sigma)
    assert ll.shape == (8, 3, 4)
    assert ll[3, 0, 2] == pytest.approx(-((x[3] - alpha * R[0, 2, 3].astype(np.float64)) ** 2).sum() / (2 * sigma**2))
    cs, cp, fs, fp = identity_pooling.bayes_readings(ll)
    assert (cs, cp) == (2, 1) and set(fs) == {2} and set(fp) == {1}
    mid = alpha * 0.5 * (R[0, 3] + R[1, 3])  # halfway between dark and mid, spotted
    ll = identity_pooling.identity_log_likelihood(mid, R, alpha, sigma)
    np.testing.assert_allclose(ll[:, 0, 3], ll[:, 1, 3], rtol=1e-6)  # the midpoint is formed in float32
    # frames 0-3 cannot tell dark from mid (halfway), frames 4-7 cannot tell mid from bright: together, mid
    both = np.concatenate([mid[:4], alpha * 0.5 * (R[1, 3, 4:] + R[2, 3, 4:])])
    cs, cp, _, _ = identity_pooling.bayes_readings(identity_pooling.identity_log_likelihood(both, R, alpha, sigma))
    assert (cs, cp) == (1, 3)


def test_identity_pooling_main_writes_its_table_and_picture(tmp_path, tiny_weights, capsys):
    """The command on a tiny model: a JSON row per time with the model's clip and frame readings and
    the ideal reader's, a PNG, the table on stdout; a time with α_t = 0 is refused."""
    import identity_pooling

    out, png = tmp_path / "pool.json", tmp_path / "pool.png"
    assert identity_pooling.main(["--weights", tiny_weights, "--num", "2", "--times", "5", "700", "--json", str(out),
                                  "--png", str(png)]) == 0
    record = json.loads(out.read_text())
    (name, rows), = record["models"].items()
    assert set(rows) == {"5", "700"} and record["num"] == 2
    for row in rows.values():
        assert set(row) == {"clip", "frame", "bayes_clip", "bayes_frame"}
        assert all(0.0 <= row[k]["shade_acc"] <= 1.0 for k in row)
    assert rows["5"]["bayes_clip"] == {"shade_acc": 1.0, "pattern_acc": 1.0}
    assert png.stat().st_size > 1000 and "bayes clip" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        identity_pooling.main(["--weights", tiny_weights, "--times", "999"])


def test_identity_drift_sample_only_samples_those_samplers_and_tables_the_cache(tmp_path, tiny_weights, capsys):
    import common
    import identity_drift

    argv = ["--quick", "--names", "motion-2ev-32f", "--seeds", "0", "--steps", "2", "--weights", tiny_weights,
            "--results", str(tmp_path), "--sample-only", "syncos"]
    payload = identity_drift.main(argv)
    assert sorted(os.listdir(tmp_path / "runs")) == ["syncos.jsonl"]  # nothing else was sampled
    assert payload["setup"]["cached_only"] and payload["setup"]["seeds"] == [0]
    assert payload["summary"]["syncos"]["videos"]["n"] == 1 and payload["summary"]["gen_l_video"]["videos"]["n"] == 0
    saved = json.load(open(tmp_path / "identity_drift.json"))  # strict JSON with a sampler that has no videos
    assert saved["summary"]["fifo"]["videos"]["n"] == 0
    rec = json.loads(open(tmp_path / "runs" / "syncos.jsonl").readline())
    assert set(rec["readings"]) == {*common.READING_FIELDS, "centre"} and all(len(v) == 32 for v in rec["readings"].values())
    split = saved["prompt_split"]["summary"]
    assert split["syncos"]["videos"]["n"] == 1 and split["gen_l_video"]["videos"]["n"] == 0
    assert (tmp_path / "identity_drift_by_prompt.png").stat().st_size > 1000
    # A record cached without readings (made before they were kept) is sampled again only on request.
    bare = {k: v for k, v in rec.items() if k != "readings"}
    (tmp_path / "runs" / "syncos.jsonl").write_text(json.dumps(bare) + "\n")
    assert identity_drift.main(argv)["prompt_split"] is None  # no video with readings: no split
    assert not (tmp_path / "identity_drift_by_prompt.png").exists()  # no stale picture beside "no split"
    refreshed = identity_drift.main(argv + ["--refresh-readings"])
    lines = [json.loads(x) for x in open(tmp_path / "runs" / "syncos.jsonl")]
    assert len(lines) == 2 and "readings" not in lines[0] and lines[1]["readings"] == rec["readings"]
    assert refreshed["prompt_split"]["summary"]["syncos"]["videos"]["n"] == 1
    identity_drift.main(argv + ["--refresh-readings"])  # nothing left to refresh: nothing appended
    assert sum(1 for _ in open(tmp_path / "runs" / "syncos.jsonl")) == 2
    capsys.readouterr()
    with pytest.raises(SystemExit):
        identity_drift.main(argv[:-2] + ["--refresh-readings"])  # which samplers to sample again?
    assert "--refresh-readings needs --sample-only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        identity_drift.main(argv[:-1] + ["dpm"])  # not a sampler of this table
    with pytest.raises(SystemExit):
        identity_drift.main(argv + ["--cached-only"])  # sampling and not sampling


def test_identity_drift_splits_the_agreement_by_prompt():
    """prompt_groups numbers a scenario's distinct prompts per frame (a repeated prompt keeps its
    number); with_prompt_split on an identity that follows the prompt (A, B, C, A) finds same-prompt
    pairs agreeing at every distance and different-prompt pairs never, and leaves a record without
    readings as it was."""
    import identity_drift

    groups = identity_drift.prompt_groups("colour-4ev-64f", 64)  # orange, purple, yellow, orange
    assert groups.tolist() == [0] * 16 + [1] * 16 + [2] * 16 + [0] * 16
    shade = (groups % 3).tolist()
    readings = {"found": [1] * 64, "background": [0] * 64, "colour": [0] * 64, "shape": [0] * 64,
                "size": [0] * 64, "shade": shade, "pattern": [0] * 64, "centre": [[16.0, 16.0]] * 64}
    rec = {"scenario": "colour-4ev-64f", "seed": 0, "metrics": {"identity_unprompted": 0.5}, "readings": readings}
    m = identity_drift.with_prompt_split(rec)["metrics"]
    assert m["identity_unprompted"] == 0.5
    assert [m[f"identity_same_prompt_agreement_{lo}"] for lo in (1, 8, 16, 32, 64)] == [1.0, 1.0, None, 1.0, None]  # no same-prompt pair is 16-31 apart
    assert [m[f"identity_different_prompt_agreement_{lo}"] for lo in (1, 8, 16, 32)] == [0.0, 0.0, 0.0, 0.0]
    assert m["identity_different_prompt_far_drift"] is None  # a 64-frame video has no pair 64 apart
    bare = {k: v for k, v in rec.items() if k != "readings"}
    assert identity_drift.with_prompt_split(bare) is bare
    assert identity_drift.with_prompt_split({**rec, "readings": None})["metrics"] is rec["metrics"]


def test_same_frame_agreement_counts_frames_across_videos_by_seed():
    """Two videos of seed 0 equal at 3 of 4 frames (one frame without an object left out), a video of
    seed 1 equal to the first at no frame, a video of another length and one without readings left
    out: closed forms."""
    import identity_drift

    def rec(seed, shade, found=None):
        n = len(shade)
        return {"scenario": "x", "seed": seed, "readings": {
            "found": list(found or [1] * n), "background": [0] * n, "colour": [0] * n, "shape": [0] * n, "size": [0] * n,
            "shade": list(shade), "pattern": [0] * n, "centre": [[1.0, 1.0]] * n}}

    records = [rec(0, (0, 1, 2, 0)), rec(0, (0, 1, 1, 0), found=(1, 1, 1, 0)), rec(1, (2, 2, 0, 1)),
               rec(1, (0, 1, 2)), {"scenario": "x", "seed": 1}]
    out = identity_drift.same_frame_agreement(records)
    assert out["same_seed"]["n"] == 1 and out["same_seed"]["mean"] == pytest.approx(2 / 3, abs=1e-12)
    # seed 1 against the first: frames (0,2),(1,2),(2,0),(0,1) → 0 of 4; against the second: 0 of 3
    assert out["different_seeds"]["n"] == 2 and out["different_seeds"]["mean"] == 0.0


def test_frame_readings_round_trip_through_the_cache_record():
    """common.frame_readings → JSON → common.readings_from_record gives back probe_frames' readings
    (but the pixel count, which is not kept) on a render with and without an object."""
    import common
    from syncos_jax import metrics
    from syncos_jax.backbones.toy import world

    rng = np.random.default_rng(0)
    _, track = world.random_track(rng, frames=6)
    clip = world.render(track)
    frames = np.concatenate([clip, -np.ones_like(clip[:2])])  # two black frames: no object
    rec = json.loads(json.dumps({"scenario": "x", "seed": 0, "readings": common.frame_readings(frames)}))
    back, want = common.readings_from_record(rec), metrics.probe_frames(frames)
    for field in common.READING_FIELDS:
        np.testing.assert_array_equal(getattr(back, field), getattr(want, field), err_msg=field)
    np.testing.assert_allclose(back.centre, want.centre, atol=0.05)
    assert not back.found[-1] and np.isnan(back.centre[-1]).all()
    with pytest.raises(ValueError, match="no per-frame readings"):
        common.readings_from_record({"scenario": "x", "seed": 0})


def test_identity_drift_far_drift_is_the_in_video_difference_of_the_two_far_bins():
    import identity_drift

    rec = {"scenario": "x", "seed": 0, "nfe": 1, "wall_seconds": 1.0,
           "metrics": {"identity_agreement_32": 0.25, "identity_agreement_64": 0.125}}
    assert identity_drift.with_far_drift(rec)["metrics"]["identity_far_drift"] == 0.125
    short = {**rec, "metrics": {"identity_agreement_32": 0.25, "identity_agreement_64": None}}
    assert identity_drift.with_far_drift(short)["metrics"]["identity_far_drift"] is None
    records = {"gen_l_video": [rec, {**short, "scenario": "y"}],
               "syncos": [{**rec, "metrics": {"identity_agreement_32": 0.5, "identity_agreement_64": 0.5}}]}
    fields, md = identity_drift.far_drift_section(records, {"gen_l_video": "GLV", "syncos": "SynCoS"})
    assert fields["far_drift"]["summary"]["gen_l_video"]["videos"]["n"] == 1  # the 64-frame video is left out
    assert fields["far_drift"]["paired_vs_reference"]["syncos"]["identity_far_drift"]["mean"] == -0.125
    assert "Slow drift" in md


def test_identity_drift_pairs_seed_by_seed():
    import identity_drift

    def rec(scenario, seed, value):
        return {"scenario": scenario, "seed": seed, "metrics": {"identity_unprompted": value}}

    records = {"gen_l_video": [rec("a", 0, 0.5), rec("b", 0, 0.6), rec("a", 1, 0.4), rec("b", 1, 0.9)],
               "syncos": [rec("a", 0, 0.7), rec("b", 0, 0.6), rec("a", 1, 0.1), rec("c", 1, 0.3)]}
    out = identity_drift.paired_by_seed(records, "gen_l_video", ("identity_unprompted",))
    assert set(out) == {"syncos"} and set(out["syncos"]) == {"0", "1"}
    s0, s1 = out["syncos"]["0"]["identity_unprompted"], out["syncos"]["1"]["identity_unprompted"]
    assert s0["n"] == 2 and abs(s0["mean"] - 0.1) < 1e-12 and abs(s0["se"] - 0.1) < 1e-12  # diffs +0.2, 0.0
    assert s1["n"] == 1 and abs(s1["mean"] + 0.3) < 1e-12  # scenario c has no reference: left out
