"""scripts/check_sizes.py: the size limits of issue #26 (modules of 600 lines, functions of 60)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_sizes.py"


def load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("check_sizes", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_long_functions_and_modules_are_reported(tmp_path: Path) -> None:
    mod = load()
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    (tmp_path / "ok.py").write_text(f"def at_limit():\n{body}\n")  # 60 lines with its def
    (tmp_path / "long.py").write_text(f"async def long():\n{body}\n    return x0\n")
    (tmp_path / "big.py").write_text("x = 1\n" * 600 + "y = 2\n")
    (tmp_path / "full.py").write_text("x = 1\n" * 600)
    found = mod.problems(tmp_path)
    assert len(found) == 2, found
    assert any("big.py: 601 lines" in p for p in found)
    assert any("long is 61 lines" in p for p in found)


def test_the_package_is_within_the_limits() -> None:
    assert load().main() == 0
