"""What the command lines (`python -m engine`, `python -m streaming`) share."""

from __future__ import annotations

import argparse
import os


def vllm_logs_to_stderr() -> None:
    """Send vLLM's own logs to stderr, warnings and worse only.

    Must run before vLLM is imported (it reads these once): its logs would otherwise
    go to stdout, mixed with the transcript or the JSON lines a command prints.
    """
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def command_parser(prog: str, description: str | None, command: str, help: str) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """(the program's parser, its one sub-command's parser) taking an audio FILE."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    command_parser = sub.add_parser(command, help=help)
    command_parser.add_argument("file")
    return parser, command_parser
