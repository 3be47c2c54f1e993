"""Where the repository is, and how experiment records name a file without machine paths."""

from __future__ import annotations

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def repo_relative(path: str) -> str:
    """``path`` relative to the repository when it lies inside it, else its base name (records
    committed under ``experiments/results/`` hold no machine paths)."""
    rel = os.path.relpath(os.path.abspath(path), REPO)
    return os.path.basename(rel) if rel.startswith("..") else rel
