"""Training of the line-flag classifiers (``models/flag/``) and its command line.

``python -m tactful.flags.train build|train|all``: the build step records datasets under
``.cache/flag/`` (git-ignored; :mod:`tactful.flags.datasets`), the train step cross-validates
and fits the classifiers (:mod:`tactful.flags.fitting`), measures them on the recorded rows
(:mod:`tactful.flags.simulate`) and writes the LightGBM text model files, ``meta.json`` and
``MODEL_CARD.md`` (:mod:`tactful.flags.card`). This module owns the arguments and the order of
the work only. Not used at run time.

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
import random
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tactful.flags.card import write_model
from tactful.flags.datasets import (
    CACHE,
    PRIOR_FOLDS,
    PRIOR_MAX_LINES,
    REPO,
    ROUNDS,
    SEED,
    bench_ids,
    build,
    condefects_fixed_lines,
    condefects_fixed_samples,
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
)
from tactful.flags.fitting import cross_validate, fit, training_weights
from tactful.flags.simulate import simulate, summary_line

Samples = list[dict[str, Any]]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m tactful.flags.train", description=__doc__.split("\n")[0]
    )
    ap.add_argument("step", choices=["build", "train", "all", "lpo"])
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
        "--dev-fixed",
        type=int,
        default=0,
        metavar="N",
        help="build the correct versions of the first N ConDefects dev programs (negatives; "
        "default 0: none)",
    )
    ap.add_argument(
        "--dev-mutations",
        type=int,
        default=110,
        help="mutated accepted programs of ConDefects dev tasks to build (default 110)",
    )
    ap.add_argument(
        "--realfix-per-project",
        type=int,
        default=0,
        metavar="N",
        help="build the realfix dataset: N files of each project, buggy and fixed versions "
        "(default 0: none)",
    )
    ap.add_argument(
        "--realfix-max-lines",
        type=int,
        default=1000,
        help="realfix files of at most this many lines (default 1000)",
    )
    _train_args(ap)
    _realfix_train_args(ap)
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


def _realfix_train_args(ap: argparse.ArgumentParser) -> None:
    """Training on real project bugs (realfix) and the leave-group-out step (``lpo``)."""
    ap.add_argument(
        "--with-realfix",
        action="store_true",
        help="train: also train on the realfix dataset (real project bugs)",
    )
    ap.add_argument(
        "--realfix-weight",
        type=float,
        default=1.0,
        help="weight of a realfix sample's rows (default 1)",
    )
    ap.add_argument(
        "--fixed-negatives",
        action="store_true",
        help="with realfix: the fixed (correct) versions of the files train as negatives (and, "
        "with --with-dev, the correct versions of the ConDefects dev programs, where built)",
    )
    ap.add_argument(
        "--max-flags-per-100",
        type=float,
        default=2.0,
        help="lpo: flags per 100 lines allowed on correct files when choosing the threshold",
    )
    ap.add_argument("--lpo-out", default="", help="lpo: write the figures and records here")
    ap.add_argument(
        "--keep-stage1",
        default="",
        metavar="FOLDER",
        help="lpo, train: keep the first stage (stage1.txt) and the prior of the classifier in "
        "FOLDER; train only the final classifier",
    )
    ap.add_argument(
        "--write-calibration",
        default="",
        metavar="FILE",
        help="lpo: write the calibration fitted on the held-out projects' flags (and the "
        "threshold) to FILE",
    )
    ap.add_argument(
        "--baseline",
        default="",
        metavar="FOLDER",
        help="lpo: the figures of the classifier in FOLDER as it is, instead of leave-group-out",
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = _parser()
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(raw_argv)
    if args.step in ("build", "all"):
        _build_step(args)
    if args.step == "lpo":
        return _lpo_step(args)
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
    if args.realfix_per_project:
        _build_realfix(backend, args)
    if args.mutations:
        build(backend, "mutations", mutation_samples(args.mutations), args.regen_extra)
    also = None
    if (args.dev or args.dev_mutations or args.dev_fixed) and not args.no_prior:
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
    if args.dev_fixed:
        fixed_line = condefects_fixed_lines("dev", args.dev_fixed)

        def also_fixed(sid: str, text: str) -> list[int]:
            return [fixed_line[sid], *(also(sid, text) if also is not None else [])]

        build(
            backend,
            "condefects-dev-fixed",
            condefects_fixed_samples("dev", args.dev_fixed),
            args.regen_extra,
            also_fixed,
        )
    if args.dev_mutations:
        build(
            backend,
            "condefects-dev-mutations",
            condefects_mutation_samples(args.dev_mutations),
            args.regen_extra,
            also,
        )


def _build_realfix(backend: Any, args: argparse.Namespace) -> None:
    """The realfix dataset: both versions of each sampled file, lines picked by the shipped
    classifier (it never saw realfix), with a window memo on disk (a fixed version's unchanged
    windows cost no model work)."""
    from tactful.flags import realfix
    from tactful.flags.memo import WindowMemo, open_store
    from tactful.flags.model import FlagModel

    rows = realfix.sample_rows(args.realfix_max_lines, args.realfix_per_project)
    memo = WindowMemo(store=open_store(CACHE, size_mb=2048))
    build(
        backend,
        "realfix",
        realfix.samples(rows),
        args.regen_extra,
        realfix.also_fixed_line(rows),
        picker=FlagModel.load(),
        memo=memo,
    )


def _lpo_step(args: argparse.Namespace) -> int:
    """``lpo``: leave-group-out figures of a recipe on realfix (by project) and ConDefects dev
    (by task fold), from the recorded datasets."""
    from tactful.flags import lpo

    samples = _recorded("realfix") + _recorded("condefects-dev") + _recorded("condefects-dev-fixed")
    recipe = lpo.Recipe(
        args.rounds,
        json.loads(args.params),
        args.realfix_weight,
        args.fixed_negatives,
        args.dev_weight,
        _kept(args)[0],
    )
    folds = dev_folds(PRIOR_FOLDS)
    if args.baseline:  # a trained classifier as it is, each group on its own
        from tactful.flags.model import FlagModel

        model = FlagModel.load(args.baseline)
        for s in samples:
            model.fill_prior([r["cheap"] for r in s["rows"]])
        print(f"classifier {args.baseline} as it is: {len(samples)} samples")
        res = lpo.evaluate_model(samples, folds, model, scored=bench_ids())
    else:
        print(f"leave-group-out: {len(samples)} samples, {recipe}, prior {not args.no_prior}")
        corpus = None if args.no_prior else prior_corpus()
        res = lpo.evaluate(samples, folds, recipe, corpus, scored=bench_ids())
    summary = lpo.report(res, args.max_flags_per_100, 10)
    print(json.dumps({k: v for k, v in summary.items() if k != "curve"}, indent=1))
    for point in summary["curve"]:
        print(json.dumps(point))
    if args.lpo_out:
        what = (
            {"baseline": args.baseline}
            if args.baseline
            else {**vars(recipe), "stage1": args.keep_stage1 or "trained"}
        )
        doc = {
            "recipe": what,
            **summary,
            "records": res["records"],
            "condefects_records": res.get("condefects_records", []),
        }
        Path(args.lpo_out).write_text(json.dumps(doc, indent=1) + "\n")
    if args.write_calibration:
        cal = lpo.calibration_doc(summary, res["records"])
        cal["fitted_on"]["max_flags_per_100_lines"] = args.max_flags_per_100
        Path(args.write_calibration).write_text(json.dumps(cal, indent=2) + "\n")
    return 0


def _kept(args: argparse.Namespace) -> tuple[Any, Any]:
    """(first stage, prior) of the classifier in ``--keep-stage1`` (None, None: none kept)."""
    if not args.keep_stage1:
        return None, None
    import lightgbm as lgb

    folder = Path(args.keep_stage1)
    meta = json.loads((folder / "meta.json").read_text())
    stage1 = lgb.Booster(model_str=(folder / meta["stage1"]).read_text())
    prior = meta.get("prior") and lgb.Booster(model_str=(folder / meta["prior"]).read_text())
    return stage1, prior or None


def _recorded(name: str) -> Samples:
    """A recorded dataset, or nothing where it was not built."""
    return load_dataset(name) if (CACHE / f"{name}.jsonl").exists() else []


def _load_recorded() -> tuple[Samples, Samples, int]:
    """(mutations, real dev bugs, how many of the mutations are library snippets): the recorded
    datasets (those built); the library mutations and the mutated dev programs are shuffled
    together."""
    mut = _recorded("mutations")
    dev = _recorded("condefects-dev")
    n_std = len(mut)
    mut += _recorded("condefects-dev-mutations")
    random.Random(SEED).shuffle(mut)
    return mut, dev, n_std


def _train_step(args: argparse.Namespace, raw_argv: Sequence[str], drop: Sequence[str]) -> int:
    """Train (after the cross-validation asked for), measure and write the classifier."""
    params = json.loads(args.params)
    mut, dev, n_std = _load_recorded()
    metrics: dict[str, dict[str, float]] = {}
    folds = dev_folds(args.cv or PRIOR_FOLDS)
    corpus = None if args.no_prior else prior_corpus()
    if args.cv:
        others = [] if args.no_mutations else mut
        cv = _cross_validation(args, params, dev, others, folds, corpus, drop)
        metrics[f"ConDefects dev, {args.cv}-fold CV by task"] = cv
        if args.cv_only:
            return 0
    return _fit_and_write(args, raw_argv, params, mut, dev, folds, corpus, metrics, n_std)


def _cross_validation(
    args: argparse.Namespace,
    params: dict[str, Any],
    dev: Samples,
    others: Samples,
    folds: dict[str, int],
    corpus: Any,
    drop: Sequence[str],
) -> dict[str, float]:
    """``--cv K``: print what is cross-validated, each fold's and the pooled figures; returns
    the pooled ones."""
    print(
        f"cross-validation: {len(dev)} real dev bugs, {len(others)} mutations, "
        f"rounds {args.rounds}, params {params}, mutation weight {args.mut_weight}, "
        f"dev weight {args.dev_weight}, drop {drop}, "
        f"prior {'none' if corpus is None else f'{len(corpus)} dev programs'}",
        flush=True,
    )
    return cross_validate(
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


def _fit_and_write(
    args: argparse.Namespace,
    raw_argv: Sequence[str],
    params: dict[str, Any],
    mut: Samples,
    dev: Samples,
    folds: dict[str, int],
    corpus: Any,
    metrics: dict[str, dict[str, float]],
    n_std: int,
) -> int:
    """Fit the shipped classifiers on everything, measure them, write them with their card."""
    from tactful.flags.model import FlagModel

    n_dev_mut = len(mut) - n_std
    prior = None
    # With --fixed-negatives the correct versions of the ConDefects dev programs train too.
    dev_fixed = _recorded("condefects-dev-fixed") if args.fixed_negatives else []
    if corpus is not None:
        # The shipped prior sees every dev program; the training rows get out-of-fold ones.
        priors = {
            frozenset({g}): fit_prior(corpus, folds, {g}) for g in range(args.cv or PRIOR_FOLDS)
        }
        priors[frozenset()] = prior = fit_prior(corpus, folds, set())
        mut = cross_fitted(mut, folds, priors, set())
        dev = cross_fitted(dev, folds, priors, set())
        dev_fixed = cross_fitted(dev_fixed, folds, priors, set())
    others = [] if args.no_mutations else mut
    real = dev + dev_fixed
    train = others + (real if args.with_dev else [])
    weights = training_weights(train, {s["id"] for s in real}, args.mut_weight, args.dev_weight)
    kept_stage1, kept_prior = _kept(args)
    prior = kept_prior or prior
    rfx, rfx_weights = _realfix_training(args, prior)
    stage1, final = fit(train + rfx, args.rounds, params, weights + rfx_weights)
    stage1 = kept_stage1 or stage1
    model = FlagModel(stage1, final, {"name": "flag-lgbm"}, prior)
    if mut:
        half = len(mut) // 2
        s1, f1 = fit(mut[:half], args.rounds, params)
        metrics["mutations, held-out half"] = simulate(mut[half:], FlagModel(s1, f1, {}))
        metrics["mutations, heuristic"] = simulate(mut, FlagModel())
    n_dev = sum(1 for s in dev if s["rows"])  # a program under 7 lines gets no flag
    n_fixed = sum(1 for s in dev_fixed if s["rows"]) if args.with_dev else 0
    if dev:
        dev = _dev_metrics(dev, model, args.with_dev, metrics)
    for name, m in metrics.items():
        print(summary_line(name, m))
    card = {
        "trained_on": _trained_on(args, n_std, n_dev_mut, n_dev, corpus, n_fixed)
        + _realfix_part(rfx),
        "dev_metrics": metrics,
        "recipe": _recipe(args, raw_argv, params, mut + dev + rfx),
    }
    write_model(stage1, final, Path(args.out), card, prior)
    print(f"wrote {args.out}")
    return 0


def _realfix_training(args: argparse.Namespace, prior: Any) -> tuple[Samples, list[float]]:
    """With ``--with-realfix``: the realfix samples that train (the buggy versions, and the
    fixed ones with ``--fixed-negatives``), their prior the shipped one (it never saw them),
    and their weights."""
    from tactful.flags import realfix
    from tactful.flags.datasets import with_priors

    if not args.with_realfix:
        return [], []
    rfx = [s for s in _recorded("realfix") if args.fixed_negatives or not realfix.is_fixed(s["id"])]
    rfx = with_priors(rfx, lambda _s: prior)
    return rfx, [args.realfix_weight] * len(rfx)


def _dev_metrics(
    dev: Samples, model: Any, with_dev: bool, metrics: dict[str, dict[str, float]]
) -> Samples:
    """Add the dev bugs' figures (those the benchmark would score) to ``metrics``; returns them."""
    from tactful.flags.model import FlagModel

    seen = " (in training)" if with_dev else ""
    scored = bench_ids()
    dev = [s for s in dev if s["id"] in scored]
    metrics[f"ConDefects dev{seen}"] = simulate(dev, model)
    metrics["ConDefects dev, heuristic"] = simulate(dev, FlagModel())
    for extra in (0, 1, 2, 4):
        print(
            summary_line(
                f"ConDefects dev{seen}, regen_extra={extra}", simulate(dev, model, extra=extra)
            )
        )
    return dev


def _trained_on(
    args: argparse.Namespace, n_std: int, n_dev_mut: int, n_dev: int, corpus: Any, n_fixed: int = 0
) -> str:
    """The model card's sentence on the training data (``n_fixed``: correct ConDefects
    programs that trained as negatives)."""
    parts = []
    if not args.no_mutations and n_std:
        parts.append(
            f"{n_std} mutated function-sized snippets of the Python standard library and "
            f"installed packages"
        )
    if not args.no_mutations and n_dev_mut:
        parts.append(f"{n_dev_mut} mutated accepted programs of ConDefects dev-split tasks")
    if args.with_dev:
        parts.append(f"{n_dev} real bugs of ConDefects dev-split programs")
        if n_fixed:
            parts.append(f"the correct versions of {n_fixed} of them as negatives")
    if corpus is not None:
        parts.append(
            f"a prior on the text of {len(corpus)} real bugs of ConDefects dev-split programs "
            f"of up to {PRIOR_MAX_LINES} lines"
        )
    return " + ".join(parts)


def _realfix_part(rfx: Samples) -> str:
    """The model card's words on the realfix training samples (none: nothing)."""
    from tactful.flags import realfix

    if not rfx:
        return ""
    bugs = [s for s in rfx if not realfix.is_fixed(s["id"])]
    fixed = len(rfx) - len(bugs)
    projects = len({realfix.repo_of(s["id"]) for s in bugs})
    also = f" and the {fixed} fixed (correct) versions as negatives" if fixed else ""
    return f" + {len(bugs)} real one-line bugs of {projects} Python projects (realfix){also}"


def _recipe(
    args: argparse.Namespace, raw_argv: Sequence[str], params: dict[str, Any], samples: Samples
) -> dict[str, Any]:
    """How the classifier was trained (``meta.json``'s ``recipe``, shown on the model card)."""
    return {
        "command": " ".join(["python -m tactful.flags.train", *map(shlex.quote, raw_argv)]),
        "rounds": args.rounds,
        "params": params,
        "mut_weight": args.mut_weight,
        "dev_weight": args.dev_weight,
        **(
            {"realfix_weight": args.realfix_weight, "fixed_negatives": args.fixed_negatives}
            if args.with_realfix
            else {}
        ),
        **(_kept_origin(args.keep_stage1) if args.keep_stage1 else {}),
        "feature_dtypes": sorted({str(s.get("dtype", "not recorded")) for s in samples}),
    }


def _kept_origin(folder: str) -> dict[str, Any]:
    """The recipe's words on a kept first stage and prior: where from, and what they were
    trained on (that classifier's own card sentence)."""
    meta = json.loads((Path(folder) / "meta.json").read_text())
    kept_on = (meta.get("recipe") or {}).get("kept_trained_on") or meta.get("trained_on")
    return {"kept_stage1_and_prior_from": folder, "kept_trained_on": kept_on}


if __name__ == "__main__":
    sys.exit(main())
