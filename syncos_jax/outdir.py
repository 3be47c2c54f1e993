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
    """``(parent, prefix)`` of the hidden siblings of ``out``: ``parent/.NAME.kind-...``."""
    out = os.path.abspath(out)
    return os.path.dirname(out), f".{os.path.basename(out)}.{kind}-"


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
    if os.path.islink(out):
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

    Returns the paths it deleted or moved back.
    """
    parent, tmp_prefix = _hidden(out, "tmp")
    _, old_prefix = _hidden(out, "old")
    if not os.path.isdir(parent):
        return []
    touched = []
    for name in sorted(os.listdir(parent)):
        path = os.path.join(parent, name)
        if name.startswith(tmp_prefix):
            pid = name[len(tmp_prefix):].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
                continue  # another run is writing it now
            shutil.rmtree(path, ignore_errors=True)
            touched.append(path)
        elif name.startswith(old_prefix):
            if not os.path.lexists(out):
                os.replace(path, out)  # killed between the two moves: the old output comes back
            else:
                shutil.rmtree(path, ignore_errors=True)
            touched.append(path)
    return touched


def replace_atomically(staged: str, out: str) -> None:
    """Moves the folder ``staged`` to ``out``, replacing an earlier output there without ever losing it.

    An empty ``out`` is removed first; a non-empty one (checked by :func:`check_destination`) is
    moved aside to ``.NAME.old-*``, the new folder moved in, then the old one deleted. If moving
    the new folder in fails, the old one is moved back and the error re-raised.
    """
    old: Optional[str] = None
    if os.path.isdir(out):
        if os.listdir(out):
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
