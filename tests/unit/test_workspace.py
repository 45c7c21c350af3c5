"""The workspace index and the choice of repository context (no model, no server)."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from tactful.workspace import files as wf
from tactful.workspace.index import extract
from tactful.workspace.select import COMMENTS, QWEN, STARCODER2, detect_format
from tactful.workspace.service import Options, WorkspaceService

MODELS = '''"""Data models."""

from dataclasses import dataclass

LIMIT = 10


@dataclass
class Inventory:
    """Items on hand."""

    owner: str

    def most_expensive_items(self, threshold: float) -> list[str]:
        """Items priced over threshold."""
        return [i for i in self.items if i.price > threshold]

    def restock(self, name: str, count: int) -> None:
        self.items.append(name)


def load_inventory(path: str) -> Inventory:
    return Inventory(path)
'''

HELPERS = """from .models import Inventory as Inv, load_inventory
from . import models


def total_value(inv: Inv) -> float:
    return 0.0
"""

APP = """from shop.helpers import Inv, total_value
from shop import models as m
import shop.models


class Report:
    def __init__(self, inv: Inv) -> None:
        self.inv = inv

    def summary(self) -> str:
        items = self.inv.most_expensive_items(threshold=3.0)
        return str(items)

"""


def make_project(root: Path) -> Path:
    pkg = root / "shop"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(MODELS)
    (pkg / "helpers.py").write_text(HELPERS)
    (pkg / "app.py").write_text(APP)
    return root


def write_files(root: Path, files: dict[str, str]) -> None:
    """Write each file (its path relative to ``root``: its text) and the folders it needs."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def service(tmp_path: Path, roots: list[Path], **opts: object) -> WorkspaceService:
    svc = WorkspaceService(tmp_path / "cache", lambda: Options(**opts))  # type: ignore[arg-type]
    svc.start([str(r) for r in roots])
    assert svc.built.wait(30)
    assert svc.wait_idle(10)
    return svc


def ctx(
    svc: WorkspaceService, path: Path, text: str | None = None, offset: int | None = None
) -> str:
    text = path.read_text() if text is None else text
    offset = len(text) if offset is None else offset
    return svc.context(wf.path_to_uri(str(path)), text, offset, "python", 0, STARCODER2)


def test_extract_python_definitions_and_imports() -> None:
    defs, imports = extract(MODELS + "\ndef f():\n    from .x import y\n", "python")
    by = {(d.parent, d.name): d for d in defs}
    assert by[(None, "Inventory")].kind == "class"
    assert by[(None, "Inventory")].excerpt == '    """Items on hand."""'
    m = by[("Inventory", "most_expensive_items")]
    assert m.kind == "method" and m.signature.strip().startswith("def most_expensive_items(self")
    assert '"""Items priced over threshold."""' in m.excerpt
    assert by[(None, "LIMIT")].kind == "variable"
    assert by[("Inventory", "owner")].kind == "class_attribute"
    assert [(i.module, i.level, i.names) for i in imports] == [
        ("dataclasses", 0, (("dataclass", "dataclass"),)),
        ("x", 1, (("y", "y"),)),
    ]
    defs, imports = extract(APP, "python")
    assert [(i.module, i.bound) for i in imports if not i.names] == [("shop.models", "shop")]
    assert ("models", "m") in next(i.names for i in imports if i.module == "shop" and i.names)


def test_extract_other_languages() -> None:
    defs, _ = extract(
        "export function add(a, b) { return a + b }\nclass A { m() {} }\n", "javascript"
    )
    assert {(d.name, d.kind) for d in defs} >= {
        ("add", "function"),
        ("A", "class"),
        ("m", "method"),
    }


def test_imports_resolve_relative_absolute_and_reexports(tmp_path: Path) -> None:
    root = make_project(tmp_path / "ws")
    svc = service(tmp_path, [root])
    pre = ctx(svc, root / "shop" / "app.py")
    # ``Inv`` is re-exported by helpers (``from .models import Inventory as Inv``): the class
    # and its members come from models.py; ``total_value`` from helpers.py.
    models = pre.split("<file_sep>shop/models.py\n", 1)[1].split("<file_sep>", 1)[0]
    assert "class Inventory:" in models and "LIMIT = 10" in models  # ``m.LIMIT`` via the module
    assert "def most_expensive_items(self, threshold: float) -> list[str]:" in pre
    assert "<file_sep>shop/helpers.py\ndef total_value(inv: Inv) -> float:" in pre
    assert pre.startswith("<repo_name>ws") and pre.endswith("<file_sep>shop/app.py\n")
    # the current file never gives context to itself
    assert "class Report" not in pre


def test_budget_and_order(tmp_path: Path) -> None:
    root = make_project(tmp_path / "ws")
    svc = service(tmp_path, [root], tokens=40)
    small = ctx(svc, root / "shop" / "app.py")
    assert 0 < len(small) <= 40 * 3 + 80
    svc2 = service(tmp_path / "b", [root], tokens=2000)
    big = ctx(svc2, root / "shop" / "app.py")
    assert len(big) > len(small)
    # the file of the best part last, nearest the current file: models.py holds the class of
    # ``Inv`` (used near the cursor) and its method ``most_expensive_items`` (named there);
    # helpers' ``total_value`` is only imported
    assert big.index("shop/helpers.py") < big.index("shop/models.py") < big.index("shop/app.py")
    svc3 = service(tmp_path / "c", [root], tokens=0)
    assert ctx(svc3, root / "shop" / "app.py") == ""


def test_prefix_stable_across_keystrokes(tmp_path: Path) -> None:
    root = make_project(tmp_path / "ws")
    svc = service(tmp_path, [root])
    path = root / "shop" / "app.py"
    base = APP + "    def cheapest(self) -> str:\n        "
    seen = set()
    for typed in ["", "r", "re", "ret", "retu", "return ", "return self.in", "return self.inv.l"]:
        seen.add(ctx(svc, path, base + typed, len(base + typed)))
    assert len(seen) == 1


def test_incremental_edit_create_delete_rename(tmp_path: Path) -> None:
    root = make_project(tmp_path / "ws")
    svc = service(tmp_path, [root])
    models = root / "shop" / "models.py"
    models.write_text(MODELS.replace("def restock", "def refill"))
    svc.files_changed([(wf.path_to_uri(str(models)), "changed")])
    assert svc.wait_idle()
    names = {d.name for d in svc.index.files[str(models.resolve())].defs}
    assert "refill" in names and "restock" not in names
    new = root / "shop" / "extra.py"
    new.write_text("def brand_new_helper(x):\n    return x\n")
    svc.files_changed([(wf.path_to_uri(str(new)), "created")])
    assert svc.wait_idle()
    assert str(new.resolve()) in svc.index.files
    renamed = root / "shop" / "renamed.py"
    new.rename(renamed)
    svc.files_changed(
        [(wf.path_to_uri(str(new)), "deleted"), (wf.path_to_uri(str(renamed)), "created")]
    )
    assert svc.wait_idle()
    assert str(new.resolve()) not in svc.index.files and str(renamed.resolve()) in svc.index.files
    assert svc.index.modules().file("shop.renamed") is not None
    renamed.unlink()
    svc.files_changed([(wf.path_to_uri(str(renamed)), "deleted")])
    assert svc.wait_idle()
    assert str(renamed.resolve()) not in svc.index.files


def test_open_document_text_wins_and_updates(tmp_path: Path) -> None:
    root = make_project(tmp_path / "ws")
    live: dict[str, tuple[str, str]] = {}
    svc = WorkspaceService(tmp_path / "cache", lambda: Options(), lambda uri: live.get(uri))
    svc.start([str(root)])
    assert svc.built.wait(30)
    models = root / "shop" / "models.py"
    uri = wf.path_to_uri(str(models))
    live[uri] = (MODELS + "\n\ndef only_in_the_editor():\n    pass\n", "python")
    svc.opened(uri, live[uri][0], "python")
    assert svc.wait_idle()
    assert "only_in_the_editor" in {d.name for d in svc.index.files[str(models.resolve())].defs}
    live[uri] = (MODELS + "\n\ndef renamed_in_the_editor():\n    pass\n", "python")
    svc.changed(uri)
    assert svc.wait_idle()
    assert "renamed_in_the_editor" in {d.name for d in svc.index.files[str(models.resolve())].defs}
    text = live.pop(uri)[0]
    svc.closed(uri, text)
    assert svc.wait_idle()
    names = {d.name for d in svc.index.files[str(models.resolve())].defs}
    assert "renamed_in_the_editor" not in names  # back to the file on disk


def test_persisted_index_is_reused_and_owner_only(tmp_path: Path) -> None:
    root = make_project(tmp_path / "ws")
    svc = service(tmp_path, [root])
    assert "(0 unchanged" in svc.last_report
    svc.stop()
    dbs = list((tmp_path / "cache" / "workspace").glob("index-*.sqlite3"))
    assert len(dbs) == 1
    assert stat.S_IMODE(dbs[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(dbs[0].parent.stat().st_mode) == 0o700
    rows = sqlite3.connect(dbs[0]).execute("SELECT data FROM files").fetchall()
    assert rows and all(r[0].startswith("{") for r in rows)  # JSON, not pickles
    (root / "shop" / "helpers.py").write_text(HELPERS + "\nX = 1\n")
    again = service(tmp_path, [root])
    assert "(3 unchanged" in again.last_report
    assert "X" in {
        d.name for d in again.index.files[str((root / "shop" / "helpers.py").resolve())].defs
    }


def test_never_reads_outside_the_workspace_or_secret_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "ws")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.py").write_text("def outside_secret_function(): pass\n")
    (root / "link_out").symlink_to(outside, target_is_directory=True)
    (root / "shop" / "link_file.py").symlink_to(outside / "private.py")
    (root / ".env").write_text("API_KEY=xyz\n")
    (root / "shop" / "secrets.py").write_text("TOKEN = 'abc'\n")
    (root / "shop" / "credentials.py").write_text("PASSWORD = 'abc'\n")
    (root / "shop" / "key_holder.py").write_text("K = '''-----BEGIN RSA PRIVATE KEY-----'''\n")
    for d in ("node_modules", ".venv", ".git", "build"):
        (root / d).mkdir()
        (root / d / "dep.py").write_text("def dependency(): pass\n")
    (root / ".gitignore").write_text("ignored_dir/\n*.gen.py\n")
    (root / "ignored_dir").mkdir()
    (root / "ignored_dir" / "x.py").write_text("def ignored(): pass\n")
    (root / "shop" / "table.gen.py").write_text("def gen(): pass\n")
    (root / "docs").mkdir()
    (root / "docs" / "conf.py").write_text("def excluded_by_glob(): pass\n")
    (root / "shop" / "parser_tab.py").write_text("# Generated by a tool. DO NOT EDIT.\nT = 1\n")
    opened: list[str] = []
    real_open = open

    def spy(file: object, *a: object, **k: object) -> object:
        opened.append(os.path.realpath(str(file)))
        return real_open(file, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", spy)
    svc = service(tmp_path, [root], exclude=("docs/**",))
    monkeypatch.setattr("builtins.open", real_open)
    read = {p for p in opened if p.endswith(".py")}
    assert read, "the spy saw no reads"
    assert all(p.startswith(str(root.resolve())) for p in read), read
    for name in ("secrets.py", "credentials.py", "dep.py", "x.py", "table.gen.py", "conf.py"):
        assert not any(p.endswith("/" + name) for p in read), name
    indexed = {os.path.basename(p) for p in svc.index.files}
    assert indexed == {"__init__.py", "models.py", "helpers.py", "app.py"}
    # events for files outside or secret-looking are ignored too
    svc.files_changed(
        [
            (wf.path_to_uri(str(outside / "private.py")), "changed"),
            (wf.path_to_uri(str(root / "shop" / "secrets.py")), "created"),
        ]
    )
    assert svc.wait_idle()
    assert {os.path.basename(p) for p in svc.index.files} == indexed


def test_bad_input_symlink_loop_binary_unreadable_and_cap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_project(tmp_path / "ws")
    (root / "shop" / "loop").symlink_to(root, target_is_directory=True)
    (root / "shop" / "blob.py").write_bytes(b"\x00\x01\x02def x(): pass\n")
    (root / "shop" / "latin.py").write_bytes("x = 'caf\xe9'\n".encode("latin-1"))
    locked = root / "shop" / "locked.py"
    locked.write_text("def locked(): pass\n")
    locked.chmod(0)
    big = root / "shop" / "big.py"
    big.write_text("x = 1\n" * 50_000)
    for i in range(30):
        (root / f"m{i:02}.py").write_text(f"def f{i}(): pass\n")
    caplog.set_level(logging.INFO, logger="tactful.workspace.service")
    try:
        svc = service(tmp_path, [root], max_file_kb=64, max_files=20)
    finally:
        locked.chmod(0o600)
    records = [r for r in caplog.records if "workspace index:" in r.getMessage()]
    lines = [r.getMessage() for r in records]
    assert len(lines) == 1, lines
    assert records[0].levelname == "WARNING"  # seen at the server's default log level
    line = lines[0]
    assert "stopped at the file cap" in line and "context.maxFiles 20" in line
    assert len(svc.index.files) <= 20
    svc2 = service(tmp_path / "b", [root], max_file_kb=64)
    report = svc2.last_report
    assert "binary files" in report and "files over the size cap" in report
    if os.geteuid() != 0:
        assert "unreadable files" in report
    assert "folders seen twice (links)" in report
    assert not any(os.path.basename(p) in ("blob.py", "big.py") for p in svc2.index.files)


def test_no_workspace_folder_uses_open_documents(tmp_path: Path) -> None:
    a = tmp_path / "a.py"
    b = tmp_path / "b.py"
    a.write_text("def shared_helper_name(x):\n    return x\n")
    b.write_text("from a import shared_helper_name\n\n\ndef g():\n    ")
    live = {wf.path_to_uri(str(a)): (a.read_text(), "python")}
    svc = WorkspaceService(None, lambda: Options(), lambda uri: live.get(uri))
    svc.start([])
    svc.opened(wf.path_to_uri(str(a)), a.read_text(), "python")
    assert svc.wait_idle()
    pre = svc.context(
        wf.path_to_uri(str(b)), b.read_text(), len(b.read_text()), "python", 0, COMMENTS
    )
    assert "# From a.py:\n# def shared_helper_name(x):" in pre
    assert pre.endswith("# Path: b.py\n")


def test_similar_snippets_from_open_documents(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    other = root / "other.py"
    other.write_text(
        "def handler(request, response):\n"
        "    session = request.session\n"
        "    user = session.get_user(request.token)\n"
        "    response.set_cookie('uid', user.identifier)\n"
        "    return response\n"
    )
    cur = root / "cur.py"
    text = (
        "def view(request, response):\n"
        "    session = request.session\n"
        "    user = session.get_user(request.token)\n"
    )
    cur.write_text(text)
    live = {wf.path_to_uri(str(other)): (other.read_text(), "python")}
    svc = WorkspaceService(None, lambda: Options(), lambda uri: live.get(uri))
    svc.start([str(root)])
    svc.opened(wf.path_to_uri(str(other)), other.read_text(), "python")
    assert svc.wait_idle()
    pre = svc.context(wf.path_to_uri(str(cur)), text, len(text), "python", 0, COMMENTS)
    assert "# Compare this snippet from other.py:" in pre
    assert "user.identifier" in pre


def test_repo_format_detection() -> None:
    assert detect_format({"<|repo_name|>", "<|file_sep|>", "<|fim_prefix|>"}) is QWEN
    assert detect_format({"<repo_name>", "<file_sep>"}) is STARCODER2
    assert detect_format({"<s>"}) is COMMENTS
    assert detect_format(None) is COMMENTS


def test_secret_names() -> None:
    for name in (
        ".env",
        ".env.local",
        "id_rsa",
        "server.pem",
        "secrets.py",
        "api_key.py",
        "credentials.json",
    ):
        assert wf.is_secret_name(name), name
    for name in ("models.py", "tokenizer.py", "keys.py", "environment.py", "secretary.py"):
        assert not wf.is_secret_name(name), name


def test_rendered_definitions_stay_code() -> None:
    src = (
        "X = Union[\n    str,\n    int,\n]\n\n"
        "def f(a):  # why\n"
        '    """First line.\n\n    More text that goes on.\n    And on.\n    """\n'
        "    return a\n"
    )
    defs, _ = extract(src, "python")
    by = {d.name: d for d in defs}
    assert by["X"].signature == "X = Union[ str, int, ]"
    assert by["f"].signature == "def f(a):"  # the comment after the colon is not the header
    # a docstring cut short is closed, or what follows would read as a string
    assert by["f"].excerpt.count('"""') % 2 == 0


def test_within_is_by_path_component() -> None:
    assert wf.within("/a/b/c.py", ["/a/b"])
    assert not wf.within("/a/bc/c.py", ["/a/b"])
    assert not wf.allowed("/etc/passwd", ["/a/b"])


def test_no_snippet_the_current_file_already_holds(tmp_path: Path) -> None:
    """The same text open under two names (a copy, a split view) brings no snippet."""
    root = tmp_path / "ws"
    root.mkdir()
    text = (
        "def handler(request, response):\n"
        "    session = request.session\n"
        "    user = session.get_user(request.token)\n"
        "    response.set_cookie('uid', user.identifier)\n"
        "    return response\n"
    )
    copy, cur = root / "copy.py", root / "cur.py"
    copy.write_text(text)
    cur.write_text(text)
    live = {wf.path_to_uri(str(copy)): (text, "python")}
    svc = WorkspaceService(None, lambda: Options(), lambda uri: live.get(uri))
    svc.start([str(root)])
    svc.opened(wf.path_to_uri(str(copy)), text, "python")
    assert svc.wait_idle()
    offset = text.index("    return")
    assert "Compare this snippet" not in svc.context(
        wf.path_to_uri(str(cur)), text, offset, "python", 0, COMMENTS
    )


# --- the preamble in the completion path (the model's side is tests/lsp/test_workspace_lsp.py) ---
PRE = "<repo_name>shop\n<file_sep>shop/models.py\nLIMIT = 10\n<file_sep>shop/app.py\n"


def test_the_preamble_starts_every_prompt_the_backend_builds() -> None:
    from tactful.backend.fim import STARCODER
    from tactful.backend.prompt import build_prompt
    from tactful.backend.types import GenerateRequest

    fim = GenerateRequest(prefix="x = ", suffix="\nprint(x)", preamble=PRE)
    assert build_prompt(fim, STARCODER) == (PRE + STARCODER.render("x = ", "\nprint(x)"), "")
    plain = GenerateRequest(prefix="x = LIM", preamble=PRE)
    assert build_prompt(plain, None) == (PRE + "x = LIM", "")
    # Healing cuts the prefix's end, never the preamble.
    assert build_prompt(plain, None, lambda text: "LIM") == (PRE + "x = ", "LIM")
    assert build_prompt(GenerateRequest(prefix="x = LIM"), None) == ("x = LIM", "")


def test_the_preamble_goes_into_the_model_call_and_the_cache_key(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tactful.cache import JsonCache
    from tactful.completion import cache
    from tactful.completion.context import build_context
    from tactful.completion.request import make_generate_request
    from tactful.config import Settings

    settings = Settings()
    bare = build_context("x = LIM", 7, "python")
    ctx = build_context("x = LIM", 7, "python")
    ctx.preamble = PRE
    req = make_generate_request(ctx, settings, "file:///w/app.py", fim=False)
    assert req.preamble == PRE and set(req.stop) == {"<file_sep>", "<|file_sep|>"}
    req = make_generate_request(bare, settings, "file:///w/app.py", fim=False)
    assert req.preamble == "" and req.stop == ()
    store = JsonCache(tmp_path / "cache", 1)
    backend: Any = SimpleNamespace(name="m", fim=False)
    with_pre = cache.key_for(store, backend, ctx, settings)
    without = cache.key_for(store, backend, bare, settings)
    assert with_pre is not None and without is not None and with_pre != without


async def test_the_engine_asks_for_the_preamble_and_sends_it() -> None:
    from tactful.backend.runner import READY, ModelRunner
    from tactful.backend.types import GenerateRequest, Generation
    from tactful.completion.engine import CompletionEngine
    from tactful.config import Settings, apply_settings

    class Recording:
        name = "recording"
        fim = False

        def __init__(self) -> None:
            self.requests: list[GenerateRequest] = []

        def generate(self, req: GenerateRequest) -> Generation:
            self.requests.append(req)
            return Generation(text="IT", tokens=["IT"], token_logprobs=[-0.1])

        def drop_cache(self, key: str) -> None:
            pass

    runner = ModelRunner()
    backend = Recording()
    runner.backend, runner.state = backend, READY  # type: ignore[assignment]
    settings, errors, _ = apply_settings(Settings(), {"completion": {"cache": False}})
    assert not errors
    eng = CompletionEngine(runner, lambda: settings)
    asked: list[tuple[str, str, int, str, int, Any]] = []

    def repo_context(uri: str, text: str, offset: int, lang: str, start: int, b: Any) -> str:
        asked.append((uri, text, offset, lang, start, b))
        return PRE

    eng.repo_context = repo_context
    text = "x = LIM"
    sugg = await eng.complete(
        uri="file:///w/app.py", text=text, offset=len(text), language_id="python",
        line=0, character=len(text), trigger="invoked",
    )  # fmt: skip
    assert sugg is not None and sugg.text == "IT"
    assert asked == [("file:///w/app.py", text, len(text), "python", 0, backend)]
    assert backend.requests[-1].preamble == PRE and backend.requests[-1].prefix == text
    assert "<file_sep>" in backend.requests[-1].stop


def test_relative_imports_from_a_folder_without_init(tmp_path: Path) -> None:
    # flask's ``sansio/`` has no ``__init__.py``: ``from ..helpers import x`` in it still
    # resolves (the file is ``pkg.sansio.app``, not a top-level ``app``).
    root = tmp_path / "ws"
    write_files(
        root,
        {
            "src/pkg/__init__.py": "",
            "src/pkg/helpers.py": "def get_debug_flag() -> bool:\n    return False\n",
            "src/pkg/sansio/scaffold.py": "class Scaffold:\n    pass\n",
            "src/pkg/sansio/app.py": (
                "from ..helpers import get_debug_flag\nfrom .scaffold import Scaffold\n\n\n"
                "def make() -> None:\n    debug = get_debug_flag()\n    "
            ),
        },
    )
    pre = ctx(service(tmp_path, [root]), root / "src" / "pkg" / "sansio" / "app.py")
    assert "def get_debug_flag() -> bool:" in pre
    assert "class Scaffold:" in pre


def test_a_docstring_saying_generated_is_not_a_generated_file(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write_files(
        root,
        {
            "pkg/__init__.py": "",
            "pkg/nodes.py": (
                '"""AST nodes generated by the parser for the compiler."""\n\n\n'
                "class Block:\n    pass\n"
            ),
            "pkg/made.py": "# Generated by a tool. DO NOT EDIT.\nclass Made:\n    pass\n",
            "pkg/compiler.py": "from .nodes import Block\nfrom .made import Made\n\n\ndef f():\n    ",
        },
    )
    svc = service(tmp_path, [root])
    assert str((root / "pkg" / "nodes.py").resolve()) in svc.index.files
    assert str((root / "pkg" / "made.py").resolve()) not in svc.index.files
    assert "class Block:" in ctx(svc, root / "pkg" / "compiler.py")


def test_module_attributes_used_near_and_above_come_first(tmp_path: Path) -> None:
    # ``from . import tz`` where ``tz/__init__.py`` re-exports ``from .impl import *``, and a
    # module of more members than are listed: the attributes the file takes of the module
    # (``tz.tzoffset`` near the cursor, ``nodes.Block`` above) are in the context.
    root = tmp_path / "ws"
    many = "".join(f"class Node{i}:\n    pass\n\n\n" for i in range(80))
    filler = "".join(f"    x{i} = {i}\n" for i in range(60))
    write_files(
        root,
        {
            "pkg/__init__.py": "",
            "pkg/tz/__init__.py": "from .impl import *\n",
            "pkg/tz/impl.py": (
                "class tzoffset:\n    def __init__(self, name, offset):\n"
                "        self.offset = offset\n"
            ),
            "pkg/nodes.py": many + "class Block:\n    pass\n",
            "pkg/parser.py": (
                "from . import nodes, tz\n\n\ndef first(n):\n    return isinstance(n, nodes.Block)"
                f"\n\n\ndef parse(s):\n{filler}    off = tz.tzoffset(None, 3600)\n    "
            ),
        },
    )
    pre = ctx(service(tmp_path, [root], tokens=150), root / "pkg" / "parser.py")
    assert "<file_sep>pkg/tz/impl.py\nclass tzoffset:" in pre
    assert "class Block:" in pre


def test_a_large_enclosing_class_leaves_room_for_imported_names(tmp_path: Path) -> None:
    # The cursor in the first method of a class of many methods: the methods not named near
    # the cursor no longer take the whole budget from the name the file imports.
    root = tmp_path / "ws"
    methods = "".join(
        f"\n    def method_{i}(self, argument_{i}: int) -> int:\n        return {i}\n"
        for i in range(20)
    )
    filler = "".join(f"        y{i} = x + {i}\n" for i in range(50))
    head = "from .compat import assert_never\n\n\nclass Case:\n    def run(self, x):\n" + filler
    text = head + "        \n" + filler + methods
    write_files(
        root,
        {
            "pkg/__init__.py": "",
            "pkg/compat.py": (
                "def assert_never(value: object) -> None:\n    raise AssertionError(value)\n"
            ),
            "pkg/unit.py": text,
        },
    )
    cur = root / "pkg" / "unit.py"
    pre = ctx(service(tmp_path, [root], tokens=80), cur, text, len(head) + 8)
    assert "def assert_never(value: object) -> None:" in pre
    assert "method_" in pre  # the members still fill what is left
