"""A local vLLM for ``tactful bench load`` and the engine tests (tests/engine/): started on a
model folder on a free loopback port, niced, offline, in its own process group; waited for until
it answers; stopped with its whole group (vLLM's engine-core and worker processes outlive a
killed API server)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

#: The name the model is served under (what requests to the engine name).
SERVED_NAME = "SmolLM2-135M-Instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kill_group(pid: int) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL what is left after 10 s."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def start_vllm(
    vllm_python: Path, model_dir: Path, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """vLLM serving ``model_dir`` on a free loopback port, niced, in its own process group."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        VLLM_CPU_KVCACHE_SPACE=env.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        VLLM_LOGGING_LEVEL="WARNING",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
    )
    cmd = [
        "nice",
        "-n",
        "10",
        str(vllm_python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        SERVED_NAME,
        "--dtype",
        "bfloat16",
        "--max-model-len",
        "2048",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    return proc, f"http://127.0.0.1:{port}/v1"


def wait_engine(url: str, proc: subprocess.Popen[bytes] | None, timeout_s: float) -> str | None:
    """None once ``url`` answers ``/models``, else why not."""
    import httpx

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return f"vLLM exited with code {proc.returncode} while starting"
        try:
            if httpx.get(url.rstrip("/") + "/models", timeout=2).status_code == 200:
                return None
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return f"the engine did not answer {url}/models within {timeout_s:g} s"
