"""Features of a suggestion request, computed from plain data at request and show time.

This module owns the feature vocabulary of the CDHF cascade (``STAGE1_FEATURES``,
``STAGE2_FEATURES``) and the functions that compute it:

* :func:`context_features` - the document around the cursor (last characters, whitespace
  after the cursor, line length, document length, cursor offset and its fraction, language,
  the cursor's class from :func:`tactful.cursor.cursor_class`, the completion path's own);
* :class:`Telemetry` - the session's history (time since the last shown, accepted and rejected
  suggestion, typing speed, recent acceptance rate in the session and the file);
* :func:`suggestion_features` - the generated text (length, lines, tokens, mean and min
  log-prob, repetition, syntactic validity, duplicate of the text after the cursor).

The same code runs in the server (``tactful.feedback.tracker``) and in the CUPS importer
(``tactful.feedback.store``), so a model trained on imported data sees the features the server
computes. Missing values are ``None`` (NaN for the trees). Categorical values are encoded with
the fixed vocabularies below, so codes stay stable across versions. No torch, no pygls.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from tactful import syntax
from tactful.cursor import CURSOR_CLASSES, LINE_COMMENT, cursor_class, prefix_window

#: The version of the features' definitions, recorded with every logged request and in every
#: trained model: a model is used, and a log trained on, only with the version that computed
#: them. 2 (issue 26): ``context_class`` is the completion path's cursor class.
FEATURES_VERSION = 2

#: Character classes of the last (and last non-whitespace) character before the cursor.
CHAR_CLASSES: tuple[str, ...] = (
    "none",
    "newline",
    "space",
    "alpha",
    "digit",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ":",
    ".",
    ",",
    "=",
    "quote",
    "#",
    "operator",
    "other",
)
#: Language ids with their own code; everything else is "other".
LANGUAGES: tuple[str, ...] = (
    "python",
    "javascript",
    "typescript",
    "javascriptreact",
    "typescriptreact",
    "c",
    "cpp",
    "java",
    "go",
    "rust",
    "other",
)
#: Syntactic class of the cursor position (:func:`tactful.cursor.cursor_class`); the codes are
#: the same as in version 1, whose rules differed.
CONTEXT_CLASSES: tuple[str, ...] = (*CURSOR_CLASSES, "other")

CONTEXT_FEATURES: tuple[str, ...] = (
    "language",
    "context_class",
    "last_char",
    "last_nonws_char",
    "ws_after_cursor",
    "line_len",
    "line_len_stripped",
    "indent",
    "doc_len",
    "offset",
    "offset_frac",
)
TELEMETRY_FEATURES: tuple[str, ...] = (
    "since_shown",
    "since_accepted",
    "since_rejected",
    "since_request",
    "typing_speed",
    "session_accept_rate",
    "file_accept_rate",
    "session_decisions",
    "prev_outcome",
)
SUGGESTION_FEATURES: tuple[str, ...] = (
    "sugg_chars",
    "sugg_lines",
    "sugg_tokens",
    "mean_logprob",
    "min_logprob",
    "repetition",
    "syntax_ok",
    "dup_suffix",
    "comment_share",
    "repeat_rejected",
    "repeat_accepted",
)
#: Stage 1 decides before generation: context and telemetry only.
STAGE1_FEATURES: tuple[str, ...] = CONTEXT_FEATURES + TELEMETRY_FEATURES
#: Stage 2 decides with the suggestion in hand.
STAGE2_FEATURES: tuple[str, ...] = STAGE1_FEATURES + SUGGESTION_FEATURES
#: Features that are category codes (LightGBM treats them as categorical).
CATEGORICAL: frozenset[str] = frozenset(
    {"language", "context_class", "last_char", "last_nonws_char"}
)

_OPERATORS = set("+-*/%<>!&|^~@?")
_QUOTES = set("\"'`")


def char_class(ch: str | None) -> str:
    """Class of one character (see ``CHAR_CLASSES``)."""
    if not ch:
        return "none"
    if ch in "\r\n":
        return "newline"
    if ch.isspace():
        return "space"
    if ch.isalpha() or ch == "_":
        return "alpha"
    if ch.isdigit():
        return "digit"
    if ch in "()[]{}:.,=#":
        return ch
    if ch in _QUOTES:
        return "quote"
    if ch in _OPERATORS:
        return "operator"
    return "other"


def code(vocab: Sequence[str], value: str) -> int:
    """Stable integer code of ``value`` in ``vocab`` (the last entry for unknown values)."""
    try:
        return vocab.index(value)
    except ValueError:
        return len(vocab) - 1


def language_code(language_id: str) -> int:
    return code(LANGUAGES, language_id if language_id in LANGUAGES else "other")


# --- tree-sitter ---------------------------------------------------------------------------------

# Grammars and parsers come from tactful.syntax (one table of languages for the project).
_language = syntax.language
_parser = syntax.parser_for


@lru_cache(maxsize=16)
def _error_query(language_id: str) -> Any:
    lang = _language(language_id)
    if lang is None:
        return None
    import tree_sitter

    return tree_sitter.Query(lang, "(ERROR) @e")


# --- context -----------------------------------------------------------------------------------


def context_features(
    prefix: str,
    suffix: str | None,
    language_id: str,
    doc_len: int | None = None,
    klass: str | None = None,
) -> dict[str, float | None]:
    """Features of the document around the cursor.

    ``prefix`` is the text before the cursor; ``suffix`` the text after it, or None when it is
    unknown (imported data that logged only the prefix). ``doc_len`` defaults to
    ``len(prefix) + len(suffix)``; ``klass`` to :func:`tactful.cursor.cursor_class` (an unknown suffix counts as nothing after
    the cursor).
    """
    offset = len(prefix)
    if doc_len is None:
        doc_len = offset + len(suffix or "")
    line = prefix[prefix.rfind("\n") + 1 :]
    stripped = line.rstrip()
    nonws = prefix.rstrip()
    if suffix is None:
        ws_after: float | None = 1.0 if doc_len <= offset else None
    else:
        ws_after = 1.0 if (not suffix or suffix[0].isspace()) else 0.0
    if klass is None:
        klass = cursor_class(prefix, suffix, language_id)
    return {
        "language": float(language_code(language_id)),
        "context_class": float(code(CONTEXT_CLASSES, klass)),
        "last_char": float(code(CHAR_CLASSES, char_class(prefix[-1:] or None))),
        "last_nonws_char": float(code(CHAR_CLASSES, char_class(nonws[-1:] or None))),
        "ws_after_cursor": ws_after,
        "line_len": float(len(line)),
        "line_len_stripped": float(len(stripped.strip())),
        "indent": float(len(line) - len(line.lstrip())),
        "doc_len": float(doc_len),
        "offset": float(offset),
        "offset_frac": float(offset / doc_len) if doc_len > 0 else 1.0,
    }


# --- telemetry ---------------------------------------------------------------------------------


@dataclass
class Telemetry:
    """A session's interaction history, turned into features at request time.

    Feed it events in time order: ``on_request`` (which returns the features as they are at
    that moment), ``on_shown`` and ``on_outcome``. Times are seconds (any epoch).
    """

    #: Acceptance rates are over the last this-many decisions.
    window: int = 20
    last_shown: float | None = None
    last_accepted: float | None = None
    last_rejected: float | None = None
    decisions: int = 0
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=20))
    recent_by_file: dict[str, deque[int]] = field(default_factory=dict)
    last_request: dict[str, tuple[float, int]] = field(default_factory=dict)
    #: Outcomes per suggestion text (key: a hash of the stripped text): [rejected, accepted].
    by_text: dict[str, list[int]] = field(default_factory=dict)

    @staticmethod
    def text_key(text: str) -> str:
        import hashlib

        return hashlib.sha1(text.strip().encode("utf-8", "surrogatepass")).hexdigest()

    def history(self, text: str) -> tuple[int, int]:
        """How often the same suggestion text was rejected and accepted before."""
        r = self.by_text.get(self.text_key(text))
        return (r[0], r[1]) if r else (0, 0)

    def features(self, t: float, uri: str, doc_len: int) -> dict[str, float | None]:
        """The telemetry features at time ``t`` for a request in ``uri`` (no state change)."""

        def since(x: float | None) -> float | None:
            return None if x is None else max(0.0, t - x)

        prev = self.last_request.get(uri)
        speed: float | None = None
        since_req: float | None = None
        if prev is not None:
            since_req = max(0.0, t - prev[0])
            # Document growth between two requests, per second (accepted insertions included).
            speed = abs(doc_len - prev[1]) / max(since_req, 0.05)
            speed = min(speed, 200.0)
        file_recent = self.recent_by_file.get(uri)
        return {
            "since_shown": since(self.last_shown),
            "since_accepted": since(self.last_accepted),
            "since_rejected": since(self.last_rejected),
            "since_request": since_req,
            "typing_speed": speed,
            "session_accept_rate": (sum(self.recent) / len(self.recent)) if self.recent else None,
            "file_accept_rate": (sum(file_recent) / len(file_recent)) if file_recent else None,
            "session_decisions": float(self.decisions),
            "prev_outcome": float(self.recent[-1]) if self.recent else None,
        }

    def on_request(self, t: float, uri: str, doc_len: int) -> dict[str, float | None]:
        """Features for a request, then remember it (for typing speed)."""
        out = self.features(t, uri, doc_len)
        self.last_request[uri] = (t, doc_len)
        return out

    def on_shown(self, t: float, uri: str) -> None:
        self.last_shown = t

    def on_outcome(self, t: float, uri: str, accepted: bool, text: str | None = None) -> None:
        self.decisions += 1
        if text is not None:
            rec = self.by_text.setdefault(self.text_key(text), [0, 0])
            rec[1 if accepted else 0] += 1
            if len(self.by_text) > 5000:  # bound memory in long sessions
                self.by_text.pop(next(iter(self.by_text)))
        if accepted:
            self.last_accepted = t
        else:
            self.last_rejected = t
        if self.recent.maxlen != self.window:
            self.recent = deque(self.recent, maxlen=self.window)
        self.recent.append(1 if accepted else 0)
        self.recent_by_file.setdefault(uri, deque(maxlen=self.window)).append(1 if accepted else 0)


# --- suggestion --------------------------------------------------------------------------------

_WORD = re.compile(r"\w+|[^\w\s]+")


def repetition(text: str) -> float:
    """How repetitive a suggestion is, 0..1: the share of repeated non-blank lines for
    multi-line text, else the share of repeated word tokens."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) >= 2:
        return 1.0 - len(set(lines)) / len(lines)
    words = _WORD.findall(text)
    if len(words) < 2:
        return 0.0
    return 1.0 - len(set(words)) / len(words)


def syntax_ok(prefix: str, suggestion: str, language_id: str) -> float | None:
    """1.0 when the suggestion appended to the prefix parses without an ERROR node inside the
    suggestion's span, 0.0 otherwise; None without a grammar for the language."""
    parser = _parser(language_id)
    query = _error_query(language_id)
    if parser is None or query is None or not suggestion.strip():
        return None
    head = prefix_window(prefix).encode("utf-8", "surrogatepass")
    body = suggestion.encode("utf-8", "surrogatepass")
    try:
        import tree_sitter

        tree = parser.parse(head + body)
        cursor = tree_sitter.QueryCursor(query)
        cursor.set_byte_range(len(head), len(head) + len(body))
        caps = cursor.captures(tree.root_node)
        errors = [n for n in caps.get("e", []) if n.end_byte > len(head)]
        return 0.0 if errors else 1.0
    except Exception:
        return None


def suggestion_features(
    suggestion: str,
    prefix: str,
    suffix: str | None,
    language_id: str,
    token_logprobs: Sequence[float] | None = None,
    n_tokens: int | None = None,
    mean_logprob: float | None = None,
    history: tuple[int, int] | None = None,
) -> dict[str, float | None]:
    """Features of a generated suggestion (``token_logprobs`` from our own model, or the
    ``n_tokens`` / ``mean_logprob`` another tool logged). ``history`` is how often the same
    text was rejected and accepted earlier in the session (:meth:`Telemetry.history`)."""
    lps = [float(x) for x in token_logprobs or () if x is not None and math.isfinite(float(x))]
    if n_tokens is None and token_logprobs is not None:
        n_tokens = len(token_logprobs)
    if mean_logprob is None and lps:
        mean_logprob = sum(lps) / len(lps)
    dup: float | None = None
    if suffix is not None:
        nxt = suffix.lstrip("\n").split("\n", 1)[0].strip()
        first = suggestion.strip().split("\n", 1)[0].strip()
        dup = 1.0 if (first and nxt and (first == nxt or nxt.startswith(first))) else 0.0
    return {
        "sugg_chars": float(len(suggestion)),
        "sugg_lines": float(suggestion.count("\n") + 1),
        "sugg_tokens": None if n_tokens is None else float(n_tokens),
        "mean_logprob": None
        if mean_logprob is None or not math.isfinite(mean_logprob)
        else float(mean_logprob),
        "min_logprob": min(lps) if lps else None,
        "repetition": repetition(suggestion),
        "syntax_ok": syntax_ok(prefix, suggestion, language_id),
        "dup_suffix": dup,
        "comment_share": comment_share(suggestion, language_id),
        "repeat_rejected": None if history is None else float(history[0]),
        "repeat_accepted": None if history is None else float(history[1]),
    }


def comment_share(text: str, language_id: str) -> float:
    """Share of the suggestion's non-blank lines that are comments (by the line marker)."""
    marker = LINE_COMMENT.get(language_id, "#" if language_id in ("none", "other") else "//")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return 0.0
    return sum(1 for ln in lines if ln.startswith(marker)) / len(lines)


def vector(features: Mapping[str, Any], names: Iterable[str]) -> list[float]:
    """Features in ``names`` order as floats (NaN for missing or invalid values)."""
    out: list[float] = []
    for n in names:
        v = features.get(n)
        try:
            f = float(v) if v is not None else math.nan
        except (TypeError, ValueError):
            f = math.nan
        out.append(f if math.isfinite(f) else math.nan)
    return out
