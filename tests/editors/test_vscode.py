"""The VS Code extension (vscode-client/) in a real VS Code against the real server and model.

``test_extension_unit`` compiles the extension and runs its node:test unit tests (server command
resolution, settings payload, status bar text, inline suggestion bookkeeping).

``test_vscode_end_to_end`` packages the extension as a .vsix, installs it into code-server 4.139.1
(VS Code 1.139.1), opens a throwaway workspace in headless Chromium and runs the Playwright
scenario vscode-client/e2e/scenario.js: ghost text from the embedded model accepted with Tab,
a word-by-word partial accept, the log-location and toggle commands, a line flag in the
Problems panel and its quick fix, with VS Code's default editor settings: a typed line ended with
Enter gets its newline and no accept; a workspace's .vscode/settings.json that tries to choose
the server command is ignored. It then checks the saved files and the server's feedback log
(SQLite in a temporary ``TACTFUL_DATA_DIR``). Screenshots, results.json, the scenario's output
and VS Code's logs are kept in ``test-artifacts/vscode/``. With ``TACTFUL_SCREENSHOTS=DIR``
(scripts/screenshots.sh) the scenario also saves the documentation's pictures there, in a
smaller window, with ``tactful.completion.deadlineMs`` 0 (whole suggestions on screen), without
sticky scroll and minimap.

Everything it needs is installed by ``scripts/install-vscode-e2e.sh`` (run here when needed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXT = REPO / "vscode-client"
TOOLS = Path(os.environ.get("TACTFUL_TOOLS_DIR", REPO / ".tools"))
NODE_BIN = TOOLS / "node24" / "node_modules" / ".bin"
CODE_SERVER = TOOLS / "code-server" / "node_modules" / ".bin" / "code-server"
INSTALL = REPO / "scripts" / "install-vscode-e2e.sh"
ARTIFACTS = REPO / "test-artifacts" / "vscode"
_VENV_TACTFUL = REPO / ".venv" / "bin" / "tactful"
TACTFUL = _VENV_TACTFUL if _VENV_TACTFUL.exists() else Path(sys.executable).parent / "tactful"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

GHOST_PY = '''"""Small geometry helpers."""

import math


def circle_area(radius):
    """Area of a circle."""
    return math.pi * radius**2


def add(a, b):

'''

FLAGGED_PY = '''def average(values):
    """The mean of a list of numbers."""
    total = 0
    for value in values:
        total += value
    return total / len(values)


def largest(values):
    """The largest number in a list."""
    best = values[0]
    for value in values:
        if value > best:
            best = value
    return best


def count_words(text):
    """How many words a text has."""
    words = text.split()
    return len(words) * 1000 + "words"


def is_even(number):
    """True when a number is even."""
    return number % 2 == 0
'''

#: VS Code's own editor settings are left at their defaults (suggestions as you type and on
#: trigger characters, word-based suggestions, inline suggestions on): what a new user has.
#: The cascade is off (show whatever the model writes) and there is no completion cache, as in
#: the other editor tests; completions and flags otherwise run with their defaults.
SETTINGS: dict[str, Any] = {
    "security.workspace.trust.enabled": False,
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    "workbench.secondarySideBar.defaultVisibility": "hidden",
    "telemetry.telemetryLevel": "off",
    "update.mode": "none",
    "extensions.autoCheckUpdates": False,
    "extensions.autoUpdate": False,
    "chat.disableAIFeatures": True,
    "git.enabled": False,
    "files.autoSave": "off",
    "tactful.cdhf.enable": False,
    "tactful.completion.cache": False,
    "tactful.trace.server": "messages",
}

#: The machine-scoped settings that choose what runs: code-server's window is a remote one, so
#: they go in the remote machine's settings (Machine/settings.json), as a user would put them.
#: The server's log (-v) and the LSP traffic end up in the artifacts' VS Code logs.
MACHINE_SETTINGS: dict[str, Any] = {
    "tactful.server.command": str(TACTFUL),
    "tactful.server.extraArgs": ["-v"],
}

#: A repository's .vscode/settings.json trying to choose what the extension runs: ignored
#: (machine scope), so the server starts from the machine settings as if it were not there.
HOSTILE_WORKSPACE_SETTINGS: dict[str, Any] = {
    "tactful.server.command": "/nonexistent/workspace-chosen/tactful",
    "tactful.server.pythonPath": "/nonexistent/workspace-chosen/python",
    "tactful.server.extraArgs": ["--tcp", "127.0.0.1:9"],
    "tactful.server.env": {"TACTFUL_DATA_DIR": "/nonexistent/workspace-chosen"},
}


def _env_with_node() -> dict[str, str]:
    return {**os.environ, "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def _run(
    cmd: list[str], *, cwd: Path = REPO, timeout: float = 600, env: dict[str, str] | None = None
) -> str:
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=env or _env_with_node(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{out[-6000:]}"
    )
    return out


@pytest.fixture(scope="module")
def compiled_extension() -> Path:
    """The extension's npm deps installed (install script) and its TypeScript compiled."""
    if not (EXT / "node_modules" / ".tactful-installed").exists():
        _run(["bash", str(INSTALL), "--no-code-server"], timeout=900)
    _run(["npm", "run", "compile"], cwd=EXT)
    return EXT / "out" / "extension.js"


def test_extension_unit(compiled_extension: Path) -> None:
    """The extension's plain-logic modules, through node:test on the compiled JavaScript."""
    out = _run(["npm", "test"], cwd=EXT, timeout=300)
    assert "# fail 0" in out, out
    passed = int(out.split("# pass ")[1].split()[0])
    assert passed >= 15, out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def code_server(tmp_path: Path, compiled_extension: Path) -> Iterator[dict[str, Any]]:
    """code-server with the packaged extension, a workspace and a private data dir."""
    _run(["bash", str(INSTALL)], timeout=1800)
    vsix = tmp_path / "tactful.vsix"
    _run(
        [str(EXT / "node_modules" / ".bin" / "vsce"), "package", "--out", str(vsix)],
        cwd=EXT,
        timeout=300,
    )
    exts = tmp_path / "extensions"
    _run(
        [str(CODE_SERVER), "--install-extension", str(vsix), "--extensions-dir", str(exts)],
        timeout=300,
    )

    ws = tmp_path / "workspace"
    ws.mkdir()
    (ws / "ghost.py").write_text(GHOST_PY)
    (ws / "flagged.py").write_text(FLAGGED_PY)
    (ws / ".vscode").mkdir()
    (ws / ".vscode" / "settings.json").write_text(json.dumps(HOSTILE_WORKSPACE_SETTINGS, indent=1))
    udd = tmp_path / "user-data"
    (udd / "User").mkdir(parents=True)
    settings = dict(SETTINGS)
    if os.environ.get("TACTFUL_SCREENSHOTS"):  # the docs' pictures: whole suggestions, and no
        settings["tactful.completion.deadlineMs"] = 0  # sticky scroll lines or minimap in them
        settings["editor.stickyScroll.enabled"] = False
        settings["editor.minimap.enabled"] = False
    (udd / "User" / "settings.json").write_text(json.dumps(settings, indent=1))
    (udd / "Machine").mkdir(parents=True)
    (udd / "Machine" / "settings.json").write_text(json.dumps(MACHINE_SETTINGS, indent=1))
    data = tmp_path / "data"
    port = _free_port()
    env = {
        **_env_with_node(),
        "TACTFUL_DATA_DIR": str(data),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
    }
    log = (tmp_path / "code-server.log").open("w")
    proc = subprocess.Popen(
        [
            str(CODE_SERVER),
            "--bind-addr",
            f"127.0.0.1:{port}",
            "--auth",
            "none",
            "--user-data-dir",
            str(udd),
            "--extensions-dir",
            str(exts),
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
            str(ws),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: extension host and server stop with it
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, (
                    f"code-server exited: {(tmp_path / 'code-server.log').read_text()[-3000:]}"
                )
                assert time.monotonic() < deadline, "code-server did not answer /healthz in 90 s"
                time.sleep(0.3)
        yield {
            "url": f"http://127.0.0.1:{port}/?folder={ws}",
            "workspace": ws,
            "data": data,
            "user_data": udd,
            "log": tmp_path / "code-server.log",
        }
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


def _events(db: Path) -> list[dict[str, Any]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT id, kind, suggestion_id, data, t FROM events ORDER BY id"
        ).fetchall()
    finally:
        con.close()
    return [
        {
            "id": r[0],
            "kind": r[1],
            "suggestion_id": r[2],
            "data": json.loads(r[3] or "{}"),
            "t": r[4],
        }
        for r in rows
    ]


@pytest.mark.editor
@pytest.mark.model
def test_vscode_end_to_end(code_server: dict[str, Any]) -> None:
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    ws: Path = code_server["workspace"]
    env = {
        **_env_with_node(),
        "NODE_PATH": str(EXT / "node_modules"),
        "CS_URL": code_server["url"],
        "WORKSPACE": str(ws),
        "OUT": str(ARTIFACTS),
        "CHROMIUM": CHROMIUM,
        "USER_SETTINGS": str(code_server["user_data"] / "User" / "settings.json"),
        "MACHINE_SETTINGS": str(code_server["user_data"] / "Machine" / "settings.json"),
    }
    if os.environ.get("TACTFUL_SCREENSHOTS"):  # scripts/screenshots.sh: the docs' pictures
        env["SCREENSHOTS"] = str(Path(os.environ["TACTFUL_SCREENSHOTS"]).resolve())
    proc = subprocess.run(
        ["node", str(EXT / "e2e" / "scenario.js")],
        cwd=EXT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    (ARTIFACTS / "scenario.log").write_text(proc.stdout + proc.stderr)
    logs = code_server["user_data"] / "logs"
    if logs.exists():
        shutil.copytree(logs, ARTIFACTS / "vscode-logs", dirs_exist_ok=True)
    shutil.copy(code_server["log"], ARTIFACTS / "code-server.log")
    results_file = ARTIFACTS / "results.json"
    assert results_file.exists(), (
        f"the scenario wrote no results (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    results = {r["name"]: r for r in json.loads(results_file.read_text())["results"]}
    failed = {name: r["detail"] for name, r in results.items() if not r["ok"]}

    # What the server recorded: the Tab accept, the shown report, the partial accept.
    db = code_server["data"] / "feedback.sqlite3"
    events = _events(db) if db.exists() else []
    kinds = [e["kind"] for e in events]
    (ARTIFACTS / "events.json").write_text(json.dumps(events, indent=1))

    assert not failed, (
        f"scenario checks failed: {json.dumps(failed, indent=1)}\nserver events: {kinds}\n{proc.stdout[-3000:]}"
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # The workspace's .vscode/settings.json chose another server command, Python, arguments and
    # environment: all ignored (machine scope); the extension ran the machine settings' command.
    starts = [
        line
        for f in (ARTIFACTS / "vscode-logs").rglob("*.log")
        for line in f.read_text(errors="replace").splitlines()
        if "[tactful] starting " in line
    ]
    assert starts and all(f"starting {TACTFUL} serve -v" in line for line in starts), starts
    assert not any("workspace-chosen" in line for line in starts), starts

    # The accepted ghost text is in the saved file.
    saved = (ws / "ghost.py").read_text()
    ghost = results["ghost-text-visible"]["detail"]
    first_line = ghost.split("\n")[0].strip()
    assert first_line and first_line in saved, (first_line, saved)

    # The quick fix replaced the flagged line with the model's line.
    fix = results["quick-fix-applied"]["detail"]
    assert fix["newLine"] != fix["oldLine"], fix
    assert (ws / "flagged.py").read_text().split("\n")[fix["flaggedLine"] - 1] == fix["newLine"]

    # The replay report command wrote its HTML next to the log.
    note = results["command-replay-report"]["detail"]["replayNote"]
    html = Path(note.split("written to ")[1].strip())
    assert html.exists() and html.stat().st_size > 0 and html.parent == code_server["data"], note

    assert db.exists(), f"no feedback log at {db}: the server recorded nothing"
    accepted = [e for e in events if e["kind"] == "accepted"]
    shown_text = {
        e["suggestion_id"]: e["data"]["text"]
        for e in events
        if e["kind"] == "shown" and "text" in e["data"]
    }
    # Enter at the end of a typed line, with VS Code's default settings: a newline (checked by
    # the scenario) and no accept of anything while the line was typed and Enter pressed.
    window = results["enter-after-typed-line-inserts-newline"]["detail"]["window"]
    lo, hi = window[0] / 1000, window[1] / 1000
    during = [e for e in accepted if lo <= e["t"] <= hi]
    assert not during, f"an accept was logged for the typed line and its Enter: {during}"
    # Tab on the ghost text ran the item's tactful.accept command (via "command"); Enter on the
    # list item ran its own, logged as a list accept (via "list"), never as a Tab accept.
    # Ctrl+Right on a one-word suggestion takes all of it: VS Code then completes the item and
    # runs its command too (a full accept, logged via "command"), which depends on how much the
    # model had written when the word was accepted.
    partial_detail = results["partial-accept-inserted-a-word"]["detail"]
    word = partial_detail["acceptedPart"]
    word_took_all = word.strip() == partial_detail["ghost2"].strip()
    via_command = [e for e in accepted if e["data"].get("via") == "command"]
    via_list = [e for e in accepted if e["data"].get("via") == "list"]
    assert len(via_command) == 1 + word_took_all and len(via_list) == 1, (
        f"expected one Tab accept and one list accept: {[e['data'] for e in accepted]}"
    )
    tab, item = via_command[0], via_list[0]
    for e in (tab, item):
        assert not e["data"].get("unknown"), e
        assert e["suggestion_id"] in shown_text, kinds
    # Tab took all that was on screen: the whole suggestion, or, when the model was still
    # writing at the completion deadline, the part shown (logged with full false and the
    # shown part's length, since the suggestion was extended afterwards).
    on_screen = shown_text[tab["suggestion_id"]]
    assert tab["data"]["full"] or tab["data"]["accepted_length"] >= len(on_screen), (tab, on_screen)
    assert item["data"]["full"], item
    # ... and the extension reported the ghost text displayed (textDocument/didShowCompletion).
    client_shown = {
        e["suggestion_id"]
        for e in events
        if e["kind"] == "shown" and e["data"].get("client_reported")
    }
    assert tab["suggestion_id"] in client_shown, [e for e in events if e["kind"] == "shown"]
    if word_took_all:
        whole = via_command[1]
        # All of it: the whole suggestion, or, when the model extended it after the word was
        # shown (the completion deadline), what was on screen (full false, as for Tab above).
        if whole["data"]["full"]:
            assert whole["data"]["accepted_length"] == len(word), whole
        else:
            on_screen = shown_text[whole["suggestion_id"]]
            assert on_screen.strip() == word.strip(), (whole, on_screen, word)
            assert whole["data"]["accepted_length"] >= len(on_screen), (whole, on_screen)
        assert whole["suggestion_id"] != tab["suggestion_id"]
        assert whole["suggestion_id"] in client_shown
        return
    # Ctrl+Right sent textDocument/didPartiallyAcceptCompletion with the accepted word's length.
    partial = [
        e for e in accepted if not e["data"].get("full") and e["data"].get("via") == "notification"
    ]
    assert partial, f"no partial accept (Ctrl+Right) in the log: {[e['data'] for e in accepted]}"
    assert partial[0]["data"]["accepted_length"] == len(word), (partial[0], word)
    assert partial[0]["suggestion_id"] != tab["suggestion_id"]
    assert partial[0]["suggestion_id"] in client_shown
