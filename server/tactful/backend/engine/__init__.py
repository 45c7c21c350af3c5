"""Serve from an OpenAI-compatible inference engine (vLLM, SGLang, llama.cpp's server, Ollama)
behind tactful's ``Backend`` interface (docs/engines.md).

One module per part, each importing only the ones above it in this list:

- ``errors.py``: ``EngineError``, its kinds, and the wording of every failure;
- ``dialects.py``: the engines' streamed answers (server-sent events, both log-probability forms);
- ``scoring.py``: flags' scoring pass (``echo`` + ``logprobs``) read into ``LineScores``;
- ``loop.py``: the event loop thread the HTTP runs on, and how tactful's threads wait on it;
- ``client.py``: HTTP to one engine (one ``httpx`` pool, the cap on requests in flight, the API
  key kept out of every message, the endpoints tactful uses);
- ``heal.py``: a trailing partial word healed one token at a time from the engine's top
  alternatives (plain functions over its JSON);
- ``completions.py``: the prompt, token healing, stop rules, and a streamed completion;
- ``backend.py``: ``EngineBackend``, the engine as a ``Backend``;
- ``breaker.py``: the circuit breaker;
- ``routing.py``: ``RoutingBackend``, the engine with its fallback, and building it from settings.

The API key is read from the environment variable the settings name; it is sent as a bearer token
and scrubbed from every message this package makes. This module only re-exports the names the
rest of tactful (and its tests) use.
"""

from __future__ import annotations

from tactful.backend.engine.backend import EngineBackend
from tactful.backend.engine.breaker import Breaker
from tactful.backend.engine.client import (
    FLAG_BACKOFF_S,
    FLAG_TRIES,
    EngineClient,
    engine_root,
    is_loopback,
)
from tactful.backend.engine.completions import split_heal
from tactful.backend.engine.dialects import Chunk, parse_chunk, sse_events
from tactful.backend.engine.errors import (
    AUTH,
    MODEL,
    PROTOCOL,
    REQUEST,
    SERVER,
    TIMEOUT,
    UNREACHABLE,
    UNSUPPORTED,
    EngineError,
)
from tactful.backend.engine.loop import POLL_S
from tactful.backend.engine.routing import RoutingBackend, load_routing, open_engine
from tactful.backend.engine.scoring import SCORE_TOP, echo_scores
from tactful.backend.types import ModelError

__all__ = [
    "AUTH",
    "FLAG_BACKOFF_S",
    "FLAG_TRIES",
    "MODEL",
    "POLL_S",
    "PROTOCOL",
    "REQUEST",
    "SCORE_TOP",
    "SERVER",
    "TIMEOUT",
    "UNREACHABLE",
    "UNSUPPORTED",
    "Breaker",
    "Chunk",
    "EngineBackend",
    "EngineClient",
    "EngineError",
    "ModelError",
    "RoutingBackend",
    "echo_scores",
    "engine_root",
    "is_loopback",
    "load_routing",
    "open_engine",
    "parse_chunk",
    "split_heal",
    "sse_events",
]
