"""Issue 20: the page's status line says what ends a turn (TURN_DETECTION), so a person
trying the semantic mode can see it is on, and which silence the other mode waits for."""

from __future__ import annotations

import gradio as gr
import pytest

from engine.base import EngineInfo
from settings import Settings
from web.sessions import StreamSlots


class _Engine:
    info = EngineInfo(model="m", engine="fake", device="cpu", multilingual=False)


def _status_html(settings: Settings) -> list[str]:
    """Every status line the live tab shows: its first render and one after a tick."""
    from web.page import build_live_tab

    with gr.Blocks() as page:
        build_live_tab(_Engine(), settings, StreamSlots(4))
    return [b.value for b in page.blocks.values() if getattr(b, "elem_id", None) == "status"]


@pytest.mark.parametrize(
    ("settings", "shown"),
    [
        (Settings(turn_detection="semantic"), "semantic turns (auto)"),
        (Settings(turn_detection="silence", min_silence_ms=700), "silence 700 ms"),
    ],
)
def test_status_line_names_the_turn_mode(settings: Settings, shown: str) -> None:
    (status,) = _status_html(settings)
    assert f'<span class="rtw-turns">{shown}</span>' in status


def test_every_render_keeps_the_turn_mode() -> None:
    from streaming.options import SessionOptions
    from web.live import TabState
    from web.page import render, turn_label

    turns = turn_label(SessionOptions(turn_detection="semantic", eagerness="high"))
    tab = TabState()
    tab.live = True
    status = render(tab, _Engine(), StreamSlots(4), turns=turns)[2]
    assert "semantic turns (high)" in status and "live" in status
