"""What serves when ``engine.url`` is set: ``RoutingBackend`` puts the circuit breaker
(``breaker.py``) in front of the engine and falls back to the embedded model (or to nothing)
while the engine is down, slow or erroring, probing it in the background until it answers; and
``open_engine`` / ``load_routing``, which build it from the settings.

Owns the fallback rules (which backend answers each call, where a document's scored slot is)
and telling a person each distinct problem once. Must not talk HTTP itself: the engine backend
(``backend.py``) does, and raises ``EngineError`` for this module to route on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from tactful.backend.engine.backend import EngineBackend
from tactful.backend.engine.breaker import Breaker
from tactful.backend.engine.errors import REQUEST, UNREACHABLE, UNSUPPORTED, EngineError
from tactful.backend.types import Backend, GenerateRequest, Generation, LineScores, ModelError

log = logging.getLogger(__name__)


class RoutingBackend:
    """The engine behind a circuit breaker, with a fallback: the embedded model (``fallback``)
    or nothing (None: completions are empty and flags are off while the engine is away).

    Each distinct problem is told once through ``notify`` (the server shows it and logs it),
    not once per keystroke; recovery is told once too."""

    def __init__(
        self,
        engine: EngineBackend,
        fallback: Backend | None,
        *,
        notify: Callable[[str], None] | None = None,
        breaker: Breaker | None = None,
        connected: bool = True,
    ) -> None:
        self.engine = engine
        self.fallback = fallback
        self.breaker = breaker or Breaker()
        self._notify = notify or (lambda m: log.warning("%s", m))
        self._told: set[str] = set()
        self._told_kinds: set[str] = set()
        self._notes_told = 0
        self.last_error = ""
        #: Which backend holds each document's scored slot (flags regenerate where they scored).
        self._slot_owner: dict[str, Any] = {}
        self._connected = connected
        self._flags_told = False
        self.tell_notes()

    # --- what serves -----------------------------------------------------------------------------
    @property
    def serving(self) -> str:
        """``engine``, ``fallback`` or ``none``."""
        if not self.breaker.open and self._connected:
            return "engine"
        return "fallback" if self.fallback is not None else "none"

    @property
    def name(self) -> str:
        if self.serving == "fallback" and self.fallback is not None:
            return self.fallback.name
        return self.engine.name

    @property
    def fim(self) -> bool:
        if self.serving == "fallback" and self.fallback is not None:
            return self.fallback.fim
        return self.engine.fim

    @property
    def stats(self) -> dict[str, Any]:
        """The engine's request counters, and the fallback's own where it has served."""
        out: dict[str, Any] = {f"engine_{k}": v for k, v in self.engine.stats.items()}
        out.update(getattr(self.fallback, "stats", {}) or {})
        return out

    def engine_status(self) -> dict[str, Any]:
        """What serves, for the status item, ``:TactfulStatus`` and ``tactful model info``."""
        return {
            "url": self.engine.base,
            "model": self.engine.model,
            "healthy": self.serving == "engine",
            "serving": self.serving,
            "fallback": getattr(self.fallback, "name", None),
            "template": self.engine.fim_template.family
            if self.engine.fim_template
            else "prefix-only",
            "canScore": self.engine.can_score,
            "error": self.last_error,
        }

    def tell(self, message: str) -> None:
        if message not in self._told:
            self._told.add(message)
            self._notify(message)

    def tell_notes(self) -> None:
        for note in self.engine.notes[self._notes_told :]:
            self.tell(note)
        self._notes_told = len(self.engine.notes)

    def _failed(self, exc: EngineError, *, open_now: bool = False) -> None:
        self.last_error = str(exc)
        if exc.kind == REQUEST and not open_now:
            # This request was refused (too long a prompt for the engine's context, say), not
            # the engine broken: the fallback answers it, and the breaker does not count it.
            if REQUEST not in self._told_kinds:
                self._told_kinds.add(REQUEST)
                self.tell(f"{exc} — answered by the fallback; said once")
            return
        opened = self.breaker.failure(UNREACHABLE if open_now else exc.kind)
        if opened:
            then = {
                "fallback": "serving from the embedded model until it answers again",
                "none": "no suggestions until it answers again",
            }["fallback" if self.fallback is not None else "none"]
            self.tell(f"{exc} — {then}")
        else:
            log.warning("%s", exc)

    def _engine_ok(self) -> bool:
        """Whether to ask the engine now; starts a background probe when one is due (a health
        request on the engine's loop, or a connection attempt on a thread when it never
        connected)."""
        if self.breaker.probe_due():
            if self._connected:
                self.engine.probe_async(self._probed)
            else:
                threading.Thread(target=lambda: self._probed(True), daemon=True).start()
        return self.serving == "engine"

    def _probed(self, ok: bool) -> None:
        """A probe's result: connect first where the engine never connected; when the breaker
        closes, tell that the engine serves again (problems may then be told again)."""
        if not self._connected and ok:
            try:
                self.engine.connect()
                self._connected = True
            except EngineError as exc:
                self.last_error = str(exc)
                ok = False
        if self.breaker.probed(ok and self._connected):
            self._told.clear()
            self.last_error = ""
            self._notify(
                f"engine {self.engine.host} answers again; serving {self.engine.model} from it"
            )

    # --- Backend ---------------------------------------------------------------------------------
    def generate(self, req: GenerateRequest) -> Generation:
        if req.keep_slot and req.cache_key is not None:
            owner = self._slot_owner.get(req.cache_key)
            if owner is not None and owner is not self.engine:
                return owner.generate(req)
        if self._engine_ok():
            try:
                gen = self.engine.generate(req)
            except EngineError as exc:
                self._failed(exc)
            else:
                if not gen.cancelled:
                    self.breaker.success()
                    self.tell_notes()
                    return gen
                silence = self.engine.silence()  # a cancelled request says nothing, unless...
                if silence is None:
                    return gen
                self._failed(silence)
            if req.cancel.is_set():
                return Generation(text="", cancelled=True)
        if self.fallback is not None:
            return self.fallback.generate(req)
        gen = Generation(text="", stopped=True)
        req.partial = gen
        return gen

    def generate_many(self, reqs: Sequence[GenerateRequest]) -> list[Generation]:
        key = reqs[0].cache_key if reqs else None
        owner = self._slot_owner.get(key) if key is not None else None
        target: Any = self.fallback
        if owner is not None and owner is not self.engine:
            target = owner  # scored by the fallback: its slot holds the text
        elif self._engine_ok():
            try:
                return self.engine.generate_many(reqs)
            except EngineError as exc:
                self._failed(exc)
        if target is None:
            raise ModelError("flags are off while the engine is away")
        many = getattr(target, "generate_many", None)
        return many(reqs) if many is not None else [target.generate(r) for r in reqs]

    def _scorer(self) -> Any:
        if self.engine.can_score is not False and self._engine_ok():
            return self.engine
        if self.engine.can_score is False and not self._flags_told:
            self._flags_told = True
            self.tell(
                f"engine {self.engine.host} cannot score prompts: flags "
                + ("use the embedded model" if self.fallback is not None else "are off")
            )
        if self.fallback is None:
            raise ModelError(
                "flags are off: the engine cannot score prompts or is away, and engine.onUnreachable is 'none'"
            )
        return self.fallback

    def score_into_slot(
        self, text: str, cache_key: str, cancel: threading.Event | None = None
    ) -> LineScores:
        target = self._scorer()
        if target is self.engine:
            try:
                scores = self.engine.score_into_slot(text, cache_key, cancel)
                self._slot_owner[cache_key] = self.engine
                return scores
            except EngineError as exc:
                if exc.kind != UNSUPPORTED:
                    self._failed(exc)
                target = self._scorer()
        scores = target.score_into_slot(text, cache_key, cancel)
        self._slot_owner[cache_key] = target
        return scores

    def score(self, text: str, cancel: threading.Event | None = None) -> LineScores:
        target = self._scorer()
        if target is self.engine:
            try:
                return self.engine.score(text, cancel)
            except EngineError as exc:
                if exc.kind != UNSUPPORTED:
                    self._failed(exc)
                target = self._scorer()
        return target.score(text, cancel)

    def count_tokens(self, text: str) -> int:
        if self.fallback is not None:
            return self.fallback.count_tokens(text)
        return self.engine.count_tokens(text)

    def log_prob(self, prefix: str, continuation: str, suffix: str = "") -> float:
        target = self._scorer()
        if target is self.engine:
            try:
                return self.engine.log_prob(prefix, continuation, suffix)
            except EngineError as exc:
                self._failed(exc)
                target = self._scorer()
        return target.log_prob(prefix, continuation, suffix)

    def drop_cache(self, cache_key: str) -> None:
        self._slot_owner.pop(cache_key, None)
        if self.fallback is not None:
            self.fallback.drop_cache(cache_key)

    def close(self) -> None:
        self.engine.close()


def load_routing(
    settings: Any,
    load_fallback: Callable[[], Backend],
    *,
    notify: Callable[[str], None] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> RoutingBackend:
    """The backend the server serves from when ``engine.url`` is set: the engine, and the
    embedded model loaded up front as its fallback (``engine.onUnreachable: fallback``), so
    that the server answers at once when the engine goes away."""
    report = progress or (lambda _m, _p: None)
    fallback = load_fallback() if settings.on_unreachable == "fallback" else None
    report(f"Connecting to the engine at {urlsplit(settings.url).netloc}", 95)
    routing = open_engine(settings, fallback, notify=notify)
    report(f"{routing.name} ready", 100)
    return routing


def open_engine(
    settings: Any,
    fallback: Backend | None,
    *,
    notify: Callable[[str], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    environ: Mapping[str, str] | None = None,
) -> RoutingBackend:
    """The routing backend for an ``EngineSettings``. A missing API key variable raises
    EngineError (nothing can work until the setting is fixed); an engine that is down or serves
    another model at start does not: the fallback serves and the breaker probes until it answers."""
    engine = EngineBackend(
        settings.url,
        model=settings.model,
        api_key_env=settings.api_key_env,
        template=settings.template,
        connect_timeout_s=settings.connect_timeout_ms / 1000,
        timeout_s=settings.timeout_ms / 1000,
        max_concurrent=settings.max_concurrent,
        transport=transport,
        environ=environ,
    )
    fb = fallback if settings.on_unreachable == "fallback" else None
    try:
        engine.connect()
    except EngineError as exc:
        routing = RoutingBackend(engine, fb, notify=notify, connected=False)
        routing._failed(exc, open_now=True)
        return routing
    return RoutingBackend(engine, fb, notify=notify)
