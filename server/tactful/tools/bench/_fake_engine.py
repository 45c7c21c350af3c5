"""A stand-in inference engine for ``tactful bench fallback``, run as its own process so that the
benchmark can kill it (SIGKILL: the engine dies, the kernel closes its sockets) or freeze it
(SIGSTOP: the engine hangs, connections are still accepted and never answered), as a real
engine's process would.

It speaks the part of the OpenAI-compatible API that tactful's engine backend uses for
completions: ``GET /v1/models`` and a streamed ``POST /v1/completions`` (HTTP/1.1, keep-alive,
chunked server-sent events), always writing ``TOKENS``, one every ``token_ms``. It prints
``ready`` once it listens and ``stream`` when it starts each completion stream, so that the
benchmark can kill it mid-stream. Only the standard library: it starts in a fraction of a second.

Usage: ``python -m tactful.tools.bench._fake_engine PORT TOKEN_MS``.
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "fake-engine"
#: The engine's completion, token by token: text the embedded model would never write, so that
#: an answer shows which backend wrote it.
TOKENS = (" engine", "_answer", "(a", ",", " b", ")")
MARK = "engine_answer"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    token_s = 0.1

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: stdout carries the ``ready``/``stream`` lines."""

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(size) or b"{}")
        except ValueError:
            body = {}
        if not self.path.endswith("/completions") or not body.get("stream"):
            self._json(404, {"detail": "Not Found"})
            return
        print("stream", flush=True)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for i, tok in enumerate(TOKENS):
                finish = "stop" if i == len(TOKENS) - 1 else None
                choice = {"index": 0, "text": tok, "logprobs": None, "finish_reason": finish}
                self._chunk(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
                time.sleep(self.token_s)
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            return  # tactful closed the stream (a cancelled request)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, code: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main(argv: list[str]) -> None:
    port, token_ms = int(argv[0]), float(argv[1])
    Handler.token_s = token_ms / 1000
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
