"""Start the test engine ahead of pytest and describe it in a state file (JSON: url, pgid,
log_path, started_wall, or reason), for ``scripts/test.sh``: vLLM compiles its kernels while the
editors are installed and the linters run, and ``tests/engine/conftest.py`` adopts it through
``TACTFUL_TEST_ENGINE_STATE``. ``--stop STATE`` stops the process group a state file names (the
script's exit trap, in case pytest did not)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import conftest  # this folder's conftest: one launch command for both
from tactful.tools.vllm import kill_group


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--stop":
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            kill_group(int(json.loads(Path(argv[1]).read_text())["pgid"]))
        return 0
    if len(argv) != 1:
        print("usage: launch.py STATE_FILE | --stop STATE_FILE", file=sys.stderr)
        return 2
    wall = time.time()
    engine = conftest.launch()
    state = {
        "url": engine.url,
        "pgid": engine.pgid,
        "log_path": engine.log_path,
        "started_wall": wall,
        "reason": engine.reason,
    }
    Path(argv[0]).write_text(json.dumps(state))
    print(f"test engine: {engine.reason or 'starting at ' + engine.url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
