"""Line flags with the real embedded model: injected bugs are found above chance, the kept-cache
regeneration matches plain generation, cancellation and interruption work, and the CLI prints
what it promises."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tactful.backend.types import GenerateRequest
from tactful.config import FlagSettings
from tactful.flags import cli as flag
from tactful.flags.job import FlagCancelled, FlagInterrupted, FlagJob, flag_document
from tactful.flags.model import FlagModel

pytestmark = pytest.mark.model

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "flag"
BUGS: dict[str, int] = json.loads((FIXTURES / "bugs.json").read_text())


@pytest.fixture(scope="module")
def backend() -> Any:
    from tactful import paths
    from tactful.backend.hf import TransformersBackend
    from tactful.flags.datasets import set_threads

    backend = TransformersBackend.load(None, cache_dir=paths.cache_dir())
    set_threads(1)  # a shared CPU: see flag_train.set_threads
    return backend


def test_injected_bugs_are_flagged_clearly_above_chance(backend: Any) -> None:
    model = FlagModel.load()
    hits, expected_random = 0, 0.0
    for name, bug in sorted(BUGS.items()):
        text = (FIXTURES / name).read_text()
        res = flag_document(backend, text, "python", 0.15, model=model, key=name)
        assert res.skipped is None
        lines = [f.line for f in res.flags]
        assert len(lines) == len(set(lines)), "a line flagged twice"
        assert len(lines) <= int(0.15 * res.lines)
        hits += (bug - 1) in lines
        expected_random += min(int(0.15 * res.lines), res.considered) / res.considered
    # A random choice of the same number of lines would find about expected_random bugs.
    assert hits >= 3, (hits, expected_random)
    assert hits >= 2 * expected_random, (hits, expected_random)


def test_regeneration_from_the_kept_cache_matches_plain_generation(backend: Any) -> None:
    text = (FIXTURES / "primes.py.txt").read_text()
    lines = text.split("\n")
    backend.score_into_slot(text, "test-slot")
    for i in (6, 12, 20):
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        prefix = "\n".join(lines[:i]) + "\n" + indent
        kept = backend.generate(
            GenerateRequest(prefix=prefix, max_new_tokens=16, cache_key="test-slot", keep_slot=True)
        )
        plain = backend.generate(GenerateRequest(prefix=prefix, max_new_tokens=16))
        assert kept.text == plain.text
        assert kept.reused_tokens > 0 and plain.reused_tokens == 0
    backend.drop_cache("test-slot")


def test_cancel_and_interrupt(backend: Any) -> None:
    text = (FIXTURES / "stats.py.txt").read_text()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(FlagCancelled):
        flag_document(backend, text, "python", 0.15, cancel=cancel)

    job = FlagJob(text, "python", budget=0.15, key="interrupt")
    steps = job.steps()
    first = next(steps)
    job.interrupt = threading.Event()
    job.interrupt.set()
    with pytest.raises(FlagInterrupted):
        first(backend)
    job.interrupt = threading.Event()  # the same unit runs again, to the end this time
    first(backend)
    for unit in steps:
        unit(backend)
    assert job.result().regenerated == job.n_regen


def test_cli_json_and_text(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = tmp_path / "palindrome.py"
    src.write_text((FIXTURES / "palindrome.py.txt").read_text())
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\x01\x02binary")
    assert flag.main(["--json", str(src), str(blob)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["path"] for o in out] == [str(src), str(blob)]
    first = out[0]
    assert first["skipped"] is None and first["considered"] > 10
    scores = [f["score"] for f in first["flags"]]
    assert scores == sorted(scores, reverse=True)
    assert all(1 <= f["line"] <= first["lines"] for f in first["flags"])
    assert len(first["flags"]) <= int(0.15 * first["lines"])
    assert "binary" in out[1]["skipped"] and out[1]["flags"] == []

    # Again: every window comes from the flag cache, with the same flags; --no-cache recomputes.
    assert flag.main(["--json", str(src)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["windows_reused"] == again["windows"] >= 1
    assert again["flags"] == first["flags"]
    assert flag.main(["--json", "--no-cache", str(src)]) == 0
    fresh = json.loads(capsys.readouterr().out)
    assert fresh["windows_reused"] == 0 and fresh["flags"] == first["flags"]

    # The default threshold shows only flags whose calibrated probability clears it.
    floor = FlagSettings().min_probability
    assert floor > 0 and all(f["probability"] >= floor for f in first["flags"])
    assert flag.main(["--budget", "0.3", "--min-probability", "0", str(src)]) == 0
    text_lines = capsys.readouterr().out.splitlines()
    assert text_lines
    for line in text_lines:
        path, lineno, score, message = line.split(":", 3)
        assert path == str(src) and lineno.isdigit() and float(score) >= 0 and "expected" in message


def test_min_score_hides_only_the_low_scoring_flags(
    backend: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = (FIXTURES / "palindrome.py.txt").read_text()
    job = FlagJob(text, "python", budget=0.3, key="min-score")
    for unit in job.steps():
        unit(backend)
    everything = job.result()
    scores = sorted(f.score for f in everything.flags)
    assert len(scores) >= 2
    cut = scores[len(scores) // 2]
    job.min_score = cut
    shown = job.result()
    assert {f.line for f in shown.flags} == {f.line for f in everything.flags if f.score >= cut}
    assert 0 < len(shown.flags) < len(everything.flags) or cut == scores[0]

    src = tmp_path / "palindrome.py"
    src.write_text(text)
    assert flag.main(["--json", "--min-score", "1.0", str(src)]) == 0
    assert json.loads(capsys.readouterr().out)["flags"] == []
