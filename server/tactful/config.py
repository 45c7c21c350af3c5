"""Typed, validated settings: what a client may send in ``initializationOptions`` and
``workspace/didChangeConfiguration``.

Keys are camelCase on the wire (``completion.maxNewTokens``) and snake_case here. ``Settings()``
is the documented default. ``apply_settings(previous, raw)`` validates a (partial) payload
field by field: an invalid value is reported with the setting's full name and the previous
value is kept, so one typo never resets the rest. Import-light: no torch, no pygls.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

_SEVERITIES = ("error", "warning", "information", "hint")
_DTYPES = ("auto", "bfloat16", "float16", "float32")
_DEVICES = ("auto", "cpu", "cuda", "mps")
_TEXT_MODES = ("text", "hash")
_FLAG_SCOPES = ("file", "changed")
#: ``engine.template`` values (see tactful.backend.fim.FAMILIES); ``auto``: from the model name.
ENGINE_TEMPLATES = (
    "auto",
    "starcoder",
    "qwen2.5-coder",
    "deepseek-coder",
    "codellama",
    "codestral",
    "prefix-only",
)
_ON_UNREACHABLE = ("fallback", "none")


def _check(pred: Callable[[Any], bool], expected: str) -> Callable[[Any, Any, Any], None]:
    def validator(_inst: Any, attribute: Any, value: Any) -> None:
        if not pred(value):
            raise ValueError(f"expected {expected}, got {value!r}")

    return validator


def _int_range(lo: int, hi: int) -> Callable[[Any, Any, Any], None]:
    return _check(
        lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi,
        f"an integer from {lo} to {hi}",
    )


def _float_range(lo: float, hi: float) -> Callable[[Any, Any, Any], None]:
    return _check(
        lambda v: isinstance(v, int | float) and not isinstance(v, bool) and lo <= v <= hi,
        f"a number from {lo} to {hi}",
    )


def _one_of(*choices: str) -> Callable[[Any, Any, Any], None]:
    return _check(lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


_bool = _check(lambda v: isinstance(v, bool), "true or false")
_opt_str = _check(
    lambda v: v is None or (isinstance(v, str) and v.strip() != ""), "a non-empty string or null"
)
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}\Z")


def _check_quiet(pred: Callable[[Any], bool], expected: str) -> Callable[[Any, Any, Any], None]:
    """Like ``_check``, but the message does not repeat the value: it may be a secret pasted
    into the wrong setting (an API key, a URL with a password)."""

    def validator(_inst: Any, attribute: Any, value: Any) -> None:
        if not pred(value):
            raise ValueError(f"expected {expected} (the value given is not repeated here)")

    return validator


_env_name = _check_quiet(
    lambda v: v is None or (isinstance(v, str) and _ENV_NAME.match(v) is not None),
    "null or the NAME of an environment variable (capitals, digits and _, e.g. "
    "TACTFUL_ENGINE_KEY), never the key itself",
)


def _is_engine_url(v: Any) -> bool:
    if v is None:
        return True
    if not isinstance(v, str) or any(c.isspace() for c in v):
        return False
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not parts.username
        and not parts.password
        and not parts.query
    )


_engine_url = _check_quiet(
    _is_engine_url,
    "null or an http(s) URL without credentials or query, e.g. http://127.0.0.1:8000/v1",
)
_glob_list = _check(
    lambda v: isinstance(v, list) and all(isinstance(g, str) and g.strip() for g in v),
    'a list of glob patterns, e.g. ["docs/**", "*_pb2.py"]',
)
_CONTEXT_FORMATS = ("auto", "comments")
_lang_map = _check(
    lambda v: (
        isinstance(v, dict)
        and all(isinstance(k, str) and isinstance(b, bool) for k, b in v.items())
    ),
    'an object mapping language ids to true/false, e.g. {"markdown": false}',
)


#: See ``CompletionSettings.deadline_ms`` and docs/benchmarks.md.
DEFAULT_DEADLINE_MS = 250


@attrs.frozen
class CompletionSettings:
    """How completions are generated and served."""

    max_new_tokens: int = attrs.field(default=48, validator=_int_range(1, 512))
    """Most tokens generated for one multi-line suggestion (single-line ones stop at the newline)."""
    single_line_max_tokens: int = attrs.field(default=16, validator=_int_range(1, 256))
    """Most tokens generated for a single-line suggestion."""
    context_tokens: int = attrs.field(default=1500, validator=_int_range(64, 32768))
    """Token budget for the prompt (prefix plus, for fill-in-the-middle models, suffix)."""
    deadline_ms: int = attrs.field(default=DEFAULT_DEADLINE_MS, validator=_int_range(0, 10000))
    """Ghost text while typing: answer with the part generated so far (cut where brackets and strings are closed) when the model is still writing after this long, and let it finish the suggestion for type-along (explicit requests and list completions wait for the whole suggestion); 0: always wait for the whole suggestion."""
    debounce_ms: int = attrs.field(default=0, validator=_int_range(0, 2000))
    """Server-side wait before generating; a newer request in that time supersedes the older one."""
    type_along: bool = attrs.field(default=True, validator=_bool)
    """Answer from the suggestion on screen while the user types characters that match it."""
    prefix_reuse: bool = attrs.field(default=True, validator=_bool)
    """Keep the model's KV cache per document and only prefill the new tokens."""
    cache: bool = attrs.field(default=True, validator=_bool)
    """Keep a persistent completion cache keyed by model and exact context."""
    cache_size_mb: int = attrs.field(default=64, validator=_int_range(1, 4096))
    """Size bound of the persistent completion cache."""
    multiline: bool = attrs.field(default=True, validator=_bool)
    """Offer multi-line completions where the syntax says a block starts."""


@attrs.frozen
class FlagSettings:
    """Line anomaly flags (diagnostics)."""

    enable: bool = attrs.field(default=True, validator=_bool)
    """Compute line anomaly flags for open documents."""
    budget: float = attrs.field(default=0.15, validator=_float_range(0.0, 1.0))
    """Flag at most this fraction of a file's lines."""
    min_score: float = attrs.field(default=0.02, validator=_float_range(0.0, 1.0))
    """Show only flags whose classifier score is at least this; 0: fill the budget."""
    min_probability: float = attrs.field(default=0.021, validator=_float_range(0.0, 1.0))
    """Show only flags whose calibrated probability of being the bug is at least this; 0: fill the budget."""
    max_per_hundred_lines: float = attrs.field(default=2.0, validator=_float_range(0.0, 100.0))
    """At most this many flags per 100 lines over the files flagged in this session: when they get more (code unlike what the classifier was fitted on), only the best-scoring flags that fit are shown; 0: off (and off when ``minProbability`` is 0: the budget is filled)."""
    scope: str = attrs.field(default="file", validator=_one_of(*_FLAG_SCOPES))
    """``file``: flag the whole file, lines changed in this editing session first; ``changed``: flag only the changed lines."""
    severity: str = attrs.field(default="information", validator=_one_of(*_SEVERITIES))
    """Diagnostic severity of a flag."""
    idle_ms: int = attrs.field(default=1500, validator=_int_range(100, 600000))
    """Recompute flags after this long without edits."""
    on_open: bool = attrs.field(default=True, validator=_bool)
    """Flag a document when it is opened."""
    on_save: bool = attrs.field(default=True, validator=_bool)
    """Flag a document when it is saved."""
    max_lines: int = attrs.field(default=5000, validator=_int_range(1, 1_000_000))
    """Documents longer than this, or of more than 100 times this many characters, are not flagged (the reason is logged)."""
    cache: bool = attrs.field(default=True, validator=_bool)
    """Keep the model's results for flagged windows on disk, so that an unchanged window is flagged again without model work, also after a restart."""
    cache_size_mb: int = attrs.field(default=64, validator=_int_range(1, 4096))
    """Size bound of the persistent flag cache."""


@attrs.frozen
class FeedbackSettings:
    """The local feedback log of shown, accepted and rejected suggestions."""

    enable: bool = attrs.field(default=True, validator=_bool)
    """Record suggestion events in the local log. Off: nothing is written."""
    log_path: str | None = attrs.field(default=None, validator=_opt_str)
    """Path of the SQLite log; null: ``feedback.sqlite3`` in the data directory."""
    store_text: str = attrs.field(default="text", validator=_one_of(*_TEXT_MODES))
    """``text`` keeps suggestion text in the log; ``hash`` keeps only a SHA-256 of it."""
    reject_timeout_s: float = attrs.field(default=10.0, validator=_float_range(0.5, 3600.0))
    """A shown suggestion with no accept after this long counts as rejected."""


@attrs.frozen
class CdhfSettings:
    """The show/hide cascade learned from accept/reject feedback."""

    enable: bool = attrs.field(default=True, validator=_bool)
    """Skip or hide suggestions the cascade predicts will be rejected."""
    model_dir: str | None = attrs.field(default=None, validator=_opt_str)
    """Folder of a trained cascade; null: the shipped default (or the user's own, once trained)."""
    retrain_on_own_log: bool = attrs.field(default=False, validator=_bool)
    """Adapt the shipped cascade to the user's own log (every 20 decisions); the adapted model is used only once it passes its check on the user's later decisions (docs/cdhf.md)."""
    stage1_threshold: float | None = attrs.field(
        default=None,
        validator=_check(
            lambda v: v is None or (isinstance(v, int | float) and 0 <= v <= 1),
            "null or a number from 0 to 1",
        ),
    )
    """Override: skip generation when stage 1's P(reject) is at least this; null: the model's own."""
    stage2_threshold: float | None = attrs.field(
        default=None,
        validator=_check(
            lambda v: v is None or (isinstance(v, int | float) and 0 <= v <= 1),
            "null or a number from 0 to 1",
        ),
    )
    """Override: hide a suggestion when stage 2's P(reject) is at least this; null: the model's own."""
    explore_rate: float = attrs.field(default=0.05, validator=_float_range(0.0, 0.5))
    """Share of would-be-skipped or hidden suggestions shown anyway (and marked ``explored`` in
    the log), so that the log keeps outcomes for them and retraining is not blind there."""


@attrs.frozen
class EngineSettings:
    """An OpenAI-compatible inference engine (vLLM, SGLang, llama.cpp server, Ollama) that serves completions and flags instead of the in-process model (docs/engines.md)."""

    url: str | None = attrs.field(default=None, validator=_engine_url)
    """Base URL of the engine's OpenAI-compatible API, e.g. ``http://127.0.0.1:8000/v1``; null: no engine, the in-process model serves."""
    model: str | None = attrs.field(default=None, validator=_opt_str)
    """The served model name; null: the first model the engine lists (``/v1/models``)."""
    api_key_env: str | None = attrs.field(default=None, validator=_env_name)
    """The NAME of an environment variable of the server's process that holds the API key (sent as a bearer token); the key itself never goes in settings or logs."""
    template: str = attrs.field(default="auto", validator=_one_of(*ENGINE_TEMPLATES))
    """Prompt template family for fill-in-the-middle; ``auto``: from the model name; ``prefix-only``: no suffix."""
    connect_timeout_ms: int = attrs.field(default=2000, validator=_int_range(50, 60000))
    """Most time to open a connection to the engine."""
    timeout_ms: int = attrs.field(default=10000, validator=_int_range(100, 600000))
    """Most time one engine request may take from start to last token (and most time between two streamed tokens)."""
    max_concurrent: int = attrs.field(default=4, validator=_int_range(1, 256))
    """Most requests this server has in flight at the engine at once."""
    on_unreachable: str = attrs.field(default="fallback", validator=_one_of(*_ON_UNREACHABLE))
    """When the engine is down, slow or failing: ``fallback`` serves from the embedded model until it recovers; ``none`` shows nothing."""


@attrs.frozen
class ContextSettings:
    """Repository context: definitions and snippets from other files of the workspace at the start of the prompt (docs/context.md)."""

    enable: bool = attrs.field(default=True, validator=_bool)
    """Index the workspace folders in the background and put context from other files at the start of each completion prompt."""
    tokens: int = attrs.field(default=512, validator=_int_range(0, 8192))
    """Token budget of that context (on top of ``completion.contextTokens``); 0: none."""
    exclude: list[str] = attrs.field(factory=list, validator=_glob_list)
    """Glob patterns (relative to a workspace folder) of files and folders never indexed, on top of ``.gitignore``, dependency, build and vendored folders and secret-looking files."""
    max_files: int = attrs.field(default=5000, validator=_int_range(1, 200000))
    """Most files indexed per workspace (those nearest the folder roots are kept)."""
    max_file_kb: int = attrs.field(default=512, validator=_int_range(1, 16384))
    """Files larger than this are not indexed."""
    format: str = attrs.field(default="auto", validator=_one_of(*_CONTEXT_FORMATS))
    """``auto``: the model family's repository tokens where its vocabulary has them (StarCoder2's and SmolLM2's ``<repo_name>`` and ``<file_sep>``, Qwen2.5-Coder's own), else commented file headers; ``comments``: always commented file headers."""
    guided_names: bool = attrs.field(default=False, validator=_bool)
    """Name-guided decoding of the embedded model with repository context: where it starts writing a name that neither the context nor the file holds, a name of theirs it finds nearly as likely is written instead (off: no gain measured, docs/context.md)."""


@attrs.frozen
class Settings:
    """All of tactful's settings. ``Settings()`` is the documented default."""

    enable: bool = attrs.field(default=True, validator=_bool)
    """Serve completions at all."""
    model: str | None = attrs.field(default=None, validator=_opt_str)
    """A local Hugging Face model folder or a hub id; null: the embedded SmolLM2-135M-Instruct."""
    device: str = attrs.field(default="auto", validator=_one_of(*_DEVICES))
    """Where the model runs."""
    dtype: str = attrs.field(default="auto", validator=_one_of(*_DTYPES))
    """Weights' precision; ``auto`` picks bfloat16 where the CPU supports it, else float32."""
    threads: int = attrs.field(default=0, validator=_int_range(0, 256))
    """CPU threads for the model; 0: one less than the CPU count (at least 1), which leaves a core to the editor."""
    fast_decode: bool = attrs.field(default=True, validator=_bool)
    """On the CPU (bfloat16, or float32 where the CPU lacks fast bfloat16): decode with packed 4-bit/8-bit weights where they reproduce the model's own, a preallocated float32 KV cache and float32 attention (docs/benchmarks.md); off: stock transformers."""
    languages: dict[str, bool] = attrs.field(
        factory=lambda: {"plaintext": False, "markdown": False, "log": False},
        validator=_lang_map,
    )
    """Per-language switch by LSP language id; languages not listed are enabled."""
    cache_dir: str | None = attrs.field(default=None, validator=_opt_str)
    """Where the converted model, the completion cache and the flag cache live; null: the user cache directory."""
    data_dir: str | None = attrs.field(default=None, validator=_opt_str)
    """Where the feedback log and user-trained models live; null: the user data directory."""
    open_documents_mb: int = attrs.field(default=64, validator=_int_range(1, 65536))
    """Most text (MB) of open documents that keep what tactful derives from them (flags, index entries, the model's cache); beyond it the least recently used ones keep only their text until they are edited or completed in again."""
    completion: CompletionSettings = attrs.field(factory=CompletionSettings)
    flags: FlagSettings = attrs.field(factory=FlagSettings)
    feedback: FeedbackSettings = attrs.field(factory=FeedbackSettings)
    cdhf: CdhfSettings = attrs.field(factory=CdhfSettings)
    engine: EngineSettings = attrs.field(factory=EngineSettings)
    context: ContextSettings = attrs.field(factory=ContextSettings)

    def language_enabled(self, language_id: str) -> bool:
        """Whether completions are on for an LSP language id."""
        return self.enable and self.languages.get(language_id, True)


def camel(name: str) -> str:
    """``max_new_tokens`` -> ``maxNewTokens``."""
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def snake(name: str) -> str:
    """``maxNewTokens`` -> ``max_new_tokens``."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def setting_names(cls: type = Settings, prefix: str = "") -> list[str]:
    """Every leaf setting's dotted camelCase name, e.g. ``completion.maxNewTokens``."""
    out: list[str] = []
    for f in attrs.fields(cls):
        key = prefix + camel(f.name)
        if attrs.has(f.type) if isinstance(f.type, type) else False:
            out.extend(setting_names(f.type, key + "."))
        elif isinstance(f.default, attrs.Factory) and attrs.has(f.default.factory):  # type: ignore[arg-type]
            out.extend(setting_names(f.default.factory, key + "."))  # type: ignore[arg-type]
        else:
            out.append(key)
    return out


_SECTION_PREFIXES = ("tactful",)


def _unwrap(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    # didChangeConfiguration payloads often arrive as {"tactful": {...}}.
    for p in _SECTION_PREFIXES:
        if set(raw) == {p} and isinstance(raw[p], Mapping):
            return raw[p]
    return raw


def _apply(
    obj: Any, raw: Mapping[str, Any], path: str, errors: list[str], unknown: list[str]
) -> Any:
    fields = {camel(f.name): f for f in attrs.fields(type(obj))}
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        f = fields.get(key) or fields.get(camel(snake(key)))
        name = f"{path}{key}"
        if f is None:
            unknown.append(name)
            continue
        current = getattr(obj, f.name)
        if attrs.has(type(current)):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                errors.append(
                    f"tactful.{name}: expected an object, got {value!r}; keeping the previous value"
                )
                continue
            changes[f.name] = _apply(current, value, name + ".", errors, unknown)
            continue
        try:
            if (
                isinstance(value, float)
                and value.is_integer()
                and isinstance(f.default, int)
                and not isinstance(f.default, bool)
            ):
                value = int(value)  # JSON clients may send 48.0
            if f.validator is not None:
                f.validator(obj, f, value)
        except ValueError as exc:
            errors.append(f"tactful.{name}: {exc}; keeping the previous value {current!r}")
            continue
        changes[f.name] = value
    return attrs.evolve(obj, **changes) if changes else obj


def apply_settings(previous: Settings, raw: Any) -> tuple[Settings, list[str], list[str]]:
    """Validate ``raw`` over ``previous``: returns (settings, errors, unknown keys).

    Invalid values are named in ``errors`` and keep their previous value; valid values apply.
    """
    if raw is None:
        return previous, [], []
    if not isinstance(raw, Mapping):
        return previous, [f"tactful settings: expected an object, got {type(raw).__name__}"], []
    errors: list[str] = []
    unknown: list[str] = []
    new = _apply(previous, _unwrap(raw), "", errors, unknown)
    return new, errors, unknown


def to_wire(settings: Settings) -> dict[str, Any]:
    """Settings as the camelCase dict a client would send."""

    def conv(obj: Any) -> Any:
        if attrs.has(type(obj)):
            return {camel(f.name): conv(getattr(obj, f.name)) for f in attrs.fields(type(obj))}
        return obj

    return conv(settings)


def _field_docs() -> dict[tuple[str, str], str]:
    """Attribute docstrings (the string literal under each field), by (class, field)."""
    import ast
    import inspect
    import sys

    tree = ast.parse(inspect.getsource(sys.modules[__name__]))
    docs: dict[tuple[str, str], str] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            body = node.body
            for a, b in itertools.pairwise(body):
                if (
                    isinstance(a, ast.AnnAssign)
                    and isinstance(a.target, ast.Name)
                    and isinstance(b, ast.Expr)
                    and isinstance(b.value, ast.Constant)
                    and isinstance(b.value.value, str)
                ):
                    docs[(node.name, a.target.id)] = " ".join(b.value.value.split())
    return docs


def settings_markdown() -> str:
    """The configuration reference table (README's, kept in sync by a test)."""
    docs = _field_docs()
    rows = ["| Setting | Default | Description |", "| --- | --- | --- |"]

    def walk(cls: type, prefix: str) -> None:
        for f in attrs.fields(cls):
            key = prefix + camel(f.name)
            default = f.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = default.factory()  # type: ignore[union-attr]
                if attrs.has(type(default)):
                    walk(type(default), key + ".")
                    continue
            import json

            rows.append(
                f"| `{key}` | `{json.dumps(default)}` | {docs.get((cls.__name__, f.name), '')} |"
            )

    walk(Settings, "")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_markdown())
