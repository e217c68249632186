"""Per-connection streaming pipeline: frames in, partial/final transcript events out.

Engine-independent building blocks (each one job, importable on its own):

* `streaming.resample`  - FrameResampler: any frame (rate, dtype, layout) -> 16 kHz mono float32
* `streaming.vad`       - SileroVAD: Silero v6 speech probability per 32 ms window (onnxruntime)
* `streaming.segmenter` - Segmenter: windows + probabilities -> utterance start/end events
* `streaming.stabilize` - LocalAgreement: stable committed text from successive partials
* `streaming.guards`    - phantom-phrase and repetition-loop guards (pure functions)
* `streaming.events`    - TranscriptEvent / StatusEvent / ErrorEvent (the contract)
* `streaming.scheduler` - DecodeGate: per-engine cap on partial decodes (finals first)
* `streaming.transcript`- Transcript: finals, exported as txt / srt / vtt / json
* `streaming.session`   - Session: all of the above for one live stream
* `streaming.harness`   - simulate(): files through sessions on a real-time clock, scored
  (`python -m streaming simulate FILE ...`)

Nothing is imported here, so `import streaming` stays cheap (no onnxruntime load).
"""
