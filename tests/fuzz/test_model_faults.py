"""Damaged model files: a malformed LightGBM cascade must not take the process down, and a
damaged converted embedded model is converted again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tactful import paths
from tactful.backend import embedded
from tactful.backend.types import ModelError
from tactful.cascade import model as cdhf

DEFAULT = paths.repo_models_dir() / "cdhf-default"


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t[: len(t) // 2],  # truncated: SIGSEGV in LightGBM's parser
        lambda t: t.replace("split_feature=", "split_feature=99999 ", 1),  # SIGABRT
        lambda t: t.replace("left_child=", "left_child=77777 ", 1),  # SIGABRT
        lambda t: "garbage\n" * 10,  # a Python error
    ],
)
def test_a_malformed_cascade_is_refused_without_crashing(tmp_path: Path, damage) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "cdhf"
    shutil.copytree(DEFAULT, bad)
    f = bad / "stage1.txt"
    f.write_text(damage(f.read_text()))
    with pytest.raises(cdhf.CdhfError):
        cdhf.Cascade.load(bad)
    assert cdhf.Cascade.load(DEFAULT) is not None  # this process is fine


def _fake_converted(cache: Path) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    out = embedded.converted_dir(cache)
    out.mkdir(parents=True)
    save_file({"w": np.arange(1000, dtype=np.float32)}, str(out / "model.safetensors"))
    (out / embedded._MARKER).write_text(json.dumps({"format": embedded._FORMAT}))
    return out


def test_damage_of_the_converted_model_is_found(tmp_path: Path) -> None:
    out = _fake_converted(tmp_path)
    assert embedded.damage(tmp_path) is None
    assert "sha256" in json.loads((out / embedded._MARKER).read_text())  # checksums added
    raw = bytearray((out / "model.safetensors").read_bytes())
    raw[-10] ^= 0xFF  # one flipped byte in the weights
    (out / "model.safetensors").write_bytes(bytes(raw))
    assert "checksum" in (embedded.damage(tmp_path) or "")
    marker = json.loads((out / embedded._MARKER).read_text())
    del marker["sha256"]
    (out / embedded._MARKER).write_text(json.dumps(marker))
    (out / "model.safetensors").write_bytes(bytes(raw[:-100]))  # truncated
    assert "header says" in (embedded.damage(tmp_path) or "")


def test_a_damaged_converted_model_is_converted_again(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = _fake_converted(tmp_path)
    assert embedded.damage(tmp_path) is None
    (out / "model.safetensors").write_bytes(b"\x00" * 50)
    steps: list[str] = []

    def no_gguf() -> Path:  # stop where the real conversion would start (minutes of CPU)
        raise ModelError("conversion started")

    monkeypatch.setattr(embedded, "gguf_path", no_gguf)
    with pytest.raises(ModelError, match="conversion started"):
        embedded.ensure_converted(tmp_path, lambda msg, _pct: steps.append(msg))
    assert not out.exists()  # the damaged folder is gone, not loaded
    assert steps and "damaged" in steps[0]
