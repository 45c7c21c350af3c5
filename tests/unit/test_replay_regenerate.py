"""``tactful replay --regenerate`` on a tiny JSONL log with logged contexts, with the embedded model."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from tactful import paths
from tactful.replay import report as replay

CONTEXTS = [
    # mid-line contexts: single-line suggestions keep the model's work (and this test) short
    ("def add(a, b):\n    return ", "", True),
    ("import os\n\npath = os.path.join(", "", False),
    ("names = ['a', 'b']\nfor i, name in enumerate(", "", True),
]


def write_log(path: Path) -> Path:
    lines = []
    for i, (prefix, suffix, accepted) in enumerate(CONTEXTS):
        sid, t = f"r{i}", 10.0 * (i + 1)
        base = {
            "suggestionId": sid,
            "session": "s",
            "user": "me",
            "uri": "file:///a.py",
            "language": "python",
        }
        lines.append(
            {
                **base,
                "id": 4 * i + 1,
                "t": t,
                "kind": "requested",
                "data": {"prefix": prefix, "suffix": suffix, "features": {}},
            }
        )
        lines.append(
            {
                **base,
                "id": 4 * i + 2,
                "t": t + 0.1,
                "kind": "generated",
                "data": {"features": {"sugg_chars": 5}, "seconds": 0.2},
            }
        )
        lines.append(
            {
                **base,
                "id": 4 * i + 3,
                "t": t + 0.2,
                "kind": "shown",
                "data": {"text": "a + b" if i == 0 else "pass"},
            }
        )
        lines.append(
            {
                **base,
                "id": 4 * i + 4,
                "t": t + 1,
                "kind": "accepted" if accepted else "rejected",
                "data": {},
            }
        )
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


@pytest.mark.model
def test_regenerate_with_embedded_model(tmp_path: Path) -> None:
    if not any((paths.cache_dir() / "models").glob("*/config.json")):
        pytest.skip("the embedded model is not installed (tactful model install)")
    log = write_log(tmp_path / "tiny.jsonl")
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        assert (
            replay.main(["--log", str(log), "--no-default", "--regenerate", "--json", "--quiet"])
            == 0
        )
    rg = json.loads(out.getvalue())["regenerate"]
    assert rg["compared"] == 3 and rg["without_context"] == 0
    assert rg["vs_accepted"]["n"] == 2 and rg["vs_rejected"]["n"] == 1
    for row in rg["rows"]:
        assert 0.0 <= row["edit_similarity"] <= 1.0
        assert row["exact"] == (row["edit_similarity"] == 1.0)
    # the 135M model completes ``return `` in ``add(a, b)`` with the sum
    first = rg["rows"][0]
    assert first["id"] == "r0" and first["edit_similarity"] > 0.5, rg["rows"]


def test_regenerate_compares_with_a_given_completer(tmp_path: Path) -> None:
    loaded = replay.load_log(write_log(tmp_path / "tiny.jsonl"))
    units = replay.build_units(loaded.events)
    rg = replay.regenerate(units, loaded.contexts, lambda prefix, suffix: "pass")
    assert rg["compared"] == 3
    assert rg["vs_shown"]["exact_match"] == pytest.approx(2 / 3)
    assert rg["vs_accepted"]["exact_match"] == pytest.approx(0.5)
    assert rg["vs_rejected"]["exact_match"] == 1.0
