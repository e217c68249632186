"""Hallucination: words emitted on the non-speech clips of the eval set (goal: none).

Each non-speech clip (silence, noise, hum, music, birds, whales...) goes

* through the live pipeline: a streaming `Session` with default `SessionOptions`, fed
  as fast as it takes the frames (the VAD and guards do not depend on the clock);
  every word of every final counts, and the words of partials are counted apart
  (a partial is shown to the user too);
* through the offline engine (`transcribe()`, what an upload gets), 8 at a time.

Words are counted after the Whisper English normaliser (so "♪" or "[Music]" count 0).
`nonspeech_words` = streaming final words + offline words.
"""

from __future__ import annotations

import numpy as np

from bench.offline import CONCURRENCY, load_items, words


def measure_hallucination(engine, plan: dict) -> dict:
    """`engine` is a `bench.peers.Ours` (its vLLM engine and event loop)."""
    from streaming.harness import simulate
    from streaming.session import SessionOptions

    items = load_items(plan["nonspeech"])
    names = [it["name"] for it in plan["nonspeech"]]
    offenders: list[dict] = []
    stream_final = stream_partial = 0
    for (audio, _, _), name in zip(items, names):
        partial_words = 0
        finals: list[str] = []

        def on_event(_i: int, ev, _t: float) -> None:
            nonlocal partial_words
            kind = getattr(ev, "type", None)
            if kind == "partial":
                partial_words = max(partial_words, words(ev.text))
            elif kind == "final":
                finals.append(ev.text)

        async def run() -> dict:
            return await simulate(
                engine.engine,
                np.array(audio, copy=True),
                realtime=False,
                streams=1,
                options=SessionOptions(),
                on_event=on_event,
                warmup=False,
            )

        engine.run(run(), timeout=300)
        final_text = " ".join(finals)
        n = words(final_text)
        stream_final += n
        stream_partial += partial_words
        if n or partial_words:
            offenders.append({"clip": name, "path": "streaming", "final_words": n, "partial_words": partial_words, "text": final_text[:200]})

    offline_words = 0
    for i in range(0, len(items), CONCURRENCY):
        chunk = items[i : i + CONCURRENCY]
        texts = engine.batch([a for a, _, _ in chunk])
        for text, name in zip(texts, names[i : i + CONCURRENCY]):
            n = words(text)
            offline_words += n
            if n:
                offenders.append({"clip": name, "path": "offline", "words": n, "text": text[:200]})
    return {
        "nonspeech_words": stream_final + offline_words,
        "nonspeech_streaming_words": stream_final,
        "nonspeech_streaming_partial_words": stream_partial,
        "nonspeech_offline_words": offline_words,
        "nonspeech_clips": len(items),
        "nonspeech_audio_s": round(sum(d for _, _, d in items), 1),
        "offenders": offenders,
    }
