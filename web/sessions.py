"""The process-wide live-stream limit as the web app uses it: `streaming.service.StreamSlots`
with its count shown on /metrics (`rtw_active_sessions`)."""

from __future__ import annotations

from streaming.service import StreamSlots as _StreamSlots
from web.metrics import ACTIVE_SESSIONS


class StreamSlots(_StreamSlots):
    """MAX_STREAMS slots shared by the page and the realtime WebSocket, metered."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit, on_change=ACTIVE_SESSIONS.set)
