"""Output folders that are never lost: which folder may be replaced, and replacing it atomically.

``syncos generate`` writes its files into a staging folder beside ``--out`` and moves it into place
at the end. The rules, each a small function here:

* :func:`check_destination` — before any work. ``--out`` must not be a symbolic link, the working
  folder or one of its parents. An existing non-empty folder is replaced only with ``--overwrite``
  and only if it is an earlier ``syncos`` output: its ``run.json`` carries :data:`MARKER` and it
  holds nothing but the files ``syncos`` writes (:data:`OUTPUT_FILES`). The nearest existing
  ancestor must be a writable folder.
* :func:`replace_atomically` — move the old output aside (``.NAME.old-*``), move the new one in,
  then delete the old one. If the second move fails, the old output is moved back.
* :func:`clean_stale` — staging folders (``.NAME.tmp-PID-*``) of runs that no longer live are
  deleted on the next run into the same folder; an ``.NAME.old-*`` left by a kill between the two
  moves is moved back if ``--out`` is missing (else deleted).

Every problem is an :class:`OutputError` whose message is one line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Optional

__all__ = [
    "MARKER",
    "OUTPUT_FILES",
    "OutputError",
    "check_destination",
    "clean_stale",
    "is_syncos_output",
    "make_parents",
    "remove_created",
    "replace_atomically",
    "staging_folder",
]

MARKER = {"format": "syncos_jax.generate/1"}  # the field every run.json that syncos writes carries
OUTPUT_FILES = frozenset({"video.mp4", "video.gif", "contact_sheet.png", "run.json", "latents.npy"})


class OutputError(Exception):
    """A destination that cannot or may not be written (one line)."""


def _hidden(out: str, kind: str) -> tuple[str, str]:
    """``(parent, prefix)`` of the hidden siblings of ``out``: ``parent/.NAME.kind-PID-XXXXXXXX``."""
    out = os.path.abspath(out)
    return os.path.dirname(out), f".{os.path.basename(out)}.{kind}-"


def _sibling_pid(name: str, prefix: str) -> Optional[int]:
    """The PID in ``name`` if it is exactly ``prefix + PID-XXXXXXXX`` (as :func:`tempfile.mkdtemp` names it), else ``None``."""
    m = re.fullmatch(re.escape(prefix) + r"(\d+)-[a-z0-9_]{8}", name)
    return int(m.group(1)) if m else None


def is_syncos_output(path: str) -> bool:
    """Whether ``path`` is a folder written by ``syncos generate``: its ``run.json`` carries
    :data:`MARKER` and it holds only :data:`OUTPUT_FILES`."""
    try:
        entries = os.listdir(path)
        with open(os.path.join(path, "run.json"), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return False
    marked = isinstance(record, dict) and all(record.get(k) == v for k, v in MARKER.items())
    return marked and set(entries) <= OUTPUT_FILES


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_destination(out: str, overwrite: bool, *, flag: str = "--out") -> None:
    """Raises :class:`OutputError` unless ``out`` may receive a new output (see the module docstring)."""
    if os.path.islink(out.rstrip(os.sep) or out):
        raise OutputError(f"{flag} {out!r} is a symbolic link; give the folder itself")
    real = os.path.realpath(out)
    cwd = os.path.realpath(os.getcwd())
    if real == cwd or cwd.startswith(real.rstrip(os.sep) + os.sep):
        raise OutputError(f"{flag} {out!r} is the working folder or one of its parents; syncos never replaces it")
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"{flag} {out!r} exists and is not a folder")
    if os.path.isdir(out) and os.listdir(out):
        if not overwrite:
            raise OutputError(f"{flag} {out!r} exists and is not empty; pass --overwrite to replace an earlier syncos output")
        if not is_syncos_output(out):
            extra = sorted(set(os.listdir(out)) - OUTPUT_FILES)
            why = f"it holds files syncos did not write ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})" if extra \
                else "it has no run.json written by syncos"
            raise OutputError(f"{flag} {out!r} is not an earlier syncos output ({why}); --overwrite only replaces those")
    anchor = _nearest_existing(os.path.dirname(os.path.abspath(out)))
    if not os.path.isdir(anchor):
        raise OutputError(f"{flag} {out!r}: {anchor!r} is not a folder")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {out!r}: cannot write in {anchor!r}")


def make_parents(path: str) -> list[str]:
    """Creates the missing ancestors of ``path``; returns those created (outermost first)."""
    created = []
    parent = os.path.dirname(os.path.abspath(path))
    missing = []
    while not os.path.exists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for d in reversed(missing):
        os.mkdir(d)
        created.append(d)
    return created


def remove_created(created: list[str]) -> None:
    """Removes the folders :func:`make_parents` created, innermost first, where they are still empty."""
    for d in reversed(created):
        try:
            os.rmdir(d)
        except OSError:
            break


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staging_folder(out: str) -> str:
    """Creates and returns a fresh staging folder ``.NAME.tmp-PID-XXXX`` beside ``out``."""
    parent, prefix = _hidden(out, "tmp")
    path = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)  # mkdtemp makes it private; an output folder is an ordinary folder
    return path


def clean_stale(out: str) -> list[str]:
    """Deletes staging folders of dead runs beside ``out`` and settles an interrupted replacement.

    Only names exactly of the form ``.NAME.tmp-PID-XXXXXXXX`` / ``.NAME.old-PID-XXXXXXXX`` whose
    process no longer lives are touched. Returns the paths it deleted or moved back.
    """
    parent, tmp_prefix = _hidden(out, "tmp")
    _, old_prefix = _hidden(out, "old")
    if not os.path.isdir(parent):
        return []
    touched = []
    for name in sorted(os.listdir(parent)):
        path = os.path.join(parent, name)
        for prefix in (tmp_prefix, old_prefix):
            pid = _sibling_pid(name, prefix)
            if pid is None or os.path.islink(path) or not os.path.isdir(path):
                continue
            if pid != os.getpid() and _pid_alive(pid):
                continue  # another run is writing or replacing it now
            if prefix == old_prefix and not os.path.lexists(out):
                os.replace(path, out)  # killed between the two moves: the old output comes back
            else:
                shutil.rmtree(path, ignore_errors=True)
            touched.append(path)
    return touched


def replace_atomically(staged: str, out: str, overwrite: bool) -> None:
    """Moves the folder ``staged`` to ``out``, replacing an earlier output there without ever losing it.

    An empty ``out`` is removed first; a non-empty one is checked again (it may have appeared
    since :func:`check_destination`: another run, the user) and must be an earlier output with
    ``overwrite`` — else :class:`OutputError`, nothing touched. It is moved aside to
    ``.NAME.old-*``, the new folder moved in, then the old one deleted. If moving the new folder
    in fails, the old one is moved back and the error re-raised.
    """
    old: Optional[str] = None
    if os.path.lexists(out) and not os.path.isdir(out) or os.path.islink(out):
        raise OutputError(f"--out {out!r} is no longer a folder; nothing was replaced")
    if os.path.isdir(out):
        if os.listdir(out):
            if not (overwrite and is_syncos_output(out)):
                raise OutputError(f"--out {out!r} was filled while sampling ran and is not an earlier syncos output "
                                  f"to replace with --overwrite; nothing was replaced")
            parent, prefix = _hidden(out, "old")
            old = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)
            os.rmdir(old)
            os.replace(out, old)
        else:
            os.rmdir(out)
    try:
        os.replace(staged, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
