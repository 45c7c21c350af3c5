"""Name-guided decoding (``context.guidedNames``): while the model writes an identifier, a token
that would spell a name the repository context or the file holds gets a logit bonus.

After Agrawal et al. 2023 ("Guiding Language Models of Code with Global Context using
Monitors"), kept cheap and conservative for a small model: the guide acts only at a step where
the model's own best token continues an identifier into a name that exists nowhere in the
context or the file (and is not a keyword or builtin). Then the tokens that continue the
identifier into a known name get ``BONUS`` added, so one the model already finds nearly as
likely wins. Anywhere else (the best token fits a known name, is not an identifier, or the
identifier written so far is a known name itself) the logits are left as they are, so decoding
stays greedy and deterministic, and a request without repository context is never touched.

The names are the identifiers of the preamble (sorted once per preamble, see ``guide_for``) and
of the prompt's file text (read only when the guide first acts in a request). Candidates are
found without touching the vocabulary: for each known name that starts with the identifier
written so far, each prefix of its rest is looked up in the token-text index
(``HealIndex.by_text``), with a leading space where the model's best token has one."""

from __future__ import annotations

import bisect
import builtins
import keyword
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

#: Logit bonus for a token that continues the identifier into a known name.
BONUS = 3.0
#: Most names (those starting with the identifier written so far) looked at per step.
MAX_NAMES = 400
#: Shortest name guided to.
MIN_LEN = 2

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TAIL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_PIECE = re.compile(r" ?[A-Za-z0-9_]+")
#: Never steered away from: the model writing one of these is not writing a repository's name.
COMMON = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
COMMON |= {"self", "cls", "args", "kwargs"}


def identifiers(text: str) -> set[str]:
    """The identifiers of ``text`` worth guiding to (at least ``MIN_LEN`` characters, not a
    keyword or builtin)."""
    return {n for n in _IDENT.findall(text) if len(n) >= MIN_LEN and n not in COMMON}


class Names:
    """A sorted set of names, with the names that start with a given text found by bisection."""

    def __init__(self, names: Iterable[str]) -> None:
        self.sorted = sorted(set(names))
        self._set = frozenset(self.sorted)

    def __contains__(self, name: object) -> bool:
        return name in self._set

    def __len__(self) -> int:
        return len(self.sorted)

    def starting(self, text: str) -> list[str]:
        """The names that start with ``text`` (at most ``MAX_NAMES``, in order)."""
        lo = bisect.bisect_left(self.sorted, text)
        hi = bisect.bisect_left(self.sorted, text + "\U0010ffff", lo)
        return self.sorted[lo : min(hi, lo + MAX_NAMES)]

    def any_starting(self, text: str) -> bool:
        lo = bisect.bisect_left(self.sorted, text)
        return lo < len(self.sorted) and self.sorted[lo].startswith(text)


def writing(line: str) -> str | None:
    """The identifier ``line`` (the text before the next token on its line) ends in: the part
    written so far ("" where one may start); None where the next token cannot continue or start
    an identifier (inside a number, right after a quote)."""
    tail = _TAIL.search(line)
    before = line if tail is None else line[: tail.start()]
    if before and (before[-1].isdigit() or before[-1] in "'\""):
        return None
    return "" if tail is None else tail.group()


def piece_name(partial: str, piece: str) -> str | None:
    """The identifier text the token ``piece`` writes after ``partial`` (the part written so
    far): ``partial`` extended by it, or None when the piece is not identifier text there (a
    leading space only starts a new identifier)."""
    if _PIECE.fullmatch(piece) is None:
        return None
    if piece.startswith(" "):
        if partial:
            return None
        piece = piece[1:]
    name = partial + piece
    return name if not name[0].isdigit() else None


def candidates(
    names: Names, partial: str, lead: str, by_text: Mapping[str, Sequence[int]]
) -> list[int]:
    """Ids of the tokens that continue ``partial`` into (a prefix of) a known name; ``lead``
    (" " or "") starts each token where ``partial`` is empty, as the model's best token does."""
    ids: set[int] = set()
    lead = "" if partial else lead
    for name in names.starting(partial):
        rest = name[len(partial) :]
        for k in range(1, len(rest) + 1):
            ids.update(by_text.get(lead + rest[:k], ()))
    return sorted(ids)


def should_guide(names: Names, partial: str, best_name: str | None) -> bool:
    """Whether the step whose best token writes ``best_name`` (after ``partial``) is steered:
    the model is writing an identifier that no known name starts with, that is not a keyword or
    builtin, and ``partial`` is not already a whole known name."""
    if best_name is None or partial in names:
        return False
    head = _IDENT.match(best_name)
    if head is None or head.group() in COMMON:
        return False
    return not names.any_starting(best_name) and names.any_starting(partial)


class Guide:
    """The guide of one request: the preamble's names, the file's (read on first use), and the
    token-text index; ``bonus_ids`` says which tokens to boost at a step."""

    def __init__(self, context: Names, file_text: str, by_text: Mapping[str, Sequence[int]]):
        self.context = context
        self._file_text = file_text
        self._names: Names | None = None
        self.by_text = by_text
        self.acted = 0

    def names(self) -> Names:
        if self._names is None:
            own = identifiers(self._file_text)
            self._names = Names(set(self.context.sorted) | own)
        return self._names

    def bonus_ids(self, line: str, best_piece: str) -> list[int]:
        """The tokens to boost at a step whose best token is ``best_piece``, after ``line`` (the
        text of the line so far); [] to leave the step alone."""
        partial = writing(line)
        if partial is None:
            return []
        best_name = piece_name(partial, best_piece)
        if best_name is None:
            return []
        names = self.names()
        if not should_guide(names, partial, best_name):
            return []
        self.acted += 1
        lead = " " if best_piece.startswith(" ") else ""
        return candidates(names, partial, lead, self.by_text)


class GuideCache:
    """The preambles' name sets, the recent ones kept (a preamble changes only when the chosen
    context does)."""

    KEEP = 8

    def __init__(self) -> None:
        self._recent: OrderedDict[str, Names] = OrderedDict()

    def names(self, preamble: str) -> Names:
        got = self._recent.get(preamble)
        if got is None:
            got = Names(identifiers(preamble))
            self._recent[preamble] = got
            while len(self._recent) > self.KEEP:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(preamble)
        return got
