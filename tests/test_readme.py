"""The README's Python quick-start runs as written."""

import pathlib
import re


def test_readme_quickstart_runs():
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "README.md has no python quick-start"
    scope = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    assert scope["x_next"].shape == (32, 8, 8, 4)
    assert scope["G"].shape == (4, 8, 8, 8, 4)


def test_readme_sampling_example_runs(tmp_path, monkeypatch):
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2, "README.md has no sampling example"
    code = blocks[1].replace("/tmp/syncos_ckpt", str(tmp_path / "ckpt"))
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["batch"].latents.shape == (4, 24, 4, 4, 2)


def test_readme_paths_exist():
    root = pathlib.Path(__file__).parents[1]
    readme = (root / "README.md").read_text()
    paths = set(re.findall(r"(examples/scenarios/[\w.-]+\.yaml|docs/[\w.-]+\.png|experiments/[\w.-]+\.py|benchmarks/[\w.-]+\.py)", readme))
    assert "examples/scenarios/four_turns.yaml" in paths
    missing = sorted(p for p in paths if not (root / p).exists())
    assert not missing, f"README.md names files that do not exist: {missing}"
