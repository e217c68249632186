"""Configuration: one typed place, every variable documented in the README."""

from __future__ import annotations

import argparse
from pathlib import Path

from settings import Settings, env_name, markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_env_vars_are_read(monkeypatch):
    monkeypatch.setenv("MODEL", "embedded:base")
    monkeypatch.setenv("MAX_STREAMS", "3")
    monkeypatch.setenv("MIN_SILENCE_MS", "700")
    monkeypatch.setenv("MODEL_CACHE", "~/somewhere")
    s = Settings.from_env()
    assert (s.model, s.max_streams, s.min_silence_ms) == ("embedded:base", 3, 700)
    assert not s.model_cache.startswith("~")


def test_cli_flags_override_env(monkeypatch):
    monkeypatch.setenv("MODEL", "embedded:base")
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    s = Settings.from_args(parser.parse_args(["--model", "embedded:tiny.en", "--max-streams", "5"]))
    assert (s.model, s.max_streams) == ("embedded:tiny.en", 5)


def test_every_variable_is_in_the_readme():
    readme = README.read_text()
    missing = [env_name(i) for i in Settings.model_fields.values() if f"`{env_name(i)}`" not in readme]
    assert not missing, f"README lacks {missing}; paste `python -m settings` output"
    assert markdown_table().splitlines()[0] in readme


def test_a_malformed_value_names_its_variable(monkeypatch):
    """Issue 17, case 10: before, `int('lots')` raised a bare ValueError without the name."""
    from settings import SettingsError

    monkeypatch.setenv("MAX_STREAMS", "lots")
    monkeypatch.setenv("REMOTE_TIMEOUT_S", "1,5")
    try:
        Settings.from_env()
    except SettingsError as exc:
        message = str(exc)
    else:
        raise AssertionError("a malformed MAX_STREAMS was accepted")
    assert "MAX_STREAMS='lots'" in message and "integer" in message
    assert "REMOTE_TIMEOUT_S='1,5'" in message


def test_a_malformed_flag_names_the_flag(monkeypatch):
    from settings import SettingsError

    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    try:
        Settings.from_args(parser.parse_args(["--min-silence-ms", "soon"]))
    except SettingsError as exc:
        assert "--min-silence-ms='soon'" in str(exc)
    else:
        raise AssertionError("a malformed --min-silence-ms was accepted")


def test_choices_are_checked_at_start(monkeypatch):
    from settings import SettingsError

    monkeypatch.setenv("ENGINE", "vlm")
    try:
        Settings.from_env()
    except SettingsError as exc:
        assert "ENGINE='vlm'" in str(exc) and "'vllm'" in str(exc)
    else:
        raise AssertionError("ENGINE=vlm was accepted")


def test_secrets_never_print(monkeypatch):
    """Issue 17, case 10: the settings object's repr printed API_KEY, HF_TOKEN and OPENAI_API_KEY."""
    from settings import SettingsError

    monkeypatch.setenv("API_KEY", "k-app-secret")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    s = Settings.from_env()
    for text in (repr(s), str(s), str(s.model_dump())):
        assert "secret" not in text, text
    assert s.api_key.get_secret_value() == "k-app-secret"
    assert s.remote_token == "hf_secret_token"  # HF_TOKEN first, then OPENAI_API_KEY
    monkeypatch.setenv("HF_TOKEN", "")
    assert Settings.from_env().remote_token == "sk-secret"
    monkeypatch.setenv("MAX_STREAMS", "x")  # an error message never shows a secret either
    try:
        Settings.from_env(api_key=["sk-leaked"])
    except SettingsError as exc:
        assert "sk-leaked" not in str(exc) and "MAX_STREAMS='x'" in str(exc)
    else:
        raise AssertionError("MAX_STREAMS=x was accepted")


def test_assignment_is_checked_and_a_secret_stays_secret():
    s = Settings()
    s.api_key = "own-key"  # tests and flags assign later: still a SecretStr
    assert s.api_key.get_secret_value() == "own-key" and "own-key" not in repr(s)


def test_the_app_stops_with_the_variable_named(monkeypatch, capsys):
    import app

    monkeypatch.setenv("MAX_JOBS", "two")
    monkeypatch.setattr("sys.argv", ["app.py"])
    try:
        app.main()
    except SystemExit as exc:
        assert "MAX_JOBS='two'" in str(exc.code)
    else:
        raise AssertionError("the app started with MAX_JOBS=two")
