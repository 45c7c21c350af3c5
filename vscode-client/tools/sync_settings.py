"""Generate the server settings in ``vscode-client/package.json`` from ``server/tactful/config.py``.

The extension contributes every server setting as ``tactful.<dotted camelCase name>`` with the
server's default, type, range or choices and the docstring written under the field in config.py.
Run after changing config.py (``tests/unit/test_protocol_mirror_ts.py`` fails until you do):

    .venv/bin/python vscode-client/tools/sync_settings.py          # rewrite package.json
    .venv/bin/python vscode-client/tools/sync_settings.py --check  # exit 1 if out of date

Client-only settings (``tactful.server.*``, ``tactful.trace.server``, ``tactful.listCompletions``)
are kept as they are. Server settings that choose where tactful reads models from or writes its
files get the scope in ``SCOPES`` (not settable by an untrusted workspace; see
``capabilities.untrustedWorkspaces`` in package.json).
"""

from __future__ import annotations

import ast
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONFIG_PY = ROOT / "server" / "tactful" / "config.py"
PACKAGE_JSON = ROOT / "vscode-client" / "package.json"
#: Settings of the extension itself; everything else under "tactful." is sent to the server.
CLIENT_ONLY_PREFIXES = ("server.", "trace.", "listCompletions")
#: Server settings that choose which model files are read or where tactful writes: a workspace
#: may set them only when it is trusted (``machine-overridable`` plus the extension's
#: ``restrictedConfigurations``). The client-only ``tactful.server.*`` settings, which choose
#: what runs, are ``machine`` scoped in package.json itself (never from a workspace).
SCOPES = {
    "model": "machine-overridable",
    "cacheDir": "machine-overridable",
    "dataDir": "machine-overridable",
    "feedback.logPath": "machine-overridable",
    "cdhf.modelDir": "machine-overridable",
    # Where code is sent, and which environment variable is sent along as a bearer token: an
    # untrusted repository must not point them at its own server (docs/engines.md).
    "engine.url": "machine-overridable",
    "engine.apiKeyEnv": "machine-overridable",
}
#: Scopes a workspace's .vscode/settings.json cannot set, or only when trusted.
RESTRICTED_SCOPES = ("machine", "machine-overridable", "application")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _literal(node: ast.AST) -> Any:
    return ast.literal_eval(node)


def _schema_from_validator(call: ast.Call | None, default: Any) -> dict[str, Any]:
    """JSON schema bits from the validator expression in ``attrs.field(validator=...)``."""
    if call is None:
        return {}
    if isinstance(call, ast.Name):
        if call.id == "_bool":
            return {"type": "boolean"}
        if call.id == "_opt_str":
            return {"type": ["string", "null"]}
        if call.id == "_engine_url":
            return {"type": ["string", "null"], "pattern": "^https?://"}
        if call.id == "_env_name":
            return {"type": ["string", "null"], "pattern": "^[A-Z_][A-Z0-9_]{0,63}$"}
        if call.id == "_glob_list":
            return {"type": "array", "items": {"type": "string"}}
        if call.id == "_lang_map":
            return {"type": "object", "additionalProperties": {"type": "boolean"}}
        raise ValueError(f"unknown validator {call.id}")
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ValueError(f"unsupported validator {ast.dump(call)}")
    fn = call.func.id
    if fn == "_int_range":
        lo, hi = (_literal(a) for a in call.args)
        return {"type": "integer", "minimum": lo, "maximum": hi}
    if fn == "_float_range":
        lo, hi = (_literal(a) for a in call.args)
        return {"type": "number", "minimum": lo, "maximum": hi}
    if fn == "_one_of":
        (arg,) = call.args
        assert isinstance(arg, ast.Starred) and isinstance(arg.value, ast.Name)
        return {"type": "string", "enum": None, "_enum_name": arg.value.id}
    if fn == "_check":
        # nullable probability thresholds: "null or a number from 0 to 1"
        expected = _literal(call.args[1])
        if "null or a number from 0 to 1" in expected:
            return {"type": ["number", "null"], "minimum": 0, "maximum": 1}
        raise ValueError(f"unsupported _check validator: {expected!r}")
    raise ValueError(f"unknown validator {fn}")


def server_settings() -> dict[str, dict[str, Any]]:
    """``{"completion.maxNewTokens": {type, default, description, ...}}`` from config.py."""
    from tactful.config import Settings, setting_names, to_wire

    tree = ast.parse(CONFIG_PY.read_text(encoding="utf-8"))
    consts: dict[str, Any] = {}
    classes: dict[str, ast.ClassDef] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            with contextlib.suppress(ValueError):
                consts[node.targets[0].id] = _literal(node.value)
        elif isinstance(node, ast.ClassDef):
            classes[node.name] = node

    wire_defaults = to_wire(Settings())
    out: dict[str, dict[str, Any]] = {}

    def walk(cls_name: str, prefix: str) -> None:
        body = classes[cls_name].body
        for i, stmt in enumerate(body):
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            key = prefix + _camel(stmt.target.id)
            value = stmt.value
            kwargs = {}
            if isinstance(value, ast.Call):
                kwargs = {k.arg: k.value for k in value.keywords}
            factory = kwargs.get("factory")
            if isinstance(factory, ast.Name) and factory.id in classes:
                walk(factory.id, key + ".")
                continue
            doc = ""
            if i + 1 < len(body):
                nxt = body[i + 1]
                if (
                    isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)
                ):
                    doc = " ".join(nxt.value.value.split())
            default: Any = wire_defaults
            for part in key.split("."):
                default = default[part]
            schema = _schema_from_validator(kwargs.get("validator"), default)  # type: ignore[arg-type]
            if "_enum_name" in schema:
                schema["enum"] = list(consts[schema.pop("_enum_name")])
            entry = {**schema, "default": default, "markdownDescription": doc.replace("``", "`")}
            if key in SCOPES:
                entry["scope"] = SCOPES[key]
            if not doc:
                raise ValueError(f"setting {key} has no docstring in config.py")
            out[key] = entry

    walk("Settings", "")
    missing = set(setting_names()) - set(out)
    if missing:
        raise ValueError(f"config.py fields not understood: {sorted(missing)}")
    return out


def updated_package(pkg: dict[str, Any]) -> dict[str, Any]:
    """``pkg`` with its server settings regenerated (client-only ones kept, in front)."""
    props = pkg["contributes"]["configuration"]["properties"]
    client = {
        k: v
        for k, v in props.items()
        if k.removeprefix("tactful.").startswith(CLIENT_ONLY_PREFIXES)
    }
    server = {f"tactful.{k}": v for k, v in server_settings().items()}
    props = {**client, **server}
    pkg["contributes"]["configuration"]["properties"] = props
    untrusted = pkg.setdefault("capabilities", {}).setdefault("untrustedWorkspaces", {})
    untrusted["restrictedConfigurations"] = [
        k for k, v in props.items() if v.get("scope") in RESTRICTED_SCOPES
    ]
    return pkg


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT / "server"))
    text = PACKAGE_JSON.read_text(encoding="utf-8")
    new = json.dumps(updated_package(json.loads(text)), indent=2, ensure_ascii=False) + "\n"
    if "--check" in argv:
        if new != text:
            print(
                f"{PACKAGE_JSON} is out of date: run {Path(__file__).relative_to(ROOT)}",
                file=sys.stderr,
            )
            return 1
        return 0
    PACKAGE_JSON.write_text(new, encoding="utf-8")
    print(f"wrote {len(server_settings())} server settings into {PACKAGE_JSON}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
