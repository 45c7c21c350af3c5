"""Shared test setup: repo paths, and an isolated data directory for every test session."""

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
