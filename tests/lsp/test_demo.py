"""The README's main job: ``tactful demo`` drives a real LSP session over the sample file."""

from __future__ import annotations

import re
import subprocess

import pytest
from tests.lsp.helpers import TACTFUL

from tactful.tools.demo import SAMPLE

pytestmark = pytest.mark.model


def test_demo_completes_the_sample_file() -> None:
    proc = subprocess.run(
        [TACTFUL, "demo", "--timeout", "240"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "ready after" in out
    assert out.count("you typed:") == 4
    # Each typed line is answered with a suggestion (non-empty text after the label) or with
    # the cascade's explicit "no suggestion"; the small model suggests at most of them.
    suggested = re.findall(r"tactful suggests: (.*?)\s+\[(\d+) ms\]", out, flags=re.S)
    declined = out.count("(no suggestion: tactful chose not to show one)")
    assert len(suggested) + declined == 4, out
    assert len(suggested) >= 2 and all(text.strip() for text, _ms in suggested), out
    # Every flagged line exists in the sample.
    n_lines = SAMPLE.read_text(encoding="utf-8").count("\n") + 1
    flagged = [int(n) for n in re.findall(r"^  line (\d+): ", out, flags=re.M)]
    assert all(1 <= n <= n_lines for n in flagged), out
