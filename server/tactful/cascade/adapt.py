"""Learning this user (issue 25, item 3): the shipped cascade is the prior, and the user's own
decisions move where it hides.

**What adapts** is where the prior's scores are cut, not the models. A recalibration of the
prior's P(reject) on the user's decisions (Platt, isotonic) is monotone in the score, so
"hide when the recalibrated probability meets the target" is "hide above some threshold on the
prior's score". The rule fits those thresholds directly on the user's decisions with the rule
``tactful train`` uses (:func:`~tactful.cascade.thresholds.fit_thresholds`: the one-sided 90 %
Clopper-Pearson lower bound of accuracy when hiding at the target), so the prior's ranking,
learnt from many people, is kept and only its cut-offs become this person's.

**The rule** (:func:`propose`), on the user's labelled decisions (shown suggestions with an
outcome, exploration included) in time order, the :data:`WINDOW` most recent: the earlier
``1 - HOLDOUT_SHARE`` fit candidate thresholds; the later :data:`HOLDOUT_SHARE` check them. The
candidate is adopted only when it hides some of those later decisions and the lower bound of its
accuracy when hiding on them reaches the target. Otherwise the thresholds in use stay (the
prior's at first). So the adapted cascade hides nothing more than the prior until the user's own
evidence supports it, and hides more as the evidence grows; below :func:`min_decisions` no
check can pass at all.

**In the server** (``cdhf.retrainOnOwnLog``), :func:`adapt_log` runs the rule on the user's log
every :data:`EVERY` decisions with the shipped cascade as prior, and writes the adapted folder
(the prior's model files, the adopted thresholds, the check's counts as the guard's prior) only
when the candidate passes: a failing candidate never replaces the previous folder. It holds the
folder's lock (:mod:`tactful.cascade.lock`; a manual training meanwhile makes it skip) and never
overwrites a folder the user trained themselves. ``tactful replay adapt``
(:mod:`tactful.replay.adapt`) measures the rule against the static prior with users held out.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tactful import stats
from tactful.cascade import features as F
from tactful.cascade.model import (
    BOUND_CONFIDENCE,
    DEFAULT_LAMBDA,
    DEFAULT_TARGET,
    Cascade,
    CdhfError,
    NotEnoughData,
    Thresholds,
    apply_thresholds,
)
from tactful.cascade.thresholds import fit_thresholds

#: Share of the user's decisions (the most recent) that check a candidate fitted on the rest.
HOLDOUT_SHARE = 0.3
#: The rule looks at this many of the user's most recent decisions at most.
WINDOW = 1000
#: The server adapts again after this many new decisions.
EVERY = 20


def min_decisions(target: float, confidence: float = BOUND_CONFIDENCE) -> int:
    """The fewest labelled decisions whose later :data:`HOLDOUT_SHARE` could pass the check
    (every one of them hidden and rejected): below this the rule adopts nothing."""
    return math.ceil(stats.min_trials(target, confidence) / HOLDOUT_SHARE)


@dataclass
class Proposal:
    """What the rule made of the user's decisions: a candidate, adopted or not, and why."""

    adopted: bool
    reason: str
    thresholds: Thresholds | None = None
    decisions: int = 0
    fitted_on: int = 0
    checked_on: int = 0
    check_hidden: int = 0
    check_correct: int = 0
    check_lower: float | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["thresholds"] = None if self.thresholds is None else asdict(self.thresholds)
        return d


def propose(
    p1: np.ndarray,
    p2: np.ndarray,
    y: np.ndarray,
    target: float,
    lam: float = DEFAULT_LAMBDA,
    confidence: float = BOUND_CONFIDENCE,
    holdout: float = HOLDOUT_SHARE,
    check: bool = True,
) -> Proposal:
    """The adaptation rule (module doc) on one user's labelled decisions in time order: the
    prior's stage-1 and stage-2 P(reject) and ``y`` (1 = rejected). ``check=False`` (for the
    replay's ablation only) adopts any candidate that hides something, fitted on all of them."""
    p1, p2, y = np.asarray(p1, float), np.asarray(p2, float), np.asarray(y, float)
    n = len(y)
    if not check:
        return _unchecked(p1, p2, y, target, lam, confidence)
    need = min_decisions(target, confidence)
    if n < need:
        return Proposal(
            False,
            f"{n} of your decisions; checking {target:.0%} accuracy when hiding on later ones "
            f"needs at least {need}",
            decisions=n,
        )
    cut = n - max(1, math.ceil(holdout * n))
    base = Proposal(False, "", None, n, cut, n - cut)
    if y[:cut].min() == y[:cut].max():
        base.reason = (
            f"your earlier {cut} decisions are all {'rejected' if y[0] else 'accepted'}; "
            "adapting needs both outcomes"
        )
        return base
    cand = fit_thresholds(p1[:cut], p2[:cut], y[:cut], target, lam, confidence=confidence)
    base.thresholds = cand
    if cand.hides_nothing():
        base.reason = (
            f"your earlier {cut} decisions support no hiding at {target:.0%} (no threshold keeps "
            f"the {confidence:.0%} lower bound)"
        )
        return base
    hide, _ = apply_thresholds(p1[cut:], p2[cut:], cand)
    h, k = int(hide.sum()), int((hide & (y[cut:] == 1)).sum())
    base.check_hidden, base.check_correct = h, k
    if h == 0:
        base.reason = f"fitted on your earlier {cut} decisions, it hid none of the later {n - cut}"
        return base
    lower = stats.cp_lower(k, h, confidence)
    base.check_lower = lower
    fig = (
        f"on your later {n - cut} decisions it hid {h}, {k} of them rejected: accuracy when "
        f"hiding {k / h:.1%}, {confidence:.0%} lower bound {lower:.1%}"
    )
    if lower < target:
        base.reason = f"{fig}, below the {target:.0%} target"
        return base
    base.adopted, base.reason = True, f"{fig}, at or above the {target:.0%} target"
    return base


def _unchecked(
    p1: np.ndarray, p2: np.ndarray, y: np.ndarray, target: float, lam: float, confidence: float
) -> Proposal:
    """The ablation: thresholds fitted on all the decisions (the bound in sample only), adopted
    whenever they hide something; what the check on later decisions guards against."""
    n = len(y)
    if n == 0 or y.min() == y.max():
        return Proposal(False, "one outcome", decisions=n)
    cand = fit_thresholds(p1, p2, y, target, lam, confidence=confidence)
    adopted = not cand.hides_nothing()
    why = "adopted unchecked (ablation)" if adopted else "hides nothing"
    return Proposal(adopted, why, cand, n, n, 0)


# --- the server's side -------------------------------------------------------------------------


@dataclass
class AdaptResult:
    out: Path
    proposal: Proposal
    written: bool

    def message(self) -> str:
        what = "adapted the show/hide cascade to your decisions" if self.written else "kept"
        return f"{what}: {self.proposal.reason}"


def prior_scores(prior: Cascade, rows: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """The prior's stage-1 and stage-2 P(reject) for logged decisions."""
    x1 = np.array([F.vector(r.features, prior.stage1_features) for r in rows], dtype=float)
    x2 = np.array([F.vector(r.features, prior.stage2_features) for r in rows], dtype=float)
    return prior.stage1_model.predict(x1), prior.stage2_model.predict(x2)


def is_adapted(folder: Path) -> bool:
    """Whether ``folder`` holds an adapted cascade (which adaptation may replace)."""
    try:
        meta = json.loads((folder / "cascade.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("adapted"), dict)


def adapt_log(log: str | Path, out: str | Path, prior_dir: str | Path | None = None) -> AdaptResult:
    """The rule on the log's decisions with the cascade in ``prior_dir`` (default: the shipped
    one) as prior; the adapted folder ``out`` is written only when the candidate passes.
    Raises :class:`NotEnoughData` on a log too small to check anything, :class:`CdhfError`
    when ``out`` holds a model the user trained, or another writer holds it
    (:class:`~tactful.cascade.lock.FolderBusy`)."""
    from tactful.cascade.data import load_rows
    from tactful.cascade.lock import folder_lock
    from tactful.cascade.model import default_model_dir

    out = Path(out).expanduser()
    with folder_lock(out):
        if (out / "cascade.json").exists() and not is_adapted(out):
            raise CdhfError(
                f"{out} holds a cascade trained with tactful train; automatic adaptation leaves "
                "it (remove the folder to adapt the shipped one instead)"
            )
        prior = Cascade.load(prior_dir or default_model_dir())
        target = float(prior.meta.get("target", DEFAULT_TARGET))
        rows = load_rows([log])[-WINDOW:]
        need = min_decisions(target)
        if len(rows) < need:
            raise NotEnoughData(
                f"{log}: {len(rows)} decisions; adapting needs at least {need}",
                len(rows),
                need,
                "decisions",
            )
        p1, p2 = prior_scores(prior, rows)
        y = np.array([0.0 if r.accepted else 1.0 for r in rows])
        lam = float(prior.meta.get("lambda", DEFAULT_LAMBDA))
        prop = propose(p1, p2, y, target, lam)
        if prop.adopted:
            _write_adapted(out, prior, prop, str(log))
        return AdaptResult(out, prop, prop.adopted)


def _write_adapted(out: Path, prior: Cascade, prop: Proposal, log: str) -> None:
    from tactful.cascade.lock import replace_folder

    assert prop.thresholds is not None
    meta = copy.deepcopy(prior.meta)
    target = float(meta.get("target", DEFAULT_TARGET))
    meta.update(
        thresholds=asdict(prop.thresholds),
        supported=True,
        verdict=f"adapted to your log: {prop.reason}",
        guard={
            "target": target,
            "prior_hidden": float(prop.check_hidden),
            "prior_correct": float(prop.check_correct),
        },
        adapted={
            **prop.to_json(),
            "prior": str(prior.path),
            "prior_thresholds": meta.get("thresholds"),
            "log": log,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    card = _card(meta, prop, (prior.path / "MODEL_CARD.md"))

    def fill(tmp: Path) -> None:
        for name in ("stage1.txt", "stage2.txt"):
            shutil.copyfile(prior.path / name, tmp / name)
        (tmp / "cascade.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (tmp / "MODEL_CARD.md").write_text(card, encoding="utf-8")

    replace_folder(out, fill)


def _card(meta: dict[str, Any], prop: Proposal, prior_card: Path) -> str:
    th, a = meta["thresholds"], meta["adapted"]
    try:
        before = prior_card.read_text(encoding="utf-8").split("\n", 1)[1]
    except (OSError, IndexError):
        before = "\n(the prior's model card could not be read)\n"
    return "\n".join(
        [
            "# CDHF cascade model card: adapted to your log",
            "",
            f"Adapted {a['at']} from the prior `{a['prior']}` on your {prop.decisions} most recent "
            f"decisions (`{a['log']}`): thresholds fitted on the earlier {prop.fitted_on} with the "
            f"prior's scores, checked on the later {prop.checked_on}: {prop.reason}.",
            "",
            f"- Stage 1 decides alone when its entropy < {th['entropy']:.4f} bits and skips "
            f"generation when P(reject) >= {th['stage1']:.4f}.",
            f"- Stage 2 hides when P(reject) >= {th['stage2']:.4f}.",
            "- The models are the prior's; the running guard starts from the check's counts.",
            "",
            "## The prior",
            before,
        ]
    )
