"""Name-guided decoding (``context.guidedNames``): while the model writes an identifier, a token
that would spell a name the repository context or the file holds gets a logit bonus.

After Agrawal et al. 2023 ("Guiding Language Models of Code with Global Context using
Monitors"), kept cheap and conservative for a small model: the guide acts only at a step where
the model's own best token continues an identifier into a name that exists nowhere in the
context or the file (and is not a keyword or builtin). Then the tokens that continue the
identifier into a known name get ``BONUS`` added (``OWNER_BONUS`` after ``owner.``), so one the model already finds nearly as
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
from collections.abc import Callable, Iterable, Mapping, Sequence

#: Logit bonus (added to log-probabilities) for a token that continues the identifier into a
#: known name; after ``owner.`` where the preamble shows the owner's members, ``OWNER_BONUS``.
BONUS = 3.0
OWNER_BONUS = 6.0
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

    def __init__(self, names: Iterable[str], members: dict[str, Names] | None = None) -> None:
        self.sorted = sorted(set(names))
        self._set = frozenset(self.sorted)
        #: For the preamble's names: its modules' and classes' members (``owners``).
        self.members: dict[str, Names] = members or {}

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


def in_comment_or_string(line: str) -> bool:
    """Whether the end of ``line`` is, by a rough count, inside a comment or a string literal
    (an odd number of quotes of one kind, or a ``#`` outside quotes)."""
    quote = ""
    for ch in line:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return True
    return bool(quote)


def writing(line: str) -> str | None:
    """The identifier ``line`` (the text before the next token on its line) ends in: the part
    written so far ("" where one may start); None where the next token cannot continue or start
    an identifier (inside a number, a string or a comment)."""
    if in_comment_or_string(line):
        return None
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


#: A tokenizer's own spelling of a text: its tokens' ids and texts.
Spell = Callable[[str], Sequence[tuple[int, str]]]


def next_in_spelling(spell: Spell, name: str, partial: str, lead: str) -> int | None:
    """The token that follows ``partial`` in the tokenizer's own spelling of ``name`` (with
    ``lead`` before it where ``partial`` is empty; with or without a leading space otherwise),
    or None where ``partial`` does not end on a token boundary of that spelling. The model
    continues a name it is shown in its usual spelling far more readily than in another split."""
    for text in (lead + name,) if not partial else (" " + name, name):
        acc = ""
        for tid, piece in spell(text):
            if acc.lstrip(" ") == partial and (partial or acc == ""):
                return tid
            acc += piece
            if len(acc.lstrip(" ")) > len(partial):
                break
    return None


def candidates(
    names: Names, partial: str, lead: str, by_text: Mapping[str, Sequence[int]], spell: Spell
) -> list[int]:
    """Ids of the tokens that continue ``partial`` into a known name: the next token of the
    name's own spelling where ``partial`` ends on one of its token boundaries, else every token
    that spells a prefix of the name's rest; ``lead`` (" " or "") starts each token where
    ``partial`` is empty, as the model's best token does."""
    ids: set[int] = set()
    lead = "" if partial else lead
    for name in names.starting(partial):
        tid = next_in_spelling(spell, name, partial, lead)
        if tid is not None:
            ids.add(tid)
            continue
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


_HEADER = re.compile(r"(?:<\|?file_sep\|?>|^(?:#|//) (?:From|Compare this snippet from) )(\S+?):?$")
_TOP = re.compile(r"(?:async\s+)?def\s+(\w+)|class\s+(\w+)|(\w+)\s*(?::[^=]*)?=(?!=)")
_MEMBER = re.compile(
    r"\s+(?:(?:async\s+)?def\s+(\w+)|(\w+)\s*(?::[^=]*)?=(?!=)|self\.(\w+)\s*[:=])"
)
_SELF_ATTR = re.compile(r"self\.(\w+)\s*(?::[^=]*)?=(?!=)")


def _first(m: re.Match[str] | None) -> str | None:
    return None if m is None else next((g for g in m.groups() if g), None)


def owners(preamble: str) -> dict[str, set[str]]:
    """What the preamble shows of each module and class: a file's module name (``ledger`` for
    ``shop/ledger.py``) -> its top-level names, a class -> its members (methods, class
    attributes, ``self.x =`` assignments). Comment-format lines are read without their ``#``."""
    out: dict[str, set[str]] = {}
    module: set[str] | None = None
    cls: set[str] | None = None
    for raw in preamble.splitlines():
        head = _HEADER.search(raw)
        if head is not None:
            folder, _, file = head.group(1).rpartition("/")
            stem = file.split(".", 1)[0]
            module = out.setdefault(
                folder.rsplit("/", 1)[-1] if stem == "__init__" else stem, set()
            )
            cls = None
            continue
        line = raw[2:] if raw.startswith(("# ", "//")) and module is not None else raw
        if not line.strip():
            continue
        if not line[0].isspace():
            name = _first(_TOP.match(line))
            cls = out.setdefault(name, set()) if line.startswith("class ") and name else None
            if name and module is not None:
                module.add(name)
        elif cls is not None:
            member = _first(_MEMBER.match(line)) or _first(_SELF_ATTR.search(line))
            if member:
                cls.add(member)
    return {k: v for k, v in out.items() if v}


_OWNER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\.$")


class Guide:
    """The guide of one request: the preamble's names, the file's (read on first use), and the
    token-text index; ``bonus_ids`` says which tokens to boost at a step."""

    def __init__(
        self,
        context: Names,
        file_text: str,
        by_text: Mapping[str, Sequence[int]],
        spell: Spell,
    ) -> None:
        self.context = context
        self.spell = spell
        self._file_text = file_text
        self._names: Names | None = None
        self.by_text = by_text
        self.acted = 0

    def names(self) -> Names:
        if self._names is None:
            own = identifiers(self._file_text)
            self._names = Names(set(self.context.sorted) | own, self.context.members)
        return self._names

    def bonus_ids(self, line: str, best_piece: str) -> tuple[list[int], float]:
        """The tokens to boost at a step whose best token is ``best_piece``, after ``line`` (the
        text of the line so far), and the bonus; [] to leave the step alone. After ``owner.``, where the
        preamble shows module or class ``owner``, the names are its members (a builtin name is
        no exception there); elsewhere every name of the preamble and the file."""
        partial = writing(line)
        if partial is None:
            return [], 0.0
        best_name = piece_name(partial, best_piece)
        if best_name is None:
            return [], 0.0
        owner = _OWNER.search(line[: len(line) - len(partial)])
        members = self.context.members.get(owner.group(1)) if owner is not None else None
        if members is not None:
            if partial in members or members.any_starting(best_name):
                return [], 0.0
            if not members.any_starting(partial):
                return [], 0.0
            names, bonus = members, OWNER_BONUS
        else:
            names, bonus = self.names(), BONUS
            if not should_guide(names, partial, best_name):
                return [], 0.0
        self.acted += 1
        lead = " " if best_piece.startswith(" ") else ""
        return candidates(names, partial, lead, self.by_text, self.spell), bonus


class GuideCache:
    """The preambles' name sets, the recent ones kept (a preamble changes only when the chosen
    context does)."""

    KEEP = 8

    #: Spellings kept (names of recent contexts).
    KEEP_SPELLINGS = 20000

    def __init__(self) -> None:
        self._recent: OrderedDict[str, Names] = OrderedDict()
        self._spellings: dict[str, tuple[tuple[int, str], ...]] = {}

    def spelling(
        self, text: str, encode: Callable[[str], list[int]], piece: Callable[[int], str]
    ) -> tuple[tuple[int, str], ...]:
        """The tokenizer's spelling of ``text`` (kept)."""
        got = self._spellings.get(text)
        if got is None:
            if len(self._spellings) >= self.KEEP_SPELLINGS:
                self._spellings.clear()
            got = tuple((i, piece(i)) for i in encode(text))
            self._spellings[text] = got
        return got

    def names(self, preamble: str) -> Names:
        got = self._recent.get(preamble)
        if got is None:
            members = {k: Names(v) for k, v in owners(preamble).items()}
            got = Names(identifiers(preamble), members)
            self._recent[preamble] = got
            while len(self._recent) > self.KEEP:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(preamble)
        return got
