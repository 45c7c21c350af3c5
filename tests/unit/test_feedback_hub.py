"""The server-side hub: building the tracker from settings, reconfiguring it, training from the
user's own log (the ``tactful.train`` command's work) and switching to the trained cascade."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from tests.unit.test_cdhf import _synthetic_log

from tactful.cascade import model as cdhf
from tactful.cascade.hooks import Judged, RequestInfo
from tactful.config import Settings, apply_settings
from tactful.lsp import feedback as lsp_feedback


class FakeServer:
    """What FeedbackHub needs of TactfulServer: settings and listeners."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.settings_listeners: list[Any] = []
        self.feedback: Any = None
        self.commands: dict[str, Any] = {}
        self.features: dict[str, Any] = {}
        self.messages: list[str] = []

    def show_message(self, message: str, kind: Any = None) -> None:
        self.messages.append(message)

    def command(self, name: str):
        def deco(f):
            self.commands[name] = f
            return f

        return deco

    def feature(self, name: str):
        def deco(f):
            self.features[name] = f
            return f

        return deco

    def update(self, raw: dict) -> None:
        old = self.settings
        self.settings, errors, _ = apply_settings(old, raw)
        assert not errors
        for listener in self.settings_listeners:
            listener(old, self.settings)


def _settings(tmp_path: Path, **feedback: Any) -> Settings:
    s = Settings(data_dir=str(tmp_path))
    return attrs.evolve(s, feedback=attrs.evolve(s.feedback, **feedback)) if feedback else s


def test_register_builds_lazily_and_handles_commands(tmp_path: Path) -> None:
    server = FakeServer(_settings(tmp_path))
    hub = lsp_feedback.register(server)
    assert server.feedback is hub and hub._tracker is None, "nothing is opened before first use"
    assert set(server.commands) == {
        "tactful.accept",
        "tactful.reject",
        "tactful.logLocation",
        "tactful.train",
    }
    assert set(server.features) == {
        "textDocument/didShowCompletion",
        "textDocument/didPartiallyAcceptCompletion",
    }
    loc = server.commands["tactful.logLocation"](server)
    assert loc == {"path": str(tmp_path / "feedback.sqlite3"), "enabled": True}
    assert hub.gate.cascade is not None, "the shipped default cascade"
    # Accept through the command: counted once.
    req = RequestInfo("file:///a.py", "python", "x = ", 4, 0, 4)
    d1 = hub.hooks.before_generation(req)
    from tactful.cascade.hooks import SuggestionInfo

    info = SuggestionInfo("1")
    d2 = hub.hooks.after_generation(req, info, d1)
    hub.hooks.shown(Judged(req, info, d1, d2), "sid-1")
    assert server.commands["tactful.accept"](server, "sid-1") == {"ok": True, "known": True}
    assert server.commands["tactful.accept"](server, "sid-1")["ok"] is True
    # One decision, accepted once however often the command comes.
    assert hub.acceptance() == {"decisions": 1, "accepted": 1, "acceptanceRate": 1.0}
    assert server.commands["tactful.accept"](server, "sid-1", -3)["ok"] is False
    assert server.commands["tactful.accept"](server)["ok"] is False
    assert server.commands["tactful.reject"](server, None)["ok"] is False
    # Notifications with dict params.
    item = {"insertText": "1", "command": {"command": "tactful.accept", "arguments": ["sid-1"]}}
    server.features["textDocument/didShowCompletion"](server, {"item": item})
    server.features["textDocument/didPartiallyAcceptCompletion"](
        server, {"item": item, "acceptedLength": 1}
    )
    server.features["textDocument/didPartiallyAcceptCompletion"](server, {"nonsense": True})
    assert lsp_feedback.item_id(item) == "sid-1" and lsp_feedback.item_id({}) is None
    hub.close()


def test_list_accepts_are_logged_as_list_accepts(tmp_path: Path) -> None:
    """A list item's command carries [id, None, "list"]: the log says via "list", not the
    "command" of a Tab accept of ghost text; an unknown via keeps the accept (as "command")."""
    from tactful.cascade.hooks import SuggestionInfo
    from tactful.feedback import store
    from tactful.lsp import protocol
    from tactful.lsp.completion import accept_command

    assert accept_command("a").arguments == ["a"]
    list_args = accept_command("b", protocol.ACCEPT_VIA_LIST).arguments
    assert list_args == ["b", None, "list"]
    assert lsp_feedback.accept_via(("a",)) == "command"
    assert lsp_feedback.accept_via(("a", None, None)) == "command"
    assert lsp_feedback.accept_via(tuple(list_args)) == "list"
    assert lsp_feedback.accept_via(("a", None, "bogus")) == "command"

    server = FakeServer(_settings(tmp_path))
    hub = lsp_feedback.register(server)
    for sid in ("tab", "menu", "odd"):
        req = RequestInfo("file:///a.py", "python", "x = ", 4, 0, 4)  # one per request (its id)
        d1 = hub.hooks.before_generation(req)
        info = SuggestionInfo("1")
        hub.hooks.shown(Judged(req, info, d1, hub.hooks.after_generation(req, info, d1)), sid)
    cmd = server.commands["tactful.accept"]
    assert cmd(server, *accept_command("tab").arguments)["ok"] is True
    assert cmd(server, *accept_command("menu", protocol.ACCEPT_VIA_LIST).arguments)["ok"] is True
    assert cmd(server, "odd", None, "bogus")["ok"] is True
    hub.close()
    accepted = {
        e.data["item_id"]: e.data
        for e in store.read_events(tmp_path / "feedback.sqlite3")
        if e.kind == "accepted"
    }
    assert accepted["tab"]["via"] == "command" and accepted["tab"]["full"] is True
    assert accepted["menu"]["via"] == "list" and accepted["menu"]["full"] is True
    assert accepted["odd"]["via"] == "command"
    # The session's figure is the log's, as `tactful log stats` and training count it.
    assert hub.acceptance() == {"decisions": 3, "accepted": 3, "acceptanceRate": 1.0}
    logged = store.stats(tmp_path / "feedback.sqlite3")
    assert (logged["decisions"], logged["acceptanceRate"]) == (3, 1.0)


def test_settings_changes_reconfigure_the_tracker(tmp_path: Path) -> None:
    server = FakeServer(_settings(tmp_path))
    hub = lsp_feedback.register(server)
    t = hub.tracker
    other = tmp_path / "elsewhere" / "log.sqlite3"
    server.update(
        {
            "feedback": {"logPath": str(other), "rejectTimeoutS": 3},
            "cdhf": {"stage2Threshold": 0.25},
        }
    )
    assert hub.tracker is t, "the same tracker keeps its pending suggestions"
    assert Path(t.log.path) == other and t.reject_timeout_s == 3
    assert hub.gate.cascade.stage2_override == 0.25
    assert hub.gate.guard is None, "explicit thresholds are the user's choice: no guard"
    server.update({"cdhf": {"enable": False}})
    assert hub.gate.cascade is None
    server.update({"feedback": {"enable": False}})
    assert hub.tracker is None
    assert hub.hooks.before_generation(RequestInfo("u", "python", "", 0, 0, 0)).show
    assert server.commands["tactful.logLocation"](server) == {"path": None, "enabled": False}
    server.update({"feedback": {"enable": True}})
    assert hub.tracker is not None and hub.tracker.log is not None
    hub.close()


def test_train_from_own_log_switches_to_the_user_model(tmp_path: Path, monkeypatch) -> None:
    server = FakeServer(_settings(tmp_path))
    hub = lsp_feedback.register(server)
    _synthetic_log(tmp_path / "feedback.sqlite3")  # the user's own log, 160 decisions
    res = hub.train()
    own = cdhf.user_model_dir(str(tmp_path))
    assert res["modelDir"] == str(own) and res["decisions"] == 160 and res["stage2Auc"] > 0.75
    assert res["inUse"] is False, "160 < OWN_LOG_MIN_DECISIONS: the default stays in use"
    assert hub.gate.cascade.path == cdhf.default_model_dir()
    monkeypatch.setattr(cdhf, "OWN_LOG_MIN_DECISIONS", 150)
    res = hub.train()
    assert res["inUse"] is True
    assert (own / "stage2.txt").is_file()
    assert hub.gate.cascade.path == own, "the server now uses the user's own model"
    # A fresh server resolves to the user's model too.
    assert cdhf.resolve_model_dir(None, str(tmp_path)) == own
    hub.close()


def test_automatic_adaptation_when_the_own_log_supports_it(tmp_path: Path, monkeypatch) -> None:
    from tests.unit.test_cascade_adapt import _user_log

    from tactful.cascade import train as cdhf_train

    # The prior: a cascade trained on other people's decisions (stands in for the shipped one).
    _synthetic_log(tmp_path / "team.sqlite3", users=4, per_user=40, seed=5)
    cdhf_train.train(tmp_path / "team.sqlite3", tmp_path / "prior", 0.9, 0.05, curve=False)
    monkeypatch.setattr(cdhf, "default_model_dir", lambda: tmp_path / "prior")
    monkeypatch.setattr(lsp_feedback, "RETRAIN_CHECK_EVERY", 1)
    server = FakeServer(_settings(tmp_path))
    hub = lsp_feedback.register(server)
    _user_log(tmp_path / "feedback.sqlite3", 300, seed=1)  # the user's own log
    t = hub.tracker
    t.reject("unknown-1")  # a decision: off by default, nothing happens
    assert hub._training is None
    server.update({"cdhf": {"retrainOnOwnLog": True}})
    from tactful.cascade.hooks import SuggestionInfo

    req = RequestInfo("file:///a.py", "python", "x = ", 4, 0, 4)
    d1 = hub.hooks.before_generation(req)
    hub.hooks.shown(Judged(req, SuggestionInfo("1"), d1, d1), "sid-9")
    t.reject("sid-9")
    assert hub._training is not None
    hub._training.join(timeout=120)
    g = hub.gate
    assert g.cascade is not None and g.cascade.path == cdhf.user_model_dir(str(tmp_path))
    assert "adapted" in g.cascade.meta and g.guard is not None
    hub.close()


def test_a_log_or_model_that_cannot_be_opened_is_reported_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    server = FakeServer(_settings(tmp_path, log_path=str(blocker / "log.sqlite3")))
    hub = lsp_feedback.register(server)
    t = hub.tracker
    assert t is not None and t.log is None and hub.gate.cascade is not None
    assert any("feedback log" in m for m in server.messages)
    server.update({"cdhf": {"modelDir": str(tmp_path / "no-model")}})
    assert hub.gate.cascade is None and any("cascade" in m for m in server.messages)
    req = RequestInfo("file:///a.py", "python", "x = ", 4, 0, 4)
    assert hub.hooks.before_generation(req).show
    assert server.commands["tactful.accept"](server, "zzz", float("nan"))["ok"] is False
    hub.close()


class WatchedServer(FakeServer):
    """FakeServer plus what the log's fault reports reach: problems, messages, the status."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.problems: dict[str, str] = {}
        self.shown: list[str] = []
        # What notices.notice reads of a HardenedServer: the kinds told, and no event loop (the
        # message is sent at once).
        self.notices_shown: set[str] = set()
        self.loop = None
        self.statuses: list[dict[str, str]] = []

    def window_show_message(self, params: Any) -> None:
        self.shown.append(params.message)

    def send_status(self) -> None:
        self.statuses.append(dict(self.problems))


def test_a_log_damaged_at_open_is_reported_once_with_where_it_went(tmp_path: Path) -> None:
    from tests.unit.test_feedback import _damaged_log

    from tactful.cascade.hooks import SuggestionInfo
    from tactful.feedback import store

    path = tmp_path / "feedback.sqlite3"
    _damaged_log(path, slice(100, 3000))
    server = WatchedServer(_settings(tmp_path))
    hub = lsp_feedback.register(server)
    req = RequestInfo("file:///a.py", "python", "x = ", 4, 0, 4)
    d1 = hub.hooks.before_generation(req)  # opens the log
    (aside,) = hub.tracker.log.moved_aside
    assert aside.exists() and aside.parent == tmp_path
    assert len(server.shown) == 1 and str(aside) in server.shown[0]
    assert str(aside) in server.problems["feedbackLog"]
    assert server.statuses and str(aside) in server.statuses[-1]["feedbackLog"]
    assert not server.messages, "no 'could not open the feedback log': logging goes on"
    info = SuggestionInfo("1")
    hub.hooks.shown(Judged(req, info, d1, hub.hooks.after_generation(req, info, d1)), "sid-1")
    assert server.commands["tactful.accept"](server, "sid-1")["ok"] is True
    hub.close()
    assert len(server.shown) == 1, "told once"
    kinds = [e.kind for e in store.read_events(path)]
    assert "shown" in kinds and "accepted" in kinds, "the events after recovery are kept"
