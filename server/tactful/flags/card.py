"""Writing a trained flag classifier's folder (``models/flag/``): the LightGBM text files,
``meta.json`` and the model card. Training only."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tactful.flags import features as ff
from tactful.flags.datasets import PARAMS, ROUNDS


def model_card(meta: dict[str, Any], stage1: Any, final: Any, prior: Any = None) -> str:
    """The model card: what the classifiers are, what they were trained on, how they did."""
    return (
        _files_section(meta, prior)
        + _training_section(meta)
        + _results_section(meta.get("dev_metrics") or {})
        + _importance_section(stage1, final, prior)
        + _limits_section(meta)
    )


def _files_section(meta: dict[str, Any], prior: Any) -> str:
    """The title, the files and what each classifier reads, and what the output means."""
    prior_row = (
        f"| `{meta['prior']}` | prior: how likely a line of this text and place is the bug "
        f"(the cheap feature `prior`) | {len(meta['prior_inputs'])} features of the line's text "
        "and place, no model output |\n"
        if prior is not None
        else ""
    )
    return f"""# Model card: tactful line-flag classifiers (`{meta["name"]}`)

LightGBM binary classifiers stored as LightGBM **text** model files (no pickle), read by
`tactful.flags.model.FlagModel.load` with `lightgbm.Booster(model_str=...)`.

| file | role | input |
|---|---|---|
{prior_row}| `{meta["stage1"]}` | first stage: which lines to regenerate | {len(meta["cheap_features"])} cheap features: the teacher-forced pass, the line's text and place{", the prior" if prior is not None else ""} |
| `{meta["final"]}` | decision: score of a regenerated line | the same plus {len(meta["all_features"]) - len(meta["cheap_features"])} comparison features |
| `meta.json` | feature names and order, file names, training summary | |

Output: P(line holds the bug). Flags are the highest-scoring regenerated lines, at most
`flags.budget` of a file's lines, whose regeneration differs from the written line.

"""


def _training_section(meta: dict[str, Any]) -> str:
    """What the classifiers were trained on, with which parameters, and how to reproduce them."""
    recipe = meta.get("recipe") or {}
    trained_on = str(meta.get("trained_on"))
    bullets = [
        "* Real bugs: faulty submissions of ConDefects Python whose task is in the dev split (md5 "
        "of the\n  task name even), clean single-fault programs of at most 40 lines, first by id; "
        "the label is the\n  line the fix changed. No held-out task was used for training, tuning "
        "or feature selection."
    ]
    if "realfix" in trained_on:
        bullets.append(_REALFIX_BULLET)
    if "mutated" in trained_on:
        bullets.append(_MUTATIONS_BULLET)
    weights = f"real bugs {recipe.get('dev_weight', 1.0)}"
    if "realfix_weight" in recipe:
        weights += f", realfix {recipe['realfix_weight']}"
        weights += " (fixed versions too, as negatives)" if recipe.get("fixed_negatives") else ""
    if "mutated" in trained_on:
        weights += f", mutations {recipe.get('mut_weight', 1.0)}"
    if recipe.get("kept_stage1_and_prior_from"):
        kept_on = recipe.get("kept_trained_on") or "the data of its own card"
        weights += (
            ". The first stage and the prior were kept from the classifier before it (trained on"
            f" {kept_on}); only the decision classifier was trained on these data"
        )
    return f"""## Training data

{trained_on}.

{chr(10).join(bullets)}

Training: LightGBM, {recipe.get("rounds", ROUNDS)} rounds, parameters `{json.dumps({**PARAMS, **(recipe.get("params") or {})}, sort_keys=True)}`;
row weights: {weights}.
Features computed with the embedded SmolLM2-135M-Instruct on CPU, weights in {" and ".join(recipe.get("feature_dtypes") or ["a dtype not recorded"])}
(the server runs it in bfloat16 where the CPU has AVX512-BF16 or AMX, float32 otherwise). Python only: other languages get the same features (line kinds from
tree-sitter or line rules) but were not in the training data.

Reproduce: build the datasets (cached in `.cache/flag/`, resumable), then train with the
command below. See docs/flags.md ("Training and benchmark") for the build commands of each
dataset. Train: `{recipe.get("command", "python -m tactful.flags.train train --with-dev --cv 5")}`.

"""


_REALFIX_BULLET = """* Real project bugs (realfix): real one-line fixes from the git history of Python projects
  (`shared/data/realfix`: both versions compile under Python 3, not a version constant), files
  of at most 600 lines, at most 40 of each project; the label is the changed line of the buggy
  version. Built with `python -m tactful.flags.train build --mutations 0 --dev 0
  --dev-mutations 0 --realfix-per-project 40 --realfix-max-lines 600` (first stage: the
  classifier shipped before it plus 4 lines)."""

_MUTATIONS_BULLET = """* Mutations: single-line mutations (operator swap, off-by-one, wrong variable, wrong constant,
  negated condition, swapped arguments, deleted line) injected by `tactful.flags.mutate` into
  real source files on the build machine: function-sized snippets of the Python standard library
  and installed pure-Python packages (never tactful's own code), and the accepted programs of the
  ConDefects tasks of the dev split (never a held-out task)."""


def _results_section(metrics: dict[str, dict[str, float]]) -> str:
    """The recorded figures of each set, each beside its random expectation."""

    def cell(m: dict[str, float], key: str, rand: str) -> str:
        return f"{m[key]:.3f} ({m[rand]:.3f})" if rand in m else f"{m[key]:.3f}"

    rows = "\n".join(
        f"| {name} | {m['n']} | {cell(m, 'top1', 'random_top1')} | "
        f"{cell(m, 'top3', 'random_top3')} | {cell(m, 'recall_at_budget', 'random_recall')} |"
        for name, m in metrics.items()
    )
    return f"""## Development results (recorded rows, two-stage ranking simulated)

Random ranking of the same lines in brackets (exact expectation). The cross-validated row is the
honest one for real bugs; a row marked "in training" was seen by the classifier.

| set | programs | top-1 | top-3 | recall at 15 % |
|---|---|---|---|---|
{rows}

The held-out figures of the real pipeline are in `docs/benchmarks.md` (`tactful bench flag`).

"""


def _importance(booster: Any) -> str:
    """The eight features with the largest share of a booster's total gain."""
    names = booster.feature_name()
    gains = booster.feature_importance(importance_type="gain")
    ranked = sorted(zip(names, gains, strict=True), key=lambda t: -t[1])[:8]
    total = sum(gains) or 1.0
    return ", ".join(f"`{n}` {100 * g / total:.0f} %" for n, g in ranked)


def _importance_section(stage1: Any, final: Any, prior: Any) -> str:
    prior_imp = f"\n* prior: {_importance(prior)}" if prior is not None else ""
    return f"""## Most useful features (share of total gain)

* first stage: {_importance(stage1)}
* decision: {_importance(final)}{prior_imp}

"""


def _training_limit(meta: dict[str, Any]) -> str:
    """What the real bugs in training are, in one sentence."""
    if "realfix" in str(meta.get("trained_on")):
        return (
            "The real bugs in training are short AtCoder\n  programs and one-line fixes of 12 "
            "Python projects; other kinds of code (other languages,\n  notebooks, generated "
            "code) were not seen."
        )
    return "The real bugs in training are short AtCoder programs, not library code."


def _limits_section(meta: dict[str, Any]) -> str:
    return f"""## Limits

* Real bugs that span lines or are missing code are harder. {_training_limit(meta)}
* The score is the probability that a line is the bug given the file it is in: lines of short
  files score higher (one bug in about 25 lines of a short faulty program, one in 300 of a
  project file), so the calibration (`calibration.json`) adds a score floor for short files.
* Features depend on the model (and slightly on its dtype and decoding path): retrain after
  changing the default model. `FlagModel.load` refuses a classifier whose feature list differs
  from the code's.
* Rebuilding reproduces the recipe and sizes, not bit-identical files.
* Created {meta["created"]}.
"""


def write_model(
    stage1: Any, final: Any, folder: Path, card: dict[str, Any], prior: Any = None
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stage1.txt").write_text(stage1.model_to_string())
    (folder / "final.txt").write_text(final.model_to_string())
    if prior is not None:
        (folder / "prior.txt").write_text(prior.model_to_string())
    elif (folder / "prior.txt").exists():
        (folder / "prior.txt").unlink()
    meta = {
        "name": card.get("name", "flag-lgbm"),
        "format": "lightgbm-text",
        "stage1": "stage1.txt",
        "final": "final.txt",
        "cheap_features": list(ff.CHEAP_FEATURES),
        "all_features": list(ff.ALL_FEATURES),
        "kinds": list(ff.KINDS),
        "prior": "prior.txt" if prior is not None else None,
        "prior_inputs": list(ff.PRIOR_INPUTS) if prior is not None else None,
        "trained_on": card.get("trained_on"),
        "dev_metrics": card.get("dev_metrics"),
        "recipe": card.get("recipe"),
        "created": time.strftime("%Y-%m-%d"),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    # A calibration fitted on the old classifier's scores would mislead: refit it
    # (tactful bench flag --realfix N --write-calibration FOLDER/calibration.json).
    if (folder / "calibration.json").exists():
        (folder / "calibration.json").unlink()
        print(f"removed {folder / 'calibration.json'}: refit it for the new scores")
    (folder / "MODEL_CARD.md").write_text(model_card(meta, stage1, final, prior))
