"""Where tactful keeps its files: the cache (converted model, completion cache) and the data
directory (feedback log, user-trained models). Overridable by settings and environment."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir(setting: str | None = None) -> Path:
    """Cache directory: setting, else ``$TACTFUL_CACHE_DIR``, else the user cache dir."""
    raw = setting or os.environ.get("TACTFUL_CACHE_DIR")
    return Path(raw).expanduser() if raw else Path(platformdirs.user_cache_dir("tactful"))


def data_dir(setting: str | None = None) -> Path:
    """Data directory: setting, else ``$TACTFUL_DATA_DIR``, else the user data dir."""
    raw = setting or os.environ.get("TACTFUL_DATA_DIR")
    return Path(raw).expanduser() if raw else Path(platformdirs.user_data_dir("tactful"))


def repo_models_dir() -> Path:
    """The ``models/`` folder that ships with tactful (small files: classifiers, cards)."""
    here = Path(__file__).resolve().parent
    packaged = here / "data" / "models"
    if packaged.is_dir():
        return packaged
    return here.parent.parent / "models"


def inside(base: Path, path: str | Path) -> Path:
    """``path`` (relative ones taken from ``base``) when it lies inside ``base`` once links are
    resolved; else PermissionError. For paths a client names: the server writes only there."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = base / p
    root = base.resolve()
    full = p.resolve()
    if full != root and root not in full.parents:
        raise PermissionError(
            f"{path} is outside the data folder {root}; tactful writes only there"
        )
    return full
