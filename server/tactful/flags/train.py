"""Training of the line-flag classifiers (``models/flag/``) and its command line.

Owns the single-line mutation generator (operator swap, off-by-one, wrong variable, wrong
constant, negated condition, swapped arguments, deleted line), the snippets it mutates (real
source files of this Python installation: the standard library and installed packages, never
tactful itself), the ConDefects loader and its dev / held-out split (by task), the dataset build
(run the real flagging pipeline with the heuristic first stage and record every considered
line's features) and the LightGBM training that writes text model files, ``meta.json`` and
``MODEL_CARD.md``. Intermediate datasets are cached under ``.cache/flag/`` (git-ignored).

Reproduce the shipped classifier (the datasets are built with different first-stage extras, so
it takes three builds; docs/flags.md and the model card list the same commands)::

    python -m tactful.flags.train build --dev 0 --dev-mutations 0
    python -m tactful.flags.train build --mutations 0 --dev 775 --dev-mutations 0 --regen-extra 2
    python -m tactful.flags.train build --mutations 0 --dev 0 --dev-mutations 110 --regen-extra 2
    python -m tactful.flags.train train --with-dev --cv 5 --rounds 150 --params '{"num_leaves": 7}'

``all`` builds the default sizes in one go and trains (a quick, smaller recipe).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tactful.flags import features as ff
from tactful.flags.card import write_model
from tactful.flags.datasets import (
    CACHE,
    PARAMS,
    PRIOR_FOLDS,
    PRIOR_MAX_LINES,
    REPO,
    ROUNDS,
    SEED,
    bench_ids,
    build,
    condefects_mutation_samples,
    condefects_samples,
    cross_fitted,
    dev_folds,
    fit_prior,
    load_dataset,
    mutation_samples,
    prior_corpus,
    prior_top,
    set_threads,
    task_of,
)

# --- training ------------------------------------------------------------------------------------


def _matrix(
    samples: Sequence[dict[str, Any]], regen: bool, weights: Sequence[float] | None = None
) -> tuple[list[list[float]], list[int], list[float]]:
    x, y, w = [], [], []
    for k, s in enumerate(samples):
        for r in s["rows"]:
            if regen and r["regen"] is None:
                continue
            x.append(r["cheap"] + (r["regen"] if regen else []))
            y.append(r["y"])
            w.append(weights[k] if weights is not None else 1.0)
    return x, y, w


def fit(
    samples: Sequence[dict[str, Any]],
    rounds: int = ROUNDS,
    params: dict[str, Any] | None = None,
    weights: Sequence[float] | None = None,
    drop: Sequence[str] = (),
) -> tuple[Any, Any]:
    """Train the two LightGBM classifiers on dataset samples.

    ``weights``: one per sample, given to each of its rows. ``drop``: features hidden from both
    classifiers (set to NaN; for ablations only, never for a shipped model)."""
    import lightgbm as lgb
    import numpy as np

    p = {**PARAMS, **(params or {})}
    kind = ff.CHEAP_FEATURES.index("kind")
    boosters = []
    for regen, names in ((False, ff.CHEAP_FEATURES), (True, ff.ALL_FEATURES)):
        x, y, w = _matrix(samples, regen, weights)
        xa = np.asarray(x, dtype=float)
        for name in drop:
            if name in names:  # a regeneration feature is not among the first stage's
                xa[:, names.index(name)] = np.nan
        data = lgb.Dataset(
            xa,
            np.asarray(y),
            weight=np.asarray(w, dtype=float),
            feature_name=list(names),
            categorical_feature=[kind],
        )
        boosters.append(lgb.train(p, data, rounds))
    return boosters[0], boosters[1]


class _Masked:
    """A model whose inputs have ``drop`` features set to NaN (the ablation of :func:`fit`)."""

    def __init__(self, model: Any, drop: Sequence[str]) -> None:
        self.model = model
        self.cheap = [ff.CHEAP_FEATURES.index(n) for n in drop if n in ff.CHEAP_FEATURES]
        self.all = [ff.ALL_FEATURES.index(n) for n in drop]

    def stage1(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return list(self.model.stage1([_mask(r, self.cheap) for r in rows]))

    def final(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return list(self.model.final([_mask(r, self.all) for r in rows]))


def _mask(row: Sequence[float], idx: Sequence[int]) -> list[float]:
    out = list(row)
    for i in idx:
        out[i] = math.nan
    return out


def simulate(
    samples: Sequence[dict[str, Any]],
    model: Any,
    budget: float = 0.15,
    extra: int | None = None,
    min_score: float = 0.05,
    regen_min: float = 0.0,
) -> dict[str, float]:
    """Top-1, top-3 and recall at the budget of the two-stage ranking on recorded samples, as
    ``tactful bench flag`` counts them, with the exact expectation of a random ranking.

    The first stage picks ``max_flags + extra`` lines; of those, the ones the build regenerated
    get the final score (a pick the build did not regenerate is counted in ``missing`` and ranks
    by the first stage, below them). Flags are the regenerated lines whose regeneration differs
    from the written line and is not empty, best first, at most ``max_flags``; the ranking for
    top-1/top-3 is the flags, then the other regenerated lines, then the rest by the first stage.
    ``recall_min_score`` and ``share_min_score``: the recall and the share of lines flagged when
    flags scoring below ``min_score`` are not shown (the editor's ``flags.minScore``).
    ``regen_min``: picks whose first-stage score is below it are not regenerated (a threshold
    tried for the flagger and not shipped, see docs/benchmarks.md); ``regen_per_100``: the
    regenerations per 100 lines.
    """
    from tactful.flags.plan import REGEN_EXTRA

    extra = REGEN_EXTRA if extra is None else extra
    t: dict[str, float] = dict.fromkeys(
        ("hits1", "hits3", "hitb", "rand1", "rand3", "randb", "missing", "picked", "hit_ms"), 0.0
    )
    t["share_ms"] = t["lines"] = 0.0
    for s in samples:
        if s["rows"]:
            _simulate_one(s, model, budget, extra, min_score, regen_min, t)
    n = max(1, len(samples))
    return {
        "n": len(samples),
        "top1": t["hits1"] / n,
        "top3": t["hits3"] / n,
        "recall_at_budget": t["hitb"] / n,
        "random_top1": t["rand1"] / n,
        "random_top3": t["rand3"] / n,
        "random_recall": t["randb"] / n,
        "missing_picks": t["missing"] / max(1, t["picked"]),
        "recall_min_score": t["hit_ms"] / n,
        "share_min_score": t["share_ms"] / n,
        "regen_per_100": 100 * t["picked"] / max(1, t["lines"]),
    }


def _simulate_one(
    s: dict[str, Any],
    model: Any,
    budget: float,
    extra: int,
    min_score: float,
    regen_min: float,
    t: dict[str, float],
) -> None:
    """Add one recorded sample's counts to the tallies ``t`` (see :func:`simulate`)."""
    i_exact = len(ff.CHEAP_FEATURES) + ff.REGEN_FEATURES.index("exact_ws")
    i_empty = len(ff.CHEAP_FEATURES) + ff.REGEN_FEATURES.index("gen_empty")
    rows = s["rows"]
    max_flags = math.floor(budget * s["lines"] + 1e-9)
    n_regen = min(len(rows), max_flags + extra) if max_flags else 0
    p1 = model.stage1([r["cheap"] for r in rows])
    order = sorted(range(len(rows)), key=lambda j: -p1[j])
    picks = [j for j in order[:n_regen] if p1[j] >= regen_min]
    chosen = [j for j in picks if rows[j]["regen"] is not None]
    t["picked"] += len(picks)
    t["missing"] += len(picks) - len(chosen)
    t["lines"] += s["lines"]
    full = [rows[j]["cheap"] + rows[j]["regen"] for j in chosen]
    pf = model.final(full)
    by_score = sorted(range(len(chosen)), key=lambda k: -pf[k])
    eligible = [k for k in by_score if not full[k][i_exact] and not full[k][i_empty]]
    flags = [rows[chosen[k]]["i"] for k in eligible[:max_flags]]
    ranked = flags + [rows[chosen[k]]["i"] for k in by_score if rows[chosen[k]]["i"] not in flags]
    ranked += [rows[j]["i"] for j in order if rows[j]["i"] not in ranked]
    bugs = set(s["bugs"])
    t["hits1"] += bool(bugs & set(ranked[:1]))
    t["hits3"] += bool(bugs & set(ranked[:3]))
    t["hitb"] += bool(bugs & set(flags))
    shown = [rows[chosen[k]]["i"] for k in eligible[:max_flags] if pf[k] >= min_score]
    t["hit_ms"] += bool(bugs & set(shown))
    t["share_ms"] += len(shown) / max(1, s["lines"])
    c = len(rows)
    if bugs & {r["i"] for r in rows}:
        t["rand1"] += min(1, c) / c
        t["rand3"] += min(3, c) / c
        t["randb"] += min(max_flags, c) / c


def _pool(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    """Figures of several :func:`simulate` results over all their programs together."""
    n = sum(p["n"] for p in parts)
    out: dict[str, float] = {"n": n}
    for key in parts[0]:
        if key != "n":
            out[key] = sum(p[key] * p["n"] for p in parts) / max(1, n)
    return out


def _line(name: str, m: dict[str, float]) -> str:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "-"

    return (
        f"{name}: n={m['n']} recall@15% {m['recall_at_budget']:.3f} "
        f"(random {m['random_recall']:.3f}, {ratio(m['recall_at_budget'], m['random_recall'])}) "
        f"top-1 {m['top1']:.3f} (random {m['random_top1']:.3f}, "
        f"{ratio(m['top1'], m['random_top1'])}) top-3 {m['top3']:.3f} "
        f"(random {m['random_top3']:.3f}, {ratio(m['top3'], m['random_top3'])}) "
        f"missing picks {m['missing_picks']:.2f}; at minScore 0.05: recall "
        f"{m['recall_min_score']:.3f}, lines flagged {m['share_min_score']:.3f}; "
        f"regenerated per 100 lines {m['regen_per_100']:.1f}"
    )


def training_weights(
    samples: Sequence[dict[str, Any]], real: set[str], mut_weight: float, dev_weight: float
) -> list[float]:
    """One weight per sample: ``dev_weight`` for the real bugs (ids in ``real``), ``mut_weight``
    for the mutations."""
    return [dev_weight if s["id"] in real else mut_weight for s in samples]


def cross_validate(
    dev: Sequence[dict[str, Any]],
    others: Sequence[dict[str, Any]],
    k: int,
    *,
    folds: dict[str, int] | None = None,
    corpus: Sequence[tuple[str, list[list[float]], list[int]]] | None = None,
    rounds: int = ROUNDS,
    params: dict[str, Any] | None = None,
    mut_weight: float = 1.0,
    dev_weight: float = 1.0,
    drop: Sequence[str] = (),
    scored: set[str] | None = None,
    regen_mins: Sequence[float] = (),
    log: Any = sys.stdout,
) -> dict[str, float]:
    """K-fold cross-validation on the real ConDefects dev bugs, folds by task (``folds``, default
    :func:`dev_folds`): each fold's classifier is trained on the other folds' real bugs plus
    ``others`` (the mutations), leaving out every mutation of a test-fold task (the accepted
    program of a task is the fix of its faulty one). With a prior ``corpus``, the prior is
    cross-fitted inside the training folds and never sees a test-fold task. ``scored``: the ids
    of the dev programs the figures count (default all; see :func:`bench_ids`). Prints each fold
    and the pooled figures; returns the pooled ones. ``regen_mins``: also print the pooled figures
    with each of these first-stage thresholds for regeneration (see :func:`simulate`)."""
    from tactful.flags.model import FlagModel

    folds = dev_folds(k) if folds is None else folds
    real = {s["id"] for s in dev}
    parts = []
    swept: dict[float, list[dict[str, float]]] = {t: [] for t in regen_mins}
    for f in range(k):
        test = [
            s
            for s in dev
            if folds.get(task_of(s["id"])) == f and (scored is None or s["id"] in scored)
        ]
        train = [s for s in list(dev) + list(others) if folds.get(task_of(s["id"])) != f]
        if corpus is not None:
            excluded: list[set[int]] = [{f}] + [{f, g} for g in range(k) if g != f]
            priors = {frozenset(e): fit_prior(corpus, folds, e) for e in excluded}
            test = cross_fitted(test, folds, priors, {f})
            train = cross_fitted(train, folds, priors, {f})
        weights = training_weights(train, real, mut_weight, dev_weight)
        s1, f1 = fit(train, rounds, params, weights, drop)
        model: Any = FlagModel(s1, f1, {})
        if drop:
            model = _Masked(model, drop)
        m = simulate(test, model)
        parts.append(m)
        for t in regen_mins:
            swept[t].append(simulate(test, model, regen_min=t))
        print(_line(f"  fold {f + 1}/{k}", m), file=log, flush=True)
    pooled = _pool(parts)
    print(_line(f"  pooled ({k} folds by task)", pooled), file=log, flush=True)
    for t, ms in swept.items():
        print(_line(f"  pooled, regenerating only at stage 1 >= {t:g}", _pool(ms)), file=log)
    return pooled


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m tactful.flags.train", description=__doc__.split("\n")[0]
    )
    ap.add_argument("step", choices=["build", "train", "all"])
    ap.add_argument(
        "--mutations",
        type=int,
        default=160,
        help="mutated snippets to build (default 160; 0: none)",
    )
    ap.add_argument(
        "--dev", type=int, default=25, help="ConDefects dev programs to build (default 25)"
    )
    ap.add_argument(
        "--dev-mutations",
        type=int,
        default=110,
        help="mutated accepted programs of ConDefects dev tasks to build (default 110)",
    )
    _train_args(ap)
    return ap


def _train_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--with-dev", action="store_true", help="also train on the ConDefects dev rows")
    ap.add_argument(
        "--cv",
        type=int,
        default=0,
        metavar="K",
        help="K-fold cross-validation on the ConDefects dev bugs, folds by task: print each fold "
        "and the pooled figures (trained as --with-dev would, on the other folds)",
    )
    ap.add_argument(
        "--cv-only", action="store_true", help="with --cv: stop after the cross-validation"
    )
    ap.add_argument(
        "--dev-weight", type=float, default=1.0, help="weight of a real dev bug's rows (default 1)"
    )
    ap.add_argument(
        "--mut-weight", type=float, default=1.0, help="weight of a mutation's rows (default 1)"
    )
    ap.add_argument("--no-mutations", action="store_true", help="train on the real dev bugs alone")
    ap.add_argument(
        "--regen-extra",
        type=int,
        default=4,
        help="build: regenerate this many lines beyond the budget by the heuristic (default 4)",
    )
    ap.add_argument(
        "--no-prior",
        action="store_true",
        help="no prior classifier (build: regenerate the heuristic's lines only; train: no prior)",
    )
    ap.add_argument("--rounds", type=int, default=ROUNDS, help=f"boosting rounds ({ROUNDS})")
    ap.add_argument(
        "--params", default="{}", help="LightGBM parameters over the defaults, as a JSON object"
    )
    ap.add_argument(
        "--drop",
        default="",
        help="with --cv-only: comma-separated features hidden from the classifiers (ablation)",
    )
    ap.add_argument(
        "--regen-min",
        default="",
        help="with --cv: comma-separated first-stage thresholds below which a line is not "
        "regenerated; prints the pooled figures for each",
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: see set_threads)"
    )
    ap.add_argument(
        "--out", default=str(REPO / "models" / "flag"), help="where to write the classifier"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = _parser()
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(raw_argv)
    if args.step in ("build", "all"):
        _build_step(args)
    if args.step in ("train", "all"):
        drop = [d for d in args.drop.split(",") if d]
        if drop and not args.cv_only:
            ap.error("--drop is for ablations: use it with --cv-only")
        if not (CACHE / "condefects-dev.jsonl").exists() and args.cv:
            ap.error("--cv needs the ConDefects dev dataset (build --dev N)")
        return _train_step(args, raw_argv, drop)
    return 0


def _build_step(args: argparse.Namespace) -> None:
    """Build the datasets the arguments ask for (resumable)."""
    from tactful import paths
    from tactful.backend.hf import TransformersBackend

    backend = TransformersBackend.load(None, cache_dir=paths.cache_dir())
    set_threads(args.threads)
    if args.mutations:
        build(backend, "mutations", mutation_samples(args.mutations), args.regen_extra)
    also = None
    if (args.dev or args.dev_mutations) and not args.no_prior:
        # Also regenerate the lines an out-of-fold prior ranks highest, so that the data
        # hold the lines a trained first stage picks (not only the heuristic's).
        bfolds, bcorpus = dev_folds(), prior_corpus()
        bpriors = {frozenset({g}): fit_prior(bcorpus, bfolds, {g}) for g in range(PRIOR_FOLDS)}
        also = prior_top(bfolds, bpriors)
    if args.dev:
        build(
            backend,
            "condefects-dev",
            condefects_samples("dev", args.dev),
            args.regen_extra,
            also,
        )
    if args.dev_mutations:
        build(
            backend,
            "condefects-dev-mutations",
            condefects_mutation_samples(args.dev_mutations),
            args.regen_extra,
            also,
        )


def _train_step(args: argparse.Namespace, raw_argv: Sequence[str], drop: Sequence[str]) -> int:
    """Train (after the cross-validation asked for), measure and write the classifier."""
    params = json.loads(args.params)
    mut = load_dataset("mutations")
    dev = load_dataset("condefects-dev") if (CACHE / "condefects-dev.jsonl").exists() else []
    # An honest figure on mutations: train on one half of the snippets, test on the other.
    dmut_path = CACHE / "condefects-dev-mutations.jsonl"
    n_std = len(mut)
    mut += load_dataset("condefects-dev-mutations") if dmut_path.exists() else []
    random.Random(SEED).shuffle(mut)
    others = [] if args.no_mutations else mut
    metrics: dict[str, dict[str, float]] = {}
    k = args.cv or PRIOR_FOLDS
    folds = dev_folds(k)
    corpus = None if args.no_prior else prior_corpus()
    if args.cv:
        print(
            f"cross-validation: {len(dev)} real dev bugs, {len(others)} mutations, "
            f"rounds {args.rounds}, params {params}, mutation weight {args.mut_weight}, "
            f"dev weight {args.dev_weight}, drop {drop}, "
            f"prior {'none' if corpus is None else f'{len(corpus)} dev programs'}",
            flush=True,
        )
        cv = cross_validate(
            dev,
            others,
            args.cv,
            folds=folds,
            corpus=corpus,
            rounds=args.rounds,
            params=params,
            mut_weight=args.mut_weight,
            dev_weight=args.dev_weight,
            drop=drop,
            scored=bench_ids(),
            regen_mins=[float(t) for t in args.regen_min.split(",") if t.strip()],
        )
        metrics[f"ConDefects dev, {args.cv}-fold CV by task"] = cv
        if args.cv_only:
            return 0
    return _fit_and_write(args, raw_argv, params, mut, dev, folds, corpus, metrics, n_std)


def _fit_and_write(
    args: argparse.Namespace,
    raw_argv: Sequence[str],
    params: dict[str, Any],
    mut: list[dict[str, Any]],
    dev: list[dict[str, Any]],
    folds: dict[str, int],
    corpus: Any,
    metrics: dict[str, dict[str, float]],
    n_std: int,
) -> int:
    """Fit the shipped classifiers on everything, measure them, write them with their card."""
    from tactful.flags.model import FlagModel

    k = args.cv or PRIOR_FOLDS
    n_dev_mut = len(mut) - n_std
    others = [] if args.no_mutations else mut
    prior = None
    if corpus is not None:
        # The shipped prior sees every dev program; the training rows get out-of-fold ones.
        priors = {frozenset({g}): fit_prior(corpus, folds, {g}) for g in range(k)}
        priors[frozenset()] = prior = fit_prior(corpus, folds, set())
        mut = cross_fitted(mut, folds, priors, set())
        dev = cross_fitted(dev, folds, priors, set())
        others = [] if args.no_mutations else mut
    half = len(mut) // 2
    s1, f1 = fit(mut[:half], args.rounds, params)
    train = others + (dev if args.with_dev else [])
    weights = training_weights(train, {s["id"] for s in dev}, args.mut_weight, args.dev_weight)
    stage1, final = fit(train, args.rounds, params, weights)
    model = FlagModel(stage1, final, {"name": "flag-lgbm"}, prior)
    metrics["mutations, held-out half"] = simulate(mut[half:], FlagModel(s1, f1, {}))
    metrics["mutations, heuristic"] = simulate(mut, FlagModel())
    n_dev = sum(1 for s in dev if s["rows"])  # a program under 7 lines gets no flag
    if dev:
        dev = _dev_metrics(dev, model, args.with_dev, metrics)
    for name, m in metrics.items():
        print(_line(name, m))
    _write(
        args,
        raw_argv,
        params,
        stage1,
        final,
        prior,
        metrics,
        mut,
        dev,
        corpus,
        n_std,
        n_dev_mut,
        n_dev,
    )
    return 0


def _dev_metrics(
    dev: list[dict[str, Any]], model: Any, with_dev: bool, metrics: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    """Add the dev bugs' figures (those the benchmark would score) to ``metrics``; returns them."""
    from tactful.flags.model import FlagModel

    seen = " (in training)" if with_dev else ""
    scored = bench_ids()
    dev = [s for s in dev if s["id"] in scored]
    metrics[f"ConDefects dev{seen}"] = simulate(dev, model)
    metrics["ConDefects dev, heuristic"] = simulate(dev, FlagModel())
    for extra in (0, 1, 2, 4):
        print(
            _line(f"ConDefects dev{seen}, regen_extra={extra}", simulate(dev, model, extra=extra))
        )
    return dev


def _write(
    args: argparse.Namespace,
    raw_argv: Sequence[str],
    params: dict[str, Any],
    stage1: Any,
    final: Any,
    prior: Any,
    metrics: dict[str, dict[str, float]],
    mut: list[dict[str, Any]],
    dev: list[dict[str, Any]],
    corpus: Any,
    n_std: int,
    n_dev_mut: int,
    n_dev: int,
) -> None:
    parts = (
        []
        if args.no_mutations
        else [
            f"{n_std} mutated function-sized snippets of the Python standard library and "
            f"installed packages",
            f"{n_dev_mut} mutated accepted programs of ConDefects dev-split tasks",
        ]
    )
    if args.with_dev:
        parts.append(f"{n_dev} real bugs of ConDefects dev-split programs")
    if corpus is not None:
        parts.append(
            f"a prior on the text of {len(corpus)} real bugs of ConDefects dev-split programs "
            f"of up to {PRIOR_MAX_LINES} lines"
        )
    trained_on = " + ".join(parts)
    recipe = {
        "command": " ".join(["python -m tactful.flags.train", *map(shlex.quote, raw_argv)]),
        "rounds": args.rounds,
        "params": params,
        "mut_weight": args.mut_weight,
        "dev_weight": args.dev_weight,
        "feature_dtypes": sorted({str(s.get("dtype", "not recorded")) for s in mut + dev}),
    }
    write_model(
        stage1,
        final,
        Path(args.out),
        {"trained_on": trained_on, "dev_metrics": metrics, "recipe": recipe},
        prior,
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
