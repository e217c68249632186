"""The app as the browser tests run it: loopback-only WebRTC and a stats route.

    python tests/e2e/e2e_server.py            # real engine (Settings from env / flags, like app.py)

Differences from `app.py`, all for a machine whose only network is loopback:
- aioice leaves loopback out of its ICE candidates; here it offers 127.0.0.1 only;
- TURN is off (`TURN_PROVIDER=none`): neither side asks a STUN/TURN server;
- `GET /e2e/stats` returns the page's live-stream counters (`web.live.STATS`): frames
  received, streams started/refused/active, so a test can see that "stop" stops the audio.
`E2E_FAKE_ENGINE=1` uses a tiny fake engine (UI development without vLLM).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def loopback_only_ice() -> None:
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []


def main() -> None:
    os.environ["TURN_PROVIDER"] = "none"
    loopback_only_ice()
    import uvicorn

    import app as app_module
    from settings import Settings
    from web.live import STATS

    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    settings = Settings.from_args(parser.parse_args())
    settings.turn_provider = "none"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.environ.get("E2E_FAKE_ENGINE") == "1":
        from tests.fakes import PageFakeEngine

        engine = PageFakeEngine()
    else:
        from engine.factory import create_engine

        engine = create_engine(settings)
    api = app_module.build_app(engine, settings)

    @api.get("/e2e/stats")
    async def e2e_stats() -> dict[str, object]:
        slots = api.state.slots
        return {**STATS.to_dict(), "slots_active": slots.active, "slots_limit": slots.limit}

    @api.post("/e2e/drop")
    async def e2e_drop() -> dict[str, object]:
        """Close every page WebRTC connection from the server side (a dropped network)."""
        from fastrtc import WebRTC

        closed = 0
        for block in api.state.page.blocks.values():
            if isinstance(block, WebRTC):
                for pc in list(block.pcs.values()):
                    await pc.close()
                    closed += 1
        return {"closed": closed}

    # The page is mounted at "/": move the new routes in front of Gradio's catch-all.
    for _ in range(2):
        route = api.router.routes.pop()
        api.router.routes.insert(0, route)
    host, port = app_module.server_address()
    logging.getLogger("e2e").info("e2e server on http://%s:%d (engine %s)", host, port, engine.info.model)
    uvicorn.run(api, host=host, port=port, log_level="warning")


if __name__ == "__main__":
    main()
