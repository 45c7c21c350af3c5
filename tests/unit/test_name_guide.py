"""Name-guided decoding's plain parts (``tactful.backend.names``): which identifier a line is
writing, which names the preamble shows of each module and class, when a step is steered and
towards which tokens."""

from __future__ import annotations

from tactful.backend import names as nm

PREAMBLE = (
    "<repo_name>shop<file_sep>shop/ledger.py\n"
    "def tally_receipts_by_vendor(receipts):\n"
    '    """Sum of receipts per vendor."""\n'
    "<file_sep>shop/inv.py\n"
    "class Inventory:\n"
    "    size: int = 3\n"
    "    def most_valuable_items(self, threshold):\n"
    "        self.cache_map = {}\n"
    "LIMIT = 5\n"
    "<file_sep>shop/tools/__init__.py\n"
    "def normalise_vendor_code(code):\n"
    "<file_sep>shop/report.py\n"
)

# A toy vocabulary: the spelling of a text is greedy longest-match over it (else one character,
# id 1000 + its code).
VOCAB = [
    "most",
    " most",
    "_",
    "valuable",
    "_items",
    "val",
    "v",
    "tally",
    " tally",
    "_receipts",
    "_by",
    "_vendor",
    "normal",
    "ise",
    "norm",
    "no",
    "format",
    " format",
    "(",
    "x",
    " x",
]
IDS = {t: i for i, t in enumerate(VOCAB)}
BY_TEXT = {t: [i] for t, i in IDS.items()}


def spell(text: str) -> list[tuple[int, str]]:
    out = []
    while text:
        piece = max((t for t in VOCAB if text.startswith(t)), key=len, default=text[0])
        out.append((IDS[piece] if piece in IDS else 1000 + ord(piece), piece))
        text = text[len(piece) :]
    return out


def guide(file_text: str = "") -> nm.Guide:
    return nm.Guide(nm.GuideCache().names(PREAMBLE), file_text, BY_TEXT, spell)


def test_identifiers_skip_keywords_builtins_and_single_letters() -> None:
    assert nm.identifiers("def f(self, x): return len(tally_receipts) or None") == {
        "tally_receipts"
    }


def test_writing_finds_the_identifier_being_written() -> None:
    assert nm.writing("    x = ledger.tal") == "tal"
    assert nm.writing("    x = ledger.") == ""
    assert nm.writing("    x = ") == ""
    assert nm.writing("    x = 12") is None
    assert nm.writing("    x = 'ab") is None
    assert nm.writing('    x = "') is None
    assert nm.writing('    x = "a b') is None  # inside a string
    assert nm.writing("    # Dispatch ho") is None  # inside a comment
    assert nm.writing("    x = f('#', ab") == "ab"  # a quoted hash is no comment


def test_piece_name_only_starts_an_identifier_with_a_space() -> None:
    assert nm.piece_name("", " most") == "most"
    assert nm.piece_name("most", "_") == "most_"
    assert nm.piece_name("most", " x") is None
    assert nm.piece_name("", "(") is None
    assert nm.piece_name("", "12") is None


def test_owners_reads_modules_classes_and_packages() -> None:
    got = nm.owners(PREAMBLE)
    assert got["ledger"] == {"tally_receipts_by_vendor"}
    assert got["inv"] == {"Inventory", "LIMIT"}
    assert got["Inventory"] == {"size", "most_valuable_items", "cache_map"}
    assert got["tools"] == {"normalise_vendor_code"}


def test_owners_reads_the_comments_format() -> None:
    pre = "# From shop/ledger.py:\n# def tally_receipts_by_vendor(receipts):\n# Path: shop/r.py\n"
    assert nm.owners(pre)["ledger"] == {"tally_receipts_by_vendor"}


def test_next_in_spelling_follows_the_tokenizers_split() -> None:
    assert nm.next_in_spelling(spell, "most_valuable_items", "", " ") == IDS[" most"]
    assert nm.next_in_spelling(spell, "most_valuable_items", "most", "") == IDS["_"]
    assert nm.next_in_spelling(spell, "most_valuable_items", "most_", "") == IDS["valuable"]
    # "mo" is no boundary of the name's spelling
    assert nm.next_in_spelling(spell, "most_valuable_items", "mo", "") is None


def test_after_a_known_owner_an_unknown_member_is_steered_to_its_members() -> None:
    ids, bonus = guide().bonus_ids("    code = tools.", "format")
    assert ids == [IDS["normal"]] and bonus == nm.OWNER_BONUS
    # a builtin's name is no exception after a known owner
    ids, _ = guide().bonus_ids("    n = ledger.", "format")
    assert ids == [IDS["tally"]]


def test_a_step_that_already_fits_is_left_alone() -> None:
    assert guide().bonus_ids("    x = ledger.", "tally") == ([], 0.0)
    assert guide().bonus_ids("    x = ledger.tally", "_receipts") == ([], 0.0)
    # not an identifier, inside a string, a keyword or builtin written bare
    assert guide().bonus_ids("    x = ledger.", "(") == ([], 0.0)
    assert guide().bonus_ids("    x = '", "format") == ([], 0.0)
    assert guide().bonus_ids("    x = ", " format") == ([], 0.0)


def test_a_bare_unknown_name_is_steered_to_the_contexts_and_files_names() -> None:
    ids, bonus = guide().bonus_ids("    x = ", " xyzzy")
    assert bonus == nm.BONUS
    assert IDS[" tally"] in ids and IDS[" most"] in ids and IDS["tally"] not in ids
    # the file's own names count too: a name the file defines is left alone
    assert guide("def xyzzy(): pass\n").bonus_ids("    x = ", " xyzzy") == ([], 0.0)


def test_a_whole_known_name_being_written_is_not_extended() -> None:
    assert guide().bonus_ids("    x = ledger.tally_receipts_by_vendor", "x") == ([], 0.0)


def test_requests_ask_for_the_guide_only_with_context_and_the_setting() -> None:
    from tactful.completion.context import build_context
    from tactful.completion.request import make_generate_request
    from tactful.config import Settings, apply_settings

    off = Settings()
    on, errors, _ = apply_settings(off, {"context": {"guidedNames": True}})
    assert errors == [] and on.context.guided_names and not off.context.guided_names
    ctx = build_context("x = LIM", 7, "python")
    assert not make_generate_request(ctx, on, None, fim=False).guide_names
    ctx.preamble = PREAMBLE
    assert make_generate_request(ctx, on, None, fim=False).guide_names
    assert not make_generate_request(ctx, off, None, fim=False).guide_names
