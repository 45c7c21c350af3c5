"""Settings: validation keeps the previous value and names the setting."""

from __future__ import annotations

import json
from pathlib import Path

from tactful.config import Settings, apply_settings, setting_names, to_wire

REPO = Path(__file__).resolve().parents[2]


def test_defaults_round_trip() -> None:
    s, errors, unknown = apply_settings(Settings(), to_wire(Settings()))
    assert s == Settings() and errors == [] and unknown == []


def test_partial_update_and_wrapped_payload() -> None:
    s, errors, _ = apply_settings(
        Settings(), {"tactful": {"model": "/models/x", "completion": {"maxNewTokens": 32}}}
    )
    assert errors == []
    assert s.model == "/models/x" and s.completion.max_new_tokens == 32
    assert s.completion.context_tokens == Settings().completion.context_tokens


def test_invalid_value_names_the_setting_and_keeps_previous() -> None:
    prev, _, _ = apply_settings(Settings(), {"completion": {"maxNewTokens": 20}})
    s, errors, _ = apply_settings(
        prev, {"completion": {"maxNewTokens": -3, "debounceMs": 40}, "dtype": "int4"}
    )
    assert s.completion.max_new_tokens == 20  # kept
    assert s.completion.debounce_ms == 40  # the valid sibling still applies
    assert s.dtype == "auto"
    assert any("tactful.completion.maxNewTokens" in e for e in errors)
    assert any("tactful.dtype" in e for e in errors)


def test_type_errors_and_unknown_keys() -> None:
    s, errors, unknown = apply_settings(
        Settings(), {"completion": "fast", "flags": {"budget": True}, "colour": 1}
    )
    assert s == Settings()
    assert any("tactful.completion" in e for e in errors) and any(
        "tactful.flags.budget" in e for e in errors
    )
    assert unknown == ["colour"]
    _, errors, _ = apply_settings(Settings(), ["not", "an", "object"])
    assert errors


def test_json_floats_for_integers() -> None:
    s, errors, _ = apply_settings(Settings(), json.loads('{"completion": {"maxNewTokens": 48.0}}'))
    assert (
        errors == []
        and s.completion.max_new_tokens == 48
        and isinstance(s.completion.max_new_tokens, int)
    )


def test_language_switch() -> None:
    s, _, _ = apply_settings(Settings(), {"languages": {"python": False}})
    assert not s.language_enabled("python") and s.language_enabled("rust")
    assert not Settings().language_enabled("markdown")


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [n for n in setting_names() if f"`{n}`" not in readme]
    assert not missing, f"settings missing from README's configuration reference: {missing}"


def test_readme_configuration_table_is_generated_from_the_code() -> None:
    from tactful.config import settings_markdown

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert section.strip() == settings_markdown().strip(), (
        "regenerate with: python -m tactful.config"
    )


def test_engine_section_validates_and_never_echoes_a_secret() -> None:
    s, errors, _ = apply_settings(
        Settings(),
        {
            "engine": {
                "url": "http://127.0.0.1:8000/v1",
                "apiKeyEnv": "VLLM_API_KEY",
                "maxConcurrent": 8,
            }
        },
    )
    assert errors == [] and s.engine.url == "http://127.0.0.1:8000/v1"
    assert s.engine.api_key_env == "VLLM_API_KEY" and s.engine.max_concurrent == 8
    assert Settings().engine.url is None  # no engine unless asked
    secret = "sk-proj-0123456789abcdef"
    bad, errors, _ = apply_settings(
        s,
        {
            "engine": {
                "apiKeyEnv": secret,
                "url": f"https://user:{secret}@gpu.example/v1",
                "template": "gpt",
                "onUnreachable": "retry",
            }
        },
    )
    assert bad.engine == s.engine  # all four kept their previous values
    assert len(errors) == 4 and not any(secret in e for e in errors)
    assert any("tactful.engine.apiKeyEnv" in e and "never the key itself" in e for e in errors)
    for url in ("ftp://h/v1", "http:///v1", "http://h:99999/v1", "http://h/v1?key=x", 3):
        _, errors, _ = apply_settings(Settings(), {"engine": {"url": url}})
        assert errors, url
