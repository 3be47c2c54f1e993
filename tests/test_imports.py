"""Every module of ``syncos_jax`` and ``converters`` imports on its own, and the library never imports torch.

One fresh subprocess imports the modules one after another; before each import it forgets every
``syncos_jax*`` / ``converters*`` module, so each is imported *alone first* and an import cycle (an
ImportError or AttributeError from a half-initialised module) shows up under the module's name.
Third-party modules (jax, flax, …) stay loaded between imports, which keeps the test cheap.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("syncos_jax", "converters")

_SCRIPT = r"""
import importlib, json, sys, traceback

failed, with_torch = {}, []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("syncos_jax", "converters")]:
        del sys.modules[loaded]
    torch_before = "torch" in sys.modules
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc(limit=-3)
        continue
    if name.split(".")[0] == "syncos_jax" and not torch_before and "torch" in sys.modules:
        with_torch.append(name)
print(json.dumps({"failed": failed, "with_torch": with_torch}))
"""


def module_names(root: str = ROOT, packages=PACKAGES) -> list[str]:
    """Dotted names of every ``.py`` module under the package folders (packages by their ``__init__``)."""
    names = []
    for package in packages:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if os.path.exists(os.path.join(folder, d, "__init__.py")))
            parts = os.path.relpath(folder, root).split(os.sep)
            for f in sorted(files):
                if f.endswith(".py"):
                    names.append(".".join(parts if f == "__init__.py" else [*parts, f[:-3]]))
    return names


def test_every_module_imports_alone_and_the_library_never_imports_torch():
    names = module_names()
    assert "syncos_jax.backbones.cogvideox" in names and "converters.cogvideox" in names
    # the library's modules first: once a module imports torch it stays loaded, so the first one is the culprit
    names.sort(key=lambda n: n.split(".")[0] != "syncos_jax")
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    run = subprocess.run([sys.executable, "-c", _SCRIPT, *names], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert not result["failed"], "modules that fail to import alone:\n" + "\n".join(
        f"--- {name}\n{tb}" for name, tb in result["failed"].items())
    assert not result["with_torch"], f"library modules that import torch: {result['with_torch']}"
