"""Bad input for line flags (issue #27): a file that does not parse, a Python 2 file, a minified
one-line file, a 5,000-line file, mixed tabs and spaces. Each goes through the real flagging job
(``FlagJob``: planning, units, result, quick fixes) with a stand-in model that counts its calls
(the real model takes minutes on 5,000 lines; tests/lsp covers it on small files), and through the
server object's skip log. Work is bounded by counting units and regenerations, not by timing."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tactful.backend.types import GenerateRequest, Generation, LineScores
from tactful.flags import fixes as ffixes
from tactful.flags import plan
from tactful.flags.fixes import FixChecker, python_compiles
from tactful.flags.job import FlagInterrupted, FlagJob
from tactful.flags.model import FlagModel
from tactful.flags.plan import Focus, RegenOptions, skip_reason
from tactful.flags.result import FlagResult


class StandIn:
    """A backend that scores every line alike and regenerates line ``i`` (0-based, counted in
    the window's text: exact for a one-window document) as ``suggest(i)``; counts its calls."""

    name = "stand-in"
    fim = False

    def __init__(self, suggest: Callable[[int], str] = lambda i: "value = 0") -> None:
        self.suggest = suggest
        self.scored: list[int] = []  # characters of each window scored
        self.batches: list[int] = []  # lines of each generate_many call
        self.generated = 0
        self.lines: list[int] = []  # the lines regenerated (in a one-window document)

    def score_into_slot(self, text: str, key: str, cancel: threading.Event) -> LineScores:
        self.scored.append(len(text))
        lines = text.split("\n")
        starts, pos = [], 0
        for ln in lines:
            starts.append(pos)
            pos += len(ln) + 1
        lp = [[-2.0 - (i % 7) * 0.3] if ln.strip() else [] for i, ln in enumerate(lines)]
        ent = [[1.0] if row else [] for row in lp]
        return LineScores(lp, ent, len(lines), starts, [False] * len(starts))

    def generate(self, req: GenerateRequest) -> Generation:
        self.generated += 1
        self.lines.append(req.prefix.count("\n"))
        return Generation(self.suggest(self.lines[-1]), [-1.0])

    def generate_many(self, reqs: list[GenerateRequest]) -> list[Generation]:
        self.batches.append(len(reqs))
        return [self.generate(r) for r in reqs]


def _flag(
    text: str, backend: StandIn, each_window: Callable[[FlagJob], None] | None = None, **kw: Any
) -> tuple[FlagJob, FlagResult]:
    """Run every unit of a job on ``backend`` (as the editor does: one unit at a time), with
    ``each_window`` called whenever a window is done (the editor shows its flags then)."""
    job = FlagJob(text, "python", model=FlagModel(), min_probability=0.0, **kw)
    done = 0
    for unit in job.steps():
        if each_window is not None and job.windows_done > done:
            done = job.windows_done
            each_window(job)
        unit(backend)  # type: ignore[arg-type]
    return job, job.result()


def _applied(lines: list[str], line: int, fix: str) -> str:
    out = list(lines)
    out[line] = fix
    return "\n".join(out)


def _indent(s: str) -> str:
    return s[: len(s) - len(s.lstrip())]


# --- skipped, with a reason --------------------------------------------------------------------
def test_what_is_skipped_and_why() -> None:
    five_thousand = "".join(f"x{i} = {i}\n" for i in range(5000))
    assert skip_reason(five_thousand, 5000) is None  # 5,000 lines, the last one ended
    assert "5001 lines is more than flags.maxLines (5000)" in (
        skip_reason(five_thousand + "y = 1\n", 5000) or ""
    )
    assert "minified" in (skip_reason("var a=1;" * 1000, 5000) or "")
    # Lines just under the long-line rule: bounded by characters (the windows grow with them).
    wide = ("x = '" + "a" * 390 + "'\n") * 1000
    assert skip_reason(wide, 5000) is None
    assert skip_reason(wide * 2, 5000) == (
        f"{len(wide) * 2} characters is more than flags.maxLines × 100 (500000)"
    )
    assert skip_reason(wide * 2, 10_000) is None  # the cap follows the setting


def test_a_one_line_minified_file_under_the_size_rule_says_why_and_costs_nothing() -> None:
    backend = StandIn()
    job, res = _flag("var a=1;" * 60, backend)
    assert res.skipped is not None and "1 of 1 lines are over 400 characters" in res.skipped
    assert not job.skip_routine  # the content's reason: logged as a warning
    assert backend.scored == [] and backend.generated == 0 and res.flags == []
    # A longer one is skipped before any parsing.
    job = FlagJob("var a=1;" * 5000, "javascript", model=FlagModel())
    assert job.skipped is not None and "minified" in job.skipped and job.kinds == []


def test_routine_reasons_for_no_flag() -> None:
    ten = "".join(f"x{i} = {i}\n" for i in range(10))
    job = FlagJob(ten, "python", model=FlagModel(), focus=Focus.of((), (), changed_only=True))
    assert job.skipped == "no line changed in this session (flags.scope: changed)"
    assert job.skip_routine and list(job.steps()) == []
    short = FlagJob("a = 1\nb = 2\n", "python", model=FlagModel())
    assert (
        short.skipped == "2 lines: the budget (flags.budget) allows no flag" and short.skip_routine
    )
    comments = FlagJob("# a\n# b\n\n" * 10, "python", model=FlagModel())
    assert comments.skipped is not None and comments.skip_routine
    assert FlagJob("\n \n", "python", model=FlagModel()).skip_routine  # empty


# --- bounded work ------------------------------------------------------------------------------
def _five_thousand_lines() -> str:
    block = [
        "def f{n}(items, limit):",
        '    """Sum the items under limit."""',
        "    total = 0",
        "    for item in items:",
        "        if item < limit:",
        "            total += item",
        "    return total",
        "",
        "",
    ]
    lines = [ln.format(n=n) for n in range(556) for ln in block][:4995]
    return "\n".join([*lines, *[f"x{i} = {i}" for i in range(5)]]) + "\n"


def test_a_5000_line_file_is_scored_window_by_window_with_at_most_64_regenerations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = _five_thousand_lines()
    compiles: list[int] = []
    real = ffixes.python_compiles

    def counted(s: str) -> bool:
        compiles.append(len(s))
        return real(s)

    monkeypatch.setattr(ffixes, "python_compiles", counted)
    partial: list[int] = []
    backend = StandIn(lambda i: "total = 1")
    job, res = _flag(text, backend, lambda j: partial.append(len(j.result().flags)))
    assert res.skipped is None and res.lines == 5000
    # One scoring pass per window, each bounded in characters; 64 regenerations in batches of 8.
    assert len(backend.scored) == len(job.windows) == res.windows
    assert 30 <= len(job.windows) <= 5000 / 100
    assert max(backend.scored) <= plan.WINDOW_CHARS + plan.CONTEXT_CHARS + 2 * plan.MAX_LINE_CHARS
    assert backend.generated == res.regenerated == plan.MAX_REGEN
    assert max(backend.batches) <= plan.REGEN_BATCH
    assert len(partial) == len(job.windows) - 1 and partial[-1] > 0  # shown window by window
    # The quick fixes: the text compiled once for the whole job, and each flag's fix once, however
    # often the flags were shown (here after every window).
    assert python_compiles(text) and len(res.flags) <= plan.MAX_REGEN
    assert len(compiles) == 1 + len({(f.line, f.suggestion) for f in res.flags})


def test_a_unit_gives_way_before_its_model_call_and_runs_again() -> None:
    backend = StandIn()
    job = FlagJob(_five_thousand_lines()[:4000], "python", model=FlagModel())
    units = job.steps()
    first = next(units)
    job.interrupt = threading.Event()
    job.interrupt.set()
    with pytest.raises(FlagInterrupted):
        first(backend)  # type: ignore[arg-type]
    assert backend.scored == []
    job.interrupt = threading.Event()
    first(backend)  # type: ignore[arg-type]
    assert len(backend.scored) == 1


# --- quick fixes never break the file -----------------------------------------------------------
BROKEN = {"return": "return (", "total": "total = total +", "if": "if item < limit"}


def _suggest_for(lines: list[str]) -> Callable[[int], str]:
    """Line ``i``'s suggestion: a broken variant of the line for some, a sound edit for others."""

    def suggest(i: int) -> str:
        s = lines[i].strip()
        if s == "def main(args:":
            return "def main(args):"  # a repair: a fix even where tree-sitter reads nothing
        word = s.split(" ")[0] if s else ""
        if i % 2 and word in BROKEN:
            return BROKEN[word]
        sound = s.replace("0", "1").replace("<", "<=")
        return sound if sound != s else f"{s}  # checked"

    return suggest


MIXED = (
    "def total(items, limit):\n"
    "\ttotal = 0\n"
    "\tfor item in items:\n"
    "\t\tif item < limit:\n"
    "\t\t\ttotal += item\n"
    "\treturn total\n"
    "\n"
    "\n"
    "def count(items, limit):\n"
    "    count = 0\n"
    "    for item in items:\n"
    "        if item < limit:\n"
    "            count += 1\n"
    "    return count\n"
)
# Inconsistent within one block (a TabError in Python 3): the file does not compile.
TAB_ERROR = MIXED.replace("\t\t\ttotal += item", "        \ttotal += item").replace(
    "\treturn total", "        return total"
)
PYTHON_2 = (
    "def main(args):\n"
    "    total = 0\n"
    "    for a in args:\n"
    '        print "arg", a\n'
    "        total += int(a)\n"
    "    if total < 10:\n"
    "        raise ValueError, 'small'\n"
    "    return total\n"
    "\n"
    "print main([1, 2, 3])\n"
)
NOT_PARSING = (
    "def main(args:\n"
    "    total = 0\n"
    "    for a in args\n"
    "        total += int(a)\n"
    "    if total < 10:\n"
    "        return 0\n"
    "    return total\n"
)


@pytest.mark.parametrize(
    ("name", "text", "compiles"),
    [
        ("mixed tabs and spaces", MIXED, True),
        ("a TabError", TAB_ERROR, False),
        ("Python 2", PYTHON_2, False),
        ("does not parse", NOT_PARSING, False),
    ],
)
def test_fixes_keep_indentation_and_never_add_an_error(
    name: str, text: str, compiles: bool
) -> None:
    lines = text.rstrip("\n").split("\n")
    assert python_compiles(text) is compiles, name
    backend = StandIn(_suggest_for(lines))
    _job, res = _flag(text, backend, budget=1.0, options=RegenOptions(regenerate_all=True))
    assert res.skipped is None and res.flags, name
    assert backend.generated > 0
    before = FixChecker(lines, "python").errors
    with_fix = [f for f in res.flags if f.fix is not None]
    assert with_fix, res.no_fix
    for f in with_fix:
        assert f.fix is not None
        assert _indent(f.fix) == _indent(lines[f.line])  # the exact characters: tabs stay tabs
        assert f.fix.strip() == f.suggestion and f.fix.strip() != lines[f.line].strip()
        fixed = _applied(lines, f.line, f.fix)
        assert FixChecker(fixed.split("\n"), "python").errors <= before, (name, f)
        if compiles:
            assert python_compiles(fixed), (name, f)
    # The broken suggestions are shown without a fix, and counted with their reason.
    broken = [f for f in res.flags if f.suggestion in BROKEN.values()]
    assert all(f.fix is None for f in broken)
    if broken:
        assert sum(res.no_fix.values()) >= len(broken)
        assert set(res.no_fix) <= {
            "the file would not parse",
            "the file would not compile",
            "the replacement is the line itself (whitespace aside)",
            "the line is in a part of the file that does not parse",
        }
    if text is NOT_PARSING:
        # tree-sitter reads nothing inside the unclosed parenthesis (one ERROR node over the
        # whole function, where ``return (`` changes no count): only the repair is offered.
        assert [f.fix for f in with_fix] == ["def main(args):"]


# --- the server's log says why -----------------------------------------------------------------
def test_the_log_says_once_why_a_document_is_not_flagged(caplog: pytest.LogCaptureFixture) -> None:
    from tactful.config import apply_settings
    from tactful.lsp.server import create_server

    server = create_server()
    new, errors, _unknown = apply_settings(
        server.settings, {"feedback": {"enable": False}, "cdhf": {"enable": False}}
    )
    assert not errors
    server.settings = new
    flags = server.flags
    assert flags is not None
    model = FlagModel()

    async def scenario() -> None:
        def job_for(uri: str, text: str, version: int) -> FlagJob:
            doc = server.documents.open(uri, text, "python", version)
            if version == 1:
                flags.document_event("open", uri)
            return flags._new_job(uri, doc, flags.docs[uri], threading.Event(), model)

        with caplog.at_level(logging.DEBUG, logger="tactful.lsp.flags"):
            minified = "file:///tmp/bad-input/min.js"
            job_for(minified, "var a=1;" * 5000, 1)
            job_for(minified, "var a=2;" * 5001, 2)  # the same reason, other numbers
            empty = "file:///tmp/bad-input/empty.py"
            job_for(empty, "\n", 1)
            long = "file:///tmp/bad-input/long.py"
            job_for(long, "x = 1\n" * 5001, 1)
            job_for(long, "x = 1\n" * 100, 2)  # flagged again: no reason
            job_for(long, "x = 1\n" * 5002, 3)  # too long again: said again
        for uri in (minified, empty, long):
            flags.document_event("close", uri)

    asyncio.run(scenario())
    said = [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "tactful.lsp.flags" and "not flagging" in r.getMessage()
    ]
    warnings = [m for lvl, m in said if lvl == logging.WARNING]
    assert warnings == [
        "flags: not flagging file:///tmp/bad-input/min.js: minified or generated text (most of"
        " it is in lines over 400 characters)",
        "flags: not flagging file:///tmp/bad-input/long.py: 5001 lines is more than"
        " flags.maxLines (5000)",
        "flags: not flagging file:///tmp/bad-input/long.py: 5002 lines is more than"
        " flags.maxLines (5000)",
    ]
    assert (
        logging.INFO,
        "flags: not flagging file:///tmp/bad-input/empty.py: empty document",
    ) in said
    assert [lvl for lvl, m in said if "min.js" in m] == [logging.WARNING, logging.DEBUG]
