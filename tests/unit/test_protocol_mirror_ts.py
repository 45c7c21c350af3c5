"""The VS Code extension mirrors the server's protocol and settings.

Every command id, notification and diagnostic constant of ``tactful.lsp.protocol`` must appear in
``vscode-client/src/protocol.ts`` under the same name with the same value, and every server
setting from ``tactful.config.setting_names()`` must be contributed in
``vscode-client/package.json`` as ``tactful.<name>`` with the server's default and a description
(regenerate with ``vscode-client/tools/sync_settings.py``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tactful.config import Settings, setting_names, to_wire
from tactful.lsp import protocol

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_TS = REPO / "vscode-client" / "src" / "protocol.ts"
PACKAGE_JSON = REPO / "vscode-client" / "package.json"


def _ts_constants() -> dict[str, str]:
    text = PROTOCOL_TS.read_text(encoding="utf-8")
    return dict(re.findall(r"^export const (\w+) = '([^']*)';", text, flags=re.M))


def _py_constants() -> dict[str, str]:
    return {k: v for k, v in vars(protocol).items() if k.isupper() and isinstance(v, str)}


def _properties() -> dict[str, Any]:
    return json.loads(PACKAGE_JSON.read_text(encoding="utf-8"))["contributes"]["configuration"][
        "properties"
    ]


def test_python_protocol_has_constants() -> None:
    consts = _py_constants()
    assert "CMD_ACCEPT" in consts and "STATUS" in consts and "DID_SHOW_COMPLETION" in consts


@pytest.mark.parametrize("name", sorted(_py_constants()))
def test_constant_mirrored(name: str) -> None:
    ts = _ts_constants()
    assert name in ts, f"{name} of protocol.py is missing from {PROTOCOL_TS}"
    assert ts[name] == getattr(protocol, name), (
        f"{name}: protocol.ts has {ts[name]!r}, protocol.py {getattr(protocol, name)!r}"
    )


def test_all_commands_listed_in_ts() -> None:
    text = PROTOCOL_TS.read_text(encoding="utf-8")
    block = text.split("export const ALL_COMMANDS = [", 1)[1].split("]", 1)[0]
    ts = _ts_constants()
    listed = [ts[n] for n in re.findall(r"\b(CMD_\w+)\b", block)]
    assert listed == list(protocol.ALL_COMMANDS)


@pytest.mark.parametrize("name", setting_names())
def test_setting_contributed(name: str) -> None:
    props = _properties()
    key = f"tactful.{name}"
    assert key in props, (
        f"{key} is not contributed in {PACKAGE_JSON}: run vscode-client/tools/sync_settings.py"
    )
    entry = props[key]
    default: Any = to_wire(Settings())
    for part in name.split("."):
        default = default[part]
    assert entry.get("default") == default, (
        f"{key}: package.json default {entry.get('default')!r} != server default {default!r}"
    )
    assert (entry.get("markdownDescription") or entry.get("description") or "").strip(), (
        f"{key} has no description"
    )


def test_no_stale_server_settings() -> None:
    """Every contributed setting is either a server setting or one of the client's own."""
    names = set(setting_names())
    for key in _properties():
        short = key.removeprefix("tactful.")
        assert short in names or short.startswith(("server.", "trace.", "listCompletions")), (
            f"{key} is not a server setting any more"
        )


def test_package_json_in_sync_with_config() -> None:
    """Types, ranges, choices and descriptions too: the generator has nothing to change."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "vscode-client" / "tools" / "sync_settings.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
