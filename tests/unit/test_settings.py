"""Configuration: one typed place, every variable documented in the README."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from settings import Settings, markdown_table

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
    missing = [f.metadata["env"] for f in fields(Settings) if f"`{f.metadata['env']}`" not in readme]
    assert not missing, f"README lacks {missing}; paste `python -m settings` output"
    assert markdown_table().splitlines()[0] in readme
