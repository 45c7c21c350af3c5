"""The README's main job: ``tactful demo`` drives a real LSP session over the sample file."""

from __future__ import annotations

import subprocess

import pytest
from tests.lsp.helpers import TACTFUL

pytestmark = pytest.mark.model


def test_demo_completes_the_sample_file() -> None:
    proc = subprocess.run(
        [TACTFUL, "demo", "--timeout", "240"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ready after" in proc.stdout
    assert proc.stdout.count("you typed:") == 4
    assert "tactful suggests:" in proc.stdout, proc.stdout
