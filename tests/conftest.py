"""Shared test setup: repo paths, and an isolated data directory and caches for every test
session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TACTFUL = str(Path(sys.executable).parent / "tactful")


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Never write to the developer's real feedback log."""
    if "TACTFUL_DATA_DIR" not in os.environ:
        os.environ["TACTFUL_DATA_DIR"] = str(tmp_path_factory.mktemp("tactful-data"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Completion and flag caches of this test session only: a result cached by an earlier run
    would stand in for model work that a test expects. The converted model is shared through a
    link to the user cache's ``models`` folder (converting it again costs minutes)."""
    if "TACTFUL_CACHE_DIR" in os.environ:
        return
    import platformdirs

    models = Path(platformdirs.user_cache_dir("tactful")) / "models"
    models.mkdir(parents=True, exist_ok=True)
    cache = tmp_path_factory.mktemp("tactful-cache")
    (cache / "models").symlink_to(models, target_is_directory=True)
    os.environ["TACTFUL_CACHE_DIR"] = str(cache)
