"""Teams (issue 25, item 4): several logs keep their users apart, and ``tactful replay team``
prints a team-trained and a personal cascade side by side on the same held-out decisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.unit.test_cascade_adapt import _user_log

from tactful.cascade import train as cdhf_train
from tactful.replay import cli as replay_cli
from tactful.replay import team


def test_logs_with_one_name_in_different_folders_stay_different_users(tmp_path: Path) -> None:
    people = ("alice", "bob", "carol")
    for i, who in enumerate(people):
        (tmp_path / who).mkdir()
        _user_log(tmp_path / who / "feedback.sqlite3", 40, seed=i)
    files = [tmp_path / who / "feedback.sqlite3" for who in people]
    assert cdhf_train.log_labels(files) == [f"{who}/feedback" for who in people]
    rows = cdhf_train.load_rows(files)
    assert {r.user for r in rows} == {f"{who}/feedback/local" for who in people}
    ds = cdhf_train.dataset_from_rows(rows, "three logs", target=0.8)
    # Evaluation holds out whole people (one log each), never mixing their decisions.
    assert ds.users == 3 and ds.group_kind == "user"
    for g in range(3):
        assert len({rows[i].user for i in range(len(rows)) if ds.groups[i] == g}) == 1


@pytest.fixture(scope="module")
def team_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("team")
    for i, who in enumerate(("ann", "ben", "cat")):
        _user_log(folder / f"{who}.sqlite3", 120 if who != "cat" else 40, seed=i)
    return folder


def test_team_and_personal_side_by_side(team_logs: Path, capsys: pytest.CaptureFixture) -> None:
    rep = team.run([team_logs], [0.8], 0.3, progress=False, lam=0.05)
    users = {u["user"]: u for u in rep["per_user"]}
    assert set(users) == {"ann/local", "ben/local", "cat/local"}, "a folder of logs, users apart"
    ann = users["ann/local"]
    assert ann["held_out"] == 36 and ann["trained_on_own"] == 84
    assert ann["0.8"]["team"]["hidden"] > 0 and ann["0.8"]["personal"]["hidden"] > 0
    cat = users["cat/local"]["0.8"]["personal"]
    assert "training needs at least 30" in cat["refused"] and cat["hidden"] == 0
    p = rep["pooled"]["0.8"]
    assert p["held_out"] == 36 + 36 + 12 and p["personal_refused"] == 1
    assert p["team"]["accuracy_cp95"][0] < p["team"]["accuracy_when_hiding"] <= 1
    assert (
        replay_cli.main(["team", "--log", str(team_logs), "--target", "0.8", "--lam", "0.05"]) == 0
    )
    out = capsys.readouterr().out
    assert "| user | held out | team | personal |" in out
    assert "| **all 3** |" in out and "accuracy" in out and "–" in out
    assert "cat/local: no personal model: " in out


def test_team_bad_input_is_a_clear_message(
    tmp_path: Path, team_logs: Path, capsys: pytest.CaptureFixture
) -> None:
    one = team_logs / "ann.sqlite3"
    assert team.main(["--log", str(one)]) == 1
    assert "holding users out needs at least 3" in capsys.readouterr().err
    assert team.main(["--log", str(team_logs), "--user", "nobody"]) == 1
    assert "no such user" in capsys.readouterr().err
    assert team.main(["--log", str(tmp_path / "missing.sqlite3")]) == 1
    assert "no such log" in capsys.readouterr().err
    assert team.main(["--log", str(one), "--holdout", "1.5"]) == 2


def test_replay_adapt_bad_input(tmp_path: Path, team_logs: Path, capsys) -> None:
    from tactful.replay import adapt as replay_adapt

    assert replay_adapt.main(["--log", str(team_logs / "ann.sqlite3")]) == 1
    assert "users" in capsys.readouterr().err
    rc = replay_adapt.main(["--log", str(team_logs), "--target", "0.8", "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["users"] == 3 and set(rep["targets"]["0.8"]["pooled"]) >= {"static", "adaptive"}
    assert rep["checked"] is True
    assert replay_adapt.main(["--log", str(team_logs), "--target", "0.8", "--no-check"]) == 0
    assert "WITHOUT the check (ablation)" in capsys.readouterr().out
