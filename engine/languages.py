"""Whisper's languages: one table for every part of the app that names a language.

The codes are those of Whisper's tokenizer (`<|en|>`, `<|de|>`... in vocabulary order);
a multilingual model's own vocabulary says which of them it knows
(`engine.tokens.WhisperVocabulary.language_ids`), and `supported_languages` prefers it.
The names serve the page's language menu, the API's `verbose_json` (which reports
"english" like OpenAI's) and remote servers that answer a name where a code is expected.
"""

from __future__ import annotations

import re
from typing import Any

#: A language token of Whisper's vocabulary (`<|en|>`, `<|haw|>`), the code captured.
LANGUAGE_TOKEN = re.compile(r"^<\|([a-z]{2,3})\|>$")

#: Code -> English name, in the order of Whisper's language tokens.
LANGUAGES: dict[str, str] = {
    "en": "English", "zh": "Chinese", "de": "German", "es": "Spanish", "ru": "Russian", "ko": "Korean",
    "fr": "French", "ja": "Japanese", "pt": "Portuguese", "tr": "Turkish", "pl": "Polish", "ca": "Catalan",
    "nl": "Dutch", "ar": "Arabic", "sv": "Swedish", "it": "Italian", "id": "Indonesian", "hi": "Hindi",
    "fi": "Finnish", "vi": "Vietnamese", "he": "Hebrew", "uk": "Ukrainian", "el": "Greek", "ms": "Malay",
    "cs": "Czech", "ro": "Romanian", "da": "Danish", "hu": "Hungarian", "ta": "Tamil", "no": "Norwegian",
    "th": "Thai", "ur": "Urdu", "hr": "Croatian", "bg": "Bulgarian", "lt": "Lithuanian", "la": "Latin",
    "mi": "Maori", "ml": "Malayalam", "cy": "Welsh", "sk": "Slovak", "te": "Telugu", "fa": "Persian",
    "lv": "Latvian", "bn": "Bengali", "sr": "Serbian", "az": "Azerbaijani", "sl": "Slovenian", "kn": "Kannada",
    "et": "Estonian", "mk": "Macedonian", "br": "Breton", "eu": "Basque", "is": "Icelandic", "hy": "Armenian",
    "ne": "Nepali", "mn": "Mongolian", "bs": "Bosnian", "kk": "Kazakh", "sq": "Albanian", "sw": "Swahili",
    "gl": "Galician", "mr": "Marathi", "pa": "Punjabi", "si": "Sinhala", "km": "Khmer", "sn": "Shona",
    "yo": "Yoruba", "so": "Somali", "af": "Afrikaans", "oc": "Occitan", "ka": "Georgian", "be": "Belarusian",
    "tg": "Tajik", "sd": "Sindhi", "gu": "Gujarati", "am": "Amharic", "yi": "Yiddish", "lo": "Lao",
    "uz": "Uzbek", "fo": "Faroese", "ht": "Haitian Creole", "ps": "Pashto", "tk": "Turkmen", "nn": "Nynorsk",
    "mt": "Maltese", "sa": "Sanskrit", "lb": "Luxembourgish", "my": "Myanmar", "bo": "Tibetan", "tl": "Tagalog",
    "mg": "Malagasy", "as": "Assamese", "tt": "Tatar", "haw": "Hawaiian", "ln": "Lingala", "ha": "Hausa",
    "ba": "Bashkir", "jw": "Javanese", "su": "Sundanese", "yue": "Cantonese",
}

_CODES_BY_NAME = {name.lower(): code for code, name in LANGUAGES.items()}


def language_name(code: str) -> str:
    """"english" for "en", as OpenAI's verbose_json reports it; an unknown code as is."""
    return LANGUAGES.get(code.lower(), code).lower()


def language_code(value: str) -> str:
    """"en" for "en", "English" or "english": what a remote server answered, as a code.
    A value that is neither a known code nor a known name is returned lower-cased."""
    value = value.strip().lower()
    return value if value in LANGUAGES else _CODES_BY_NAME.get(value, value)


def supported_languages(engine: Any) -> dict[str, str]:
    """Code -> name of the languages an engine can be asked for: "en" alone for an
    English-only model; the model's own language tokens when its vocabulary is at hand
    (the in-process engine); else every language Whisper knows (a remote endpoint)."""
    if not engine.info.multilingual:
        return {"en": LANGUAGES["en"]}
    vocab = getattr(engine, "vocab", None)
    codes = getattr(vocab, "language_ids", None)
    if codes:
        return {code: LANGUAGES.get(code, code) for code in codes}
    return dict(LANGUAGES)
