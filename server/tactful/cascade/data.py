"""The training data of the cascade: feedback logs turned into arrays, with users kept apart
(several logs: ``log/user``) and the groups evaluation holds out (users; one person's sessions
or time with ``--personal``). Data that cannot support a model is refused here with a message
for a person (:class:`~tactful.cascade.model.CdhfError`), before anything is trained or
written. Training only; ``tactful train`` is :mod:`tactful.cascade.train`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tactful import stats
from tactful.cascade import features as F
from tactful.cascade.model import BOUND_CONFIDENCE, DEFAULT_TARGET, CdhfError, NotEnoughData

#: Fewest labelled decisions (with both outcomes present) that training accepts.
MIN_DECISIONS = 30


@dataclass
class Dataset:
    x1: np.ndarray
    x2: np.ndarray
    y: np.ndarray  # 1 = rejected
    groups: np.ndarray
    group_kind: str
    users: int
    sessions: int
    s1_names: tuple[str, ...] = F.STAGE1_FEATURES
    s2_names: tuple[str, ...] = F.STAGE2_FEATURES
    group_names: list[str] = field(default_factory=list)


def feature_sets(telemetry: bool = False) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Stage 1 and stage 2 feature names. Without ``telemetry`` (the default) the telemetry
    features are left out: they carry no signal across users in CUPS (docs/cdhf.md)."""
    if telemetry:
        return F.STAGE1_FEATURES, F.STAGE2_FEATURES
    return F.CONTEXT_FEATURES, F.CONTEXT_FEATURES + F.SUGGESTION_FEATURES


def log_files(paths: Sequence[str | Path]) -> list[Path]:
    """The log files behind ``--log`` arguments: files as given, folders expanded to the
    ``*.sqlite3`` and ``*.jsonl`` files in them."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted([*p.glob("*.sqlite3"), *p.glob("*.jsonl")])
            if not found:
                raise CdhfError(f"{p}: a folder without feedback logs (*.sqlite3)")
            out.extend(found)
        elif not p.exists():
            raise CdhfError(f"{p}: no such log")
        else:
            out.append(p)
    return out


def log_labels(files: Sequence[Path]) -> list[str]:
    """A distinct name per log file for its users (``team/alice.sqlite3`` -> ``alice``): the
    file's stem, with its folders in front when two logs share a stem."""
    labels = [f.stem for f in files]
    depth = 1
    while len(set(labels)) < len(labels) and depth < 8:
        depth += 1
        labels = ["/".join((*f.parent.parts[-(depth - 1) :], f.stem)) for f in files]
    return labels if len(set(labels)) == len(labels) else [str(f) for f in files]


def load_rows(paths: Sequence[str | Path]) -> list[Any]:
    """Decisions of all logs, users kept apart: with several logs a user is ``log/user``."""
    from tactful.feedback.store import load_decisions

    files = log_files(paths)
    labels = log_labels(files)
    rows: list[Any] = []
    for f, label in zip(files, labels, strict=True):
        for r in load_decisions(f):
            if len(files) > 1:
                r.user = f"{label}/{r.user}"
                r.session = f"{label}/{r.session}"
            rows.append(r)
    # Logs written before the version was recorded hold version 1.
    versions = {int(r.features.get("features_version", 1) or 0) for r in rows}
    if versions - {F.FEATURES_VERSION}:
        raise CdhfError(
            f"the log has features of version {sorted(versions)}; this tactful computes version "
            f"{F.FEATURES_VERSION} and cannot train on older ones (log new decisions, or use the "
            "tactful that wrote them)"
        )
    return sorted(rows, key=lambda r: r.t)


def _groups(rows: Sequence[Any], personal: bool) -> tuple[np.ndarray, str, list[str]]:
    users = sorted({r.user for r in rows})
    sessions = sorted({r.session for r in rows})
    if len(users) >= 3:
        return np.array([users.index(r.user) for r in rows]), "user", users
    if not personal:
        raise CdhfError(
            f"the log has {len(users)} user(s); holding users out needs at least 3, so no figure "
            "for a new user can be measured. Train on more people's logs, or pass --personal to "
            "train a cascade for this person only (evaluated on held-out sessions or time)"
        )
    if len(sessions) >= 3:
        return np.array([sessions.index(r.session) for r in rows]), "session", sessions
    k = 5  # one person, one or two sessions: hold out contiguous stretches of time
    blocks = np.array([min(k - 1, i * k // len(rows)) for i in range(len(rows))])
    return blocks, "time block", [f"block {i}" for i in range(k)]


def dataset(
    paths: Sequence[str | Path],
    telemetry: bool = False,
    personal: bool = False,
    target: float = DEFAULT_TARGET,
) -> Dataset:
    """The decisions of the logs as arrays; refuses data that cannot support a model."""
    names = ", ".join(str(p) for p in paths)
    return dataset_from_rows(load_rows(paths), names, telemetry, personal, target)


def dataset_from_rows(
    rows: Sequence[Any],
    names: str,
    telemetry: bool = False,
    personal: bool = False,
    target: float = DEFAULT_TARGET,
) -> Dataset:
    """:func:`dataset` on decisions already loaded (in time order); ``names`` says where they
    come from in messages."""
    if len(rows) < MIN_DECISIONS:
        raise NotEnoughData(
            f"{names}: {len(rows)} labelled decisions; training needs at least {MIN_DECISIONS}",
            len(rows),
            MIN_DECISIONS,
            "decisions",
        )
    y = np.array([0 if r.accepted else 1 for r in rows], dtype=float)
    if y.min() == y.max():
        raise CdhfError(
            f"{names}: every decision is {'rejected' if y[0] else 'accepted'}; training needs both outcomes"
        )
    need = stats.min_trials(target, BOUND_CONFIDENCE)
    if y.sum() < need:
        raise NotEnoughData(
            f"{names}: {int(y.sum())} rejected decisions; showing {target:.0%} accuracy when hiding "
            f"with {BOUND_CONFIDENCE:.0%} confidence needs at least {need} correctly hidden ones",
            int(y.sum()),
            need,
            "rejected decisions",
        )
    groups, kind, group_names = _groups(rows, personal)
    s1, s2 = feature_sets(telemetry)
    x1 = np.array([F.vector(r.features, s1) for r in rows], dtype=float)
    x2 = np.array([F.vector(r.features, s2) for r in rows], dtype=float)
    return Dataset(
        x1,
        x2,
        y,
        groups,
        kind,
        len({r.user for r in rows}),
        len({r.session for r in rows}),
        s1,
        s2,
        group_names,
    )
