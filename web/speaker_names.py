"""Names a person gives the speakers of one transcript on the page (issue 19).

Finals and stored segments keep their labels ("Speaker 1" live, "A" in a recording): the
labels are what the clustering gave, and the API and realtime events carry only them. A
transcript's names (label -> name: `TabState.speaker_names` live,
`TranscriptInfo.speaker_names` stored, written by `TranscriptStore.name_speaker`) change how
the page shows and exports that one transcript: the Live tab's panel and downloads, the
History's viewer and downloads.

The rule (`renamed`): only a label the transcript has can be named; a name is one line of
at most MAX_SPEAKER_NAME characters (`web.store_sql.speaker_name`, so the page shows what
the store keeps), escaped like any text where it is shown; an empty name gives the label
back.

The control (`speaker_control`): a dropdown of the transcript's labels, a name box and a
button, hidden while the transcript has no labels. `rename_live` and `rename_stored` are
its handlers' work on the Live tab and in the History.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import Any

import gradio as gr

from streaming.events import TranscriptEvent
from streaming.transcript import Transcript
from web.recorder import LiveRecorder
from web.store import StoredTranscript, StoreError, TranscriptStore
from web.store_sql import MAX_SPEAKER_NAME, speaker_name


class RenameRefused(ValueError):
    """A name for a label the transcript does not have."""


def labels_of(speakers: Iterable[str | None]) -> list[str]:
    """A transcript's speaker labels, each once, in order of first appearance."""
    return list(dict.fromkeys(s for s in speakers if s))


def speakers_of(pieces: Iterable[Any]) -> Iterable[str | None]:
    """Every speaker label of finals or segments in order: each one's own, then its words'
    (a final whose voice changes inside it labels its words)."""
    for piece in pieces:
        yield piece.speaker
        for word in getattr(piece, "words", None) or ():
            yield word.speaker


def renamed(names: Mapping[str, str], labels: Iterable[str], label: str | None, name: str | None) -> dict[str, str]:
    """The transcript's names after naming `label` `name` ("" gives the label back)."""
    if not label or label not in set(labels):
        raise RenameRefused(f"This transcript has no speaker {label!r}." if label else "Choose a speaker to rename.")
    out = dict(names)
    clean = speaker_name(name or "")
    if clean:
        out[label] = clean
    else:
        out.pop(label, None)
    return out


def shown_speaker(label: str | None, names: Mapping[str, str]) -> str | None:
    """What the page writes for a label: its name, else the label (None: no label)."""
    return names.get(label, label) if label else label


def named(events: Iterable[TranscriptEvent], names: Mapping[str, str]) -> Transcript:
    """A transcript whose finals carry the speakers' names, for its downloads."""
    return Transcript([_renamed_event(e, names) for e in events])


def _renamed_event(event: TranscriptEvent, names: Mapping[str, str]) -> TranscriptEvent:
    """The final with its speaker's and its words' speakers' names."""
    if not names:
        return event
    words = tuple(dataclasses.replace(w, speaker=names[w.speaker]) if w.speaker in names else w for w in event.words)
    return dataclasses.replace(event, speaker=names.get(event.speaker, event.speaker) if event.speaker else None, words=words)


# -- the control ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SpeakerControl:
    """The rename control's components; `outputs` are the two its updates change."""

    row: Any
    pick: Any
    name: Any
    button: Any

    @property
    def outputs(self) -> list[Any]:
        return [self.row, self.pick]


def speaker_control(prefix: str) -> SpeakerControl:
    """The control, hidden until a transcript with speaker labels is shown (call inside a
    Blocks); elem_ids `{prefix}-speakers`, `-speaker-pick`, `-speaker-name`, `-speaker-rename`."""
    with gr.Row(visible=False, equal_height=True, elem_id=f"{prefix}-speakers") as row:
        pick = gr.Dropdown([], value=None, label="Speaker", scale=1, min_width=110, elem_id=f"{prefix}-speaker-pick")
        name = gr.Textbox(
            label="Name", placeholder="Name for this transcript (empty: the label)", max_length=MAX_SPEAKER_NAME,
            scale=2, min_width=120, elem_id=f"{prefix}-speaker-name",
        )
        button = gr.Button("Rename speaker", size="sm", scale=0, min_width=80, elem_id=f"{prefix}-speaker-rename")
    return SpeakerControl(row, pick, name, button)


def control_updates(labels: list[str], names: Mapping[str, str], *, keep_choice: bool = False) -> list[Any]:
    """Updates for `SpeakerControl.outputs`: shown with these labels (each with its name), or
    hidden without any. `keep_choice`: leave the person's chosen label as it is."""
    if not labels:
        return [gr.update(visible=False), gr.update(choices=[], value=None)]
    choices = [(f"{label} ({names[label]})" if label in names else label, label) for label in labels]
    pick = gr.update(choices=choices) if keep_choice else gr.update(choices=choices, value=labels[0])
    return [gr.update(visible=True), pick]


# -- the handlers' work --------------------------------------------------------------------


def rename_live(tab: Any, label: str | None, name: str | None) -> Future[bool] | None:
    """The Live tab's Rename: the tab (a `web.live.TabState`) shows and exports the name from
    its next render, and its stored transcript keeps it (a reload shows it again,
    `web.recorder.restore`). Raises gr.Error for a label the transcript does not have.

    Returns the store's write (failures also land in the tab's message), None without one."""
    labels = labels_of(speakers_of(tab.transcript.finals))
    try:
        tab.speaker_names = renamed(tab.speaker_names, labels, label, name)
    except RenameRefused as exc:
        raise gr.Error(str(exc), title="Not renamed") from exc
    tab.version += 1  # the panel and the downloads are written again
    sink = tab.sink
    if isinstance(sink, LiveRecorder):
        return sink.name_speaker(str(label), tab.speaker_names.get(str(label), ""))
    return None


async def rename_stored(
    store: TranscriptStore, transcript_id: str | None, browser_id: str | None, label: str | None, name: str | None
) -> StoredTranscript:
    """The History's Rename: the stored transcript with the new name, kept by the store.
    Raises gr.Error for a transcript that is gone or a label it does not have."""
    if not transcript_id or not browser_id:
        raise gr.Error("Open a transcript first.", title="Not renamed")
    try:
        stored = await asyncio.to_thread(store.get, transcript_id, browser_id)
        if stored is None:
            raise gr.Error("That transcript is gone (deleted, or kept by another browser).", title="Not renamed")
        try:
            names = renamed(stored.info.speaker_names, labels_of(speakers_of(stored.segments)), label, name)
        except RenameRefused as exc:
            raise gr.Error(str(exc), title="Not renamed") from exc
        kept = await asyncio.wrap_future(store.name_speaker(transcript_id, browser_id, str(label), names.get(str(label), "")))
    except StoreError as exc:
        raise gr.Error(str(exc), title="Not renamed") from exc
    if not kept:
        raise gr.Error("That transcript is gone (deleted, or kept by another browser).", title="Not renamed")
    return dataclasses.replace(stored, info=dataclasses.replace(stored.info, speaker_names=names))
