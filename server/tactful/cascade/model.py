"""The CDHF cascade at run time ("When to Show a Suggestion?", Mozannar et al.).

Stage 1 predicts P(reject) from context (and, in models trained with them, telemetry) before
anything is generated and can skip the model call; stage 2 predicts P(reject) with the
suggestion in hand and can hide it. Stage 1 decides alone when its binary entropy is below
``entropy`` and defers to stage 2 otherwise.

This module owns the model folder format (``stage1.txt`` / ``stage2.txt`` LightGBM text models,
``cascade.json`` with feature lists, thresholds, metrics and the guard's prior,
``MODEL_CARD.md``; never pickle), loading it (:class:`Cascade`), the thresholds and the per-request
decisions, and where the model folder is found. Training is :mod:`tactful.cascade.train`
(``tactful train``); the show/hide gate with exploration and the guard is
:mod:`tactful.cascade.gate`. No torch, no pygls.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tactful.cascade import features as F
from tactful.cascade.hooks import Decision

FORMAT_VERSION = 1
DEFAULT_TARGET = 0.95
DEFAULT_LAMBDA = 0.5
#: Confidence of the one-sided Clopper-Pearson lower bound that thresholds and the guard keep
#: above the target accuracy when hiding.
BOUND_CONFIDENCE = 0.90
#: Decisions in the user's own log before a model trained on it replaces the default.
OWN_LOG_MIN_DECISIONS = 300


class CdhfError(Exception):
    """A cascade cannot be trained or loaded; the message is meant for a person."""


class NotEnoughData(CdhfError):
    """The log is still too small to train on: an expected state on a fresh log, not a fault."""

    def __init__(self, message: str, have: int, need: int, what: str) -> None:
        super().__init__(message)
        self.have, self.need, self.what = have, need, what

    def progress(self) -> str:
        """E.g. ``learning: 16 of 30 decisions needed to train``."""
        return f"learning: {self.have} of {self.need} {self.what} needed to train"


def entropy(p: Any) -> Any:
    """Binary entropy in bits (works on floats and numpy arrays)."""
    q = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    out = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return float(out) if out.ndim == 0 else out


@dataclass
class Thresholds:
    """Stage 1 decides alone when H(p1) < ``entropy``: it skips generation when p1 >= ``stage1``
    (and shows otherwise); deferred requests are hidden when p2 >= ``stage2``. The defaults
    hide nothing."""

    entropy: float = 0.0
    stage1: float = 1.01
    stage2: float = 1.01

    def hides_nothing(self) -> bool:
        return self.stage2 > 1.0 and (self.entropy <= 0.0 or self.stage1 > 1.0)


def apply_thresholds(
    p1: np.ndarray, p2: np.ndarray, th: Thresholds
) -> tuple[np.ndarray, np.ndarray]:
    """(hide, decided_by_stage1) boolean arrays."""
    by1 = entropy(p1) < th.entropy
    hide = np.where(by1, p1 >= th.stage1, p2 >= th.stage2)
    return hide, by1


_CHECKED: dict[tuple[str, int, int], None] = {}


def check_model_files(files: Sequence[Path]) -> None:
    """Raise CdhfError unless LightGBM can load each model file. LightGBM's parser aborts or
    crashes the process on some malformed files (SIGABRT, SIGSEGV), so a file is first read in a
    child process; a file that passed (same size and time) is not checked again."""
    import signal
    import subprocess

    todo = []
    for f in files:
        try:
            st = f.stat()
            head = f.read_bytes()[:5]
        except OSError as exc:
            raise CdhfError(f"{f}: cannot read the model file ({exc})") from exc
        if head != b"tree\n":
            raise CdhfError(f"{f}: not a LightGBM model file")
        key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _CHECKED:
            todo.append((f, key))
    if not todo:
        return
    code = "import sys, lightgbm\nfor f in sys.argv[1:]: lightgbm.Booster(model_file=f)"
    try:
        res = subprocess.run(
            [sys.executable, "-c", code, *(str(f) for f, _k in todo)],
            capture_output=True,
            timeout=120,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CdhfError(f"could not check the model files: {exc}") from exc
    if res.returncode != 0:
        how = (
            f"LightGBM crashed on it ({signal.Signals(-res.returncode).name})"
            if res.returncode < 0
            else (res.stderr.decode(errors="replace").strip().splitlines() or ["failed"])[-1][:200]
        )
        names = ", ".join(str(f) for f, _k in todo)
        raise CdhfError(f"{names}: a damaged LightGBM model file: {how}")
    for _f, key in todo:
        _CHECKED[key] = None


@dataclass
class Cascade:
    """A trained cascade loaded from a model folder, deciding per request."""

    path: Path
    stage1_model: Any
    stage2_model: Any
    stage1_features: tuple[str, ...]
    stage2_features: tuple[str, ...]
    thresholds: Thresholds
    meta: dict[str, Any] = field(default_factory=dict)
    #: Overrides from settings (cdhf.stage1Threshold / stage2Threshold).
    stage1_override: float | None = None
    stage2_override: float | None = None

    @classmethod
    def load(cls, path: str | Path) -> Cascade:
        import lightgbm as lgb

        p = Path(path).expanduser()
        try:
            meta = json.loads((p / "cascade.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CdhfError(f"{p}: not a cascade model folder (cascade.json: {exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            raise CdhfError(
                f"{p}: unsupported cascade format {meta.get('format') if isinstance(meta, dict) else meta!r}"
            )
        if meta.get("features_version") != F.FEATURES_VERSION:
            raise CdhfError(
                f"{p}: trained on features version {meta.get('features_version')}, this tactful computes {F.FEATURES_VERSION}; retrain"
            )
        try:
            s1 = tuple(str(x) for x in meta["stage1_features"])
            s2 = tuple(str(x) for x in meta["stage2_features"])
            unknown = [x for x in s2 if x not in F.STAGE2_FEATURES]
            if unknown:
                raise CdhfError(f"{p}: unknown features {unknown}")
            th = Thresholds(**{k: float(v) for k, v in meta["thresholds"].items()})
            check_model_files([p / "stage1.txt", p / "stage2.txt"])
            m1 = lgb.Booster(model_file=str(p / "stage1.txt"))
            m2 = lgb.Booster(model_file=str(p / "stage2.txt"))
        except CdhfError:
            raise
        except Exception as exc:
            raise CdhfError(f"{p}: cannot load the cascade: {exc}") from exc
        if m1.num_feature() != len(s1) or m2.num_feature() != len(s2):
            raise CdhfError(f"{p}: model files do not match the feature lists in cascade.json")
        return cls(p, m1, m2, s1, s2, th, meta)

    def p_stage1(self, feats: Mapping[str, Any]) -> float:
        x = np.array([F.vector(feats, self.stage1_features)], dtype=float)
        return float(self.stage1_model.predict(x, num_threads=1)[0])

    def p_stage2(self, feats: Mapping[str, Any]) -> float:
        x = np.array([F.vector(feats, self.stage2_features)], dtype=float)
        return float(self.stage2_model.predict(x, num_threads=1)[0])

    def stage1(self, feats: Mapping[str, Any]) -> Decision:
        """Before generation: skip (show=False) or go on; ``deferred`` when stage 2 must judge."""
        p = self.p_stage1(feats)
        if self.stage1_override is not None:
            # An explicit threshold: stage 1 skips every request at or above it, whatever its entropy.
            t = self.stage1_override
            if p >= t:
                return Decision(show=False, p_reject=p, stage=1, threshold=t)
            return Decision(show=True, p_reject=p, stage=1, deferred=True, threshold=t)
        if entropy(p) < self.thresholds.entropy:
            t = self.thresholds.stage1
            return Decision(show=p < t, p_reject=p, stage=1, deferred=False, threshold=t)
        return Decision(show=True, p_reject=p, stage=1, deferred=True)

    def stage2(self, feats: Mapping[str, Any], stage1: Decision) -> Decision:
        """After generation: hide (show=False) or show. Without an override, only suggestions
        stage 1 deferred are judged; with ``stage2_override`` every generated one is."""
        if self.stage2_override is None and not stage1.deferred:
            return Decision(show=True, p_reject=None, stage=0)
        p = self.p_stage2(feats)
        t = self.thresholds.stage2 if self.stage2_override is None else self.stage2_override
        return Decision(show=p < t, p_reject=p, stage=2, threshold=t)


def default_model_dir() -> Path:
    from tactful.paths import repo_models_dir

    return repo_models_dir() / "cdhf-default"


def user_model_dir(data_dir: str | None = None) -> Path:
    from tactful.paths import data_dir as _dd

    return _dd(data_dir) / "models" / "cdhf-user"


def own_model_ready(path: Path) -> bool:
    """Whether a user-trained folder was trained on enough decisions to replace the default;
    an adapted one (:mod:`tactful.cascade.adapt`) passed its check when it was written."""
    try:
        meta = json.loads((path / "cascade.json").read_text(encoding="utf-8"))
        if isinstance(meta.get("adapted"), dict):
            return True
        return int(meta["metrics"]["decisions"]) >= OWN_LOG_MIN_DECISIONS
    except (OSError, ValueError, KeyError, TypeError):
        return False


def resolve_model_dir(model_dir: str | None, data_dir: str | None = None) -> Path:
    """The setting's folder; else the user's own trained model once it was trained on at least
    ``OWN_LOG_MIN_DECISIONS`` decisions; else the shipped default."""
    if model_dir:
        return Path(model_dir).expanduser()
    own = user_model_dir(data_dir)
    if own_model_ready(own):
        return own
    return default_model_dir()
