"""Shared test setup: repo paths, and an isolated data directory and caches for every test
session.

The variables are set in ``pytest_configure``, before the test modules are imported: servers
that tests start take their environment from ``os.environ`` when the module is collected
(``helpers.server_config``)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TACTFUL = str(Path(sys.executable).parent / "tactful")

_made: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """Never write to the developer's real feedback log; completion and flag caches of this
    session only (a result cached by an earlier run would stand in for model work that a test
    expects). The converted model is shared through a link to the user cache's ``models`` folder
    (converting it again costs minutes)."""
    if "TACTFUL_DATA_DIR" not in os.environ:
        data = tempfile.mkdtemp(prefix="tactful-test-data-")
        _made.append(data)
        os.environ["TACTFUL_DATA_DIR"] = data
    if "TACTFUL_CACHE_DIR" not in os.environ:
        import platformdirs

        models = Path(platformdirs.user_cache_dir("tactful")) / "models"
        models.mkdir(parents=True, exist_ok=True)
        cache = tempfile.mkdtemp(prefix="tactful-test-cache-")
        _made.append(cache)
        (Path(cache) / "models").symlink_to(models, target_is_directory=True)
        os.environ["TACTFUL_CACHE_DIR"] = cache


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in _made:  # rmtree removes the models link, never what it points to
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _model_only_where_marked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiers mean what they say: a test that loads the model in this process must be marked
    ``model`` (``scripts/test.sh --fast`` runs the others, and must never wait for a model)."""
    if request.node.get_closest_marker("model") is not None:
        return
    from tactful.backend.hf import TransformersBackend

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{request.node.nodeid} loads the model: mark it @pytest.mark.model")

    monkeypatch.setattr(TransformersBackend, "load", refuse)
