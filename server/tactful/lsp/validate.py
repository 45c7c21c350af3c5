"""Strict checks of LSP parameters against the lsprotocol types, before pygls structures them.

cattrs, which pygls uses to turn JSON into lsprotocol objects, converts where it can: a
``didChange`` whose ``text`` is ``5`` became the text ``"5"``. :func:`check_message` walks the raw
JSON against the declared type of a method's params and says what does not fit (``None`` when all
fits): strings must be strings, integers integers (not booleans, not floats) within the LSP
integer/uinteger ranges, required fields present, union members matched exactly. Unknown fields
are allowed (the protocol grows). ``workspace/executeCommand`` arguments of tactful's commands are
checked against :data:`COMMAND_ARGS`. Plain functions, no pygls.
"""

from __future__ import annotations

import enum
import functools
import math
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
from lsprotocol import types as lsp
from lsprotocol import validators as lspv

from tactful.lsp import protocol

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
UINT_MAX = 2**31 - 1


def _camel(name: str) -> str:
    name = name[:-1] if name.endswith("_") else name
    parts = name.split("_")
    return parts[0] + "".join(p.title() for p in parts[1:])


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Any, bool, Any], ...]:
    """(json name, type, required, validator) for each field of an lsprotocol class."""
    attrs.resolve_types(cls, lsp.ALL_TYPES_MAP, {})
    out = []
    for f in attrs.fields(cls):
        required = f.default is attrs.NOTHING
        out.append((_camel(f.name), f.type, required, f.validator))
    return tuple(out)


@functools.cache
def params_type(method: str) -> Any:
    """The declared type of ``method``'s params, or None for methods lsprotocol does not know."""
    entry = lsp.METHOD_TO_TYPES.get(method)
    if entry is None or entry[0] is None:
        return None
    msg_cls = entry[0]
    for name, tp, _req, _v in _fields(msg_cls):
        if name == "params":
            return tp
    return None


@functools.cache
def message_kind(method: str) -> str | None:
    """ "request" or "notification" for the methods lsprotocol knows, else None."""
    entry = lsp.METHOD_TO_TYPES.get(method)
    if entry is None or entry[0] is None:
        return None
    return "request" if any(n == "id" for n, *_ in _fields(entry[0])) else "notification"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check(value: Any, tp: Any, path: str = "params", validator: Any = None) -> str | None:
    """What in ``value`` does not fit ``tp`` (a message naming the place), or None."""
    if tp is Any or tp is object or tp is lsp.LSPAny:
        return None
    if tp is type(None) or tp is None:
        return None if value is None else f"{path} must be null"
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        return _check_union(value, tp, path)
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in typing.get_args(tp)):
            return None
        return f"{path} must be one of {list(typing.get_args(tp))!r}"
    if origin in (list, Sequence, tuple) or tp in (list, tuple):
        return _check_array(value, tp, path)
    if origin in (dict, Mapping) or tp is dict:
        return _check_mapping(value, tp, path)
    if isinstance(tp, type):
        if attrs.has(tp):
            return _check_fields(value, tp, path)
        if issubclass(tp, enum.Enum):
            return _check_enum(value, tp, path)
        return _check_scalar(value, tp, path, validator)
    return None  # a type this checker does not know: leave it to cattrs


def _check_union(value: Any, tp: Any, path: str) -> str | None:
    """``value`` must fit one member of the union ``tp``."""
    args = typing.get_args(tp)
    if any(a is Any for a in args):
        return None
    if isinstance(value, dict) and any(attrs.has(a) for a in args):
        # lsprotocol tells union members apart by the keys present ({"range", "text"} is a
        # partial change, never a whole-document one): members that lack a key another
        # member has are out.
        names = {a: {n for n, *_ in _fields(a)} for a in args if attrs.has(a)}
        known = set().union(*names.values()) & set(value)
        fitting = tuple(a for a in args if a not in names or known <= names[a])
        args = fitting or args
    problems = [check(value, a, path) for a in args]
    if any(p is None for p in problems):
        return None
    # The most telling failure: from a member whose required fields are all there.
    if isinstance(value, dict):
        for a, p in zip(args, problems, strict=True):
            if attrs.has(a) and all(n in value for n, _t, req, _v in _fields(a) if req):
                return p
    return f"{path} does not match {_type_name(tp)}"


def _first_problem(children: Iterable[tuple[Any, Any, str]]) -> str | None:
    """The first problem among ``(value, type, path)`` children, checked in order (lazily)."""
    for value, tp, path in children:
        if (problem := check(value, tp, path)) is not None:
            return problem
    return None


def _check_array(value: Any, tp: Any, path: str) -> str | None:
    """A list of one item type, or a tuple of fixed length and item types."""
    if not isinstance(value, list):
        return f"{path} must be an array"
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            return f"{path} must have {len(args)} items"
        return _first_problem(
            (v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    item = args[0] if args else Any
    return _first_problem((v, item, f"{path}[{i}]") for i, v in enumerate(value))


def _check_mapping(value: Any, tp: Any, path: str) -> str | None:
    """An object whose values fit the mapping's value type."""
    if not isinstance(value, dict):
        return f"{path} must be an object"
    args = typing.get_args(tp)
    val_t = args[1] if len(args) == 2 else Any
    return _first_problem((v, val_t, f"{path}.{k}") for k, v in value.items())


def _check_fields(value: Any, tp: type, path: str) -> str | None:
    """An object with the required fields of the lsprotocol class ``tp``, each fitting."""
    if not isinstance(value, dict):
        return f"{path} must be an object"
    for name, ftype, required, fval in _fields(tp):
        if name not in value:
            if required:
                return f"{path}.{name} is missing"
            continue
        if (p := check(value[name], ftype, f"{path}.{name}", fval)) is not None:
            return p
    return None


def _check_enum(value: Any, tp: type[enum.Enum], path: str) -> str | None:
    """A value of the enum's base type, and one of its values outside capabilities."""
    base = int if issubclass(tp, int) else str if issubclass(tp, str) else None
    if base is int and (not isinstance(value, int) or isinstance(value, bool)):
        return f"{path} must be an integer"
    if base is str and not isinstance(value, str):
        return f"{path} must be a string"
    # Capabilities may list values newer than lsprotocol knows: only their type counts.
    if ".capabilities" not in path and value not in tp._value2member_map_:
        return f"{path} must be one of {sorted(tp._value2member_map_)!r}"[:300]
    return None


def _check_scalar(value: Any, tp: type, path: str, validator: Any) -> str | None:
    """Booleans, LSP integers (int32, or uint32 per the field's validator), finite numbers,
    strings; other classes are left to cattrs."""
    if tp is bool:
        return None if isinstance(value, bool) else f"{path} must be true or false"
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{path} must be an integer"
        lo = 0 if validator is lspv.uinteger_validator else INT_MIN
        if not lo <= value <= INT_MAX:
            return f"{path} must be in [{lo}, {INT_MAX}], got {value}"
        return None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{path} must be a number"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{path} must be finite"
        return None
    if tp is str:
        return None if isinstance(value, str) else f"{path} must be a string"
    return None


# --- tactful's commands ------------------------------------------------------------------------
def _args(*shapes: tuple[Any, ...]) -> Callable[[list[Any]], str | None]:
    """A check that the arguments match one of ``shapes`` (tuples of types; bool is not int)."""

    def fits(args: list[Any], shape: tuple[Any, ...]) -> bool:
        if len(args) != len(shape):
            return False
        for v, t in zip(args, shape, strict=True):
            if t is bool and not isinstance(v, bool):
                return False
            if t is str and not (isinstance(v, str) and v):
                return False
        return True

    def run(args: list[Any]) -> str | None:
        if any(fits(args, s) for s in shapes):
            return None
        want = " or ".join(
            "[" + ", ".join(getattr(t, "__name__", str(t)) for t in s) + "]" for s in shapes
        )
        return f"arguments must be {want}, got {args!r}"[:300]

    return run


#: Argument checks of tactful's commands (``tactful.accept``/``reject`` check their own and
#: answer ``{"ok": false, "error"}``).
COMMAND_ARGS: dict[str, Callable[[list[Any]], str | None]] = {
    protocol.CMD_TOGGLE: _args((), (bool,)),
    protocol.CMD_FLAG: _args((str,)),
    protocol.CMD_STATUS: _args(()),
    protocol.CMD_LOG_LOCATION: _args(()),
    protocol.CMD_TRAIN: _args(()),
    protocol.CMD_REPLAY_REPORT: _args((), (str,)),
}


def check_message(method: str, params: Any, request: bool = True) -> str | None:
    """What in a message's params does not fit the method's declared params (None: all fits)."""
    tp = params_type(method)
    if tp is not None and tp is not type(None):
        problem = check(params, tp)
        if problem is not None:
            return problem
    if method == lsp.WORKSPACE_EXECUTE_COMMAND and isinstance(params, dict):
        run = COMMAND_ARGS.get(params.get("command", ""))
        if run is not None:
            args = params.get("arguments")
            return run(list(args) if isinstance(args, list) else [])
    return None
