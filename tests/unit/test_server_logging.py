"""The server's log says problems at their real level: pygls' benign warnings are not problems."""

from __future__ import annotations

import logging

import pytest

from tactful.lsp.server import demote_benign_records


def _record(name: str, level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


@pytest.mark.parametrize(
    "msg",
    [
        'Cancel notification for unknown message id "%s"',
        "Ignoring notification for unknown method %r",
    ],
)
def test_benign_pygls_warnings_become_debug(msg: str, caplog: pytest.LogCaptureFixture) -> None:
    rec = _record("pygls.protocol.json_rpc", logging.WARNING, msg, "x")
    caplog.set_level(logging.INFO)
    assert demote_benign_records(rec) is False  # dropped unless DEBUG is on
    assert rec.levelno == logging.DEBUG and rec.levelname == "DEBUG"
    rec = _record("pygls.protocol.json_rpc", logging.WARNING, msg, "x")
    caplog.set_level(logging.DEBUG)
    assert demote_benign_records(rec) is True  # kept, as DEBUG, with -vv
    assert rec.levelname == "DEBUG"


def test_real_problems_keep_their_level() -> None:
    for name, level, msg in [
        ("pygls.protocol.json_rpc", logging.WARNING, "Failed to handle request %s"),
        ("pygls.protocol.json_rpc", logging.ERROR, "Cancel notification for unknown message id"),
        ("tactful", logging.WARNING, "Cancel notification for unknown message id"),
    ]:
        rec = _record(name, level, msg)
        assert demote_benign_records(rec) is True
        assert rec.levelno == level
