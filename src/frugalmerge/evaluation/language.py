"""Offline language identification for the language-fidelity rule (nothing is downloaded).

Two registered detectors:

- ``builtin``: Unicode scripts for languages with their own script (ja, zh, ko, th, ru, bn, te,
  hi, ar, el, he) and embedded stop-word lists for Latin-script languages;
- ``benchmark``: character 1-3-gram profiles trained from the benchmark's own prompts, grouped by
  item language (works for any language the benchmark contains, including invented ones).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

DETECTORS: dict[str, Callable[..., LanguageDetector]] = {}

_WORD_RE = re.compile(r"[^\W\d_]+", re.UNICODE)


class LanguageDetector(Protocol):
    """Anything with ``detect(text) -> (language or None, confidence in [0, 1])``."""

    def detect(self, text: str) -> tuple[str | None, float]: ...


def register_detector(name: str):
    """Decorator registering a detector factory ``factory(texts_by_language=None)``."""

    def decorator(factory):
        DETECTORS[name] = factory
        return factory

    return decorator


def words(text: str) -> list[str]:
    """Lower-cased alphabetic words of ``text`` (digits and punctuation dropped)."""
    return _WORD_RE.findall(text.casefold())


# --- builtin: scripts + stop words ------------------------------------------------------------

# Unicode name prefixes of scripts that identify a language on their own.
_SCRIPTS = (("HIRAGANA", "ja"), ("KATAKANA", "ja"), ("HANGUL", "ko"), ("THAI", "th"),
            ("CYRILLIC", "ru"), ("BENGALI", "bn"), ("TELUGU", "te"), ("DEVANAGARI", "hi"),
            ("ARABIC", "ar"), ("GREEK", "el"), ("HEBREW", "he"), ("CJK UNIFIED", "zh"))

STOP_WORDS: dict[str, frozenset[str]] = {
    lang: frozenset(text.split()) for lang, text in {
        "en": "the a an and of to in is are was were it that this for on with as at by from he "
              "she they we you his her their has have had be been not but or if so what how many "
              "much does do did each every there then than will would can after before more",
        "de": "der die das den dem des ein eine einen einem einer und ist sind war waren es zu "
              "im in mit von für auf nicht sich auch wie viele viel hat haben hatte er sie wir "
              "ihr ich noch nach wenn dann aber oder als bei aus jeden jede jeder kauft pro wird",
        "fr": "le la les un une des et est sont était il elle ils elles nous vous de du au aux "
              "en dans pour sur avec par pas que qui combien a ont avait chaque fois plus ce cette "
              "ses son sa leur mais ou donc si alors après jour",
        "es": "el la los las un una unos unas y es son era fue de del al en con por para que "
              "cuántos cuántas cuánto tiene tienen tenía cada más su sus pero o si entonces "
              "después se lo le les muy día",
        "it": "il lo la i gli le un una e è sono era di del della dei in con per che quanti "
              "quante ha hanno aveva ogni più suo sua ma o se poi dopo giorno",
        "pt": "o a os as um uma e é são era de do da dos das em no na com por para que quantos "
              "quantas tem têm tinha cada mais seu sua mas ou se então depois dia",
        "nl": "de het een en is zijn was waren van in met voor op niet dat die hoeveel heeft "
              "hebben had elke meer zijn haar maar of als dan na dag",
        "sw": "na ya wa kwa ni za la katika kila je ngapi yake wake alikuwa ana wana siku kama "
              "hii huo hiyo mmoja moja pia lakini au kisha baada zaidi",
    }.items()
}


class BuiltinDetector:
    """Scripts first (a script covering most letters decides), then stop words."""

    def __init__(self, stop_words: Mapping[str, frozenset[str]] = STOP_WORDS) -> None:
        self.stop_words = dict(stop_words)

    @property
    def languages(self) -> frozenset[str]:
        """The languages ``detect`` can return."""
        return frozenset(self.stop_words) | {lang for _, lang in _SCRIPTS}

    @staticmethod
    def script_counts(text: str) -> Counter:
        """Letters per identifying script (``latin`` for Latin letters)."""
        counts: Counter = Counter()
        for ch in text:
            if not ch.isalpha():
                continue
            name = unicodedata.name(ch, "")
            if name.startswith("LATIN"):
                counts["latin"] += 1
                continue
            for prefix, lang in _SCRIPTS:
                if name.startswith(prefix):
                    counts[lang] += 1
                    break
        return counts

    def detect(self, text: str) -> tuple[str | None, float]:
        counts = self.script_counts(text)
        total = sum(counts.values())
        if total == 0:
            return None, 0.0
        if counts["ja"]:  # kana anywhere: Japanese (kanji are counted as zh)
            counts["ja"] += counts.pop("zh", 0)
        script, n = counts.most_common(1)[0]
        if script != "latin":
            return script, n / total
        hits = Counter()
        for w in words(text):
            for lang, stops in self.stop_words.items():
                if w in stops:
                    hits[lang] += 1
        if not hits:
            return None, 0.0
        ranked = hits.most_common(2)
        best, top = ranked[0]
        second = ranked[1][1] if len(ranked) > 1 else 0
        if top == second:
            return None, 0.0
        return best, (top - second) / top


@register_detector("builtin")
def builtin_detector(texts_by_language: Mapping[str, Iterable[str]] | None = None) -> BuiltinDetector:
    """The embedded script + stop-word detector (``texts_by_language`` is ignored)."""
    return BuiltinDetector()


# --- benchmark: character n-gram profiles -----------------------------------------------------

def char_ngrams(text: str, orders: tuple[int, ...] = (1, 2, 3)) -> Counter:
    """Character n-gram counts of the words of ``text`` (each word padded with spaces)."""
    grams: Counter = Counter()
    for w in words(text):
        padded = f" {w} "
        for n in orders:
            for i in range(len(padded) - n + 1):
                grams[padded[i:i + n]] += 1
    return grams


class NgramDetector:
    """Cosine similarity between a text's character n-grams and per-language profiles."""

    def __init__(self, profiles: Mapping[str, Counter]) -> None:
        if not profiles:
            raise ValueError("an n-gram detector needs at least one language profile")
        self.profiles = {lang: dict(p) for lang, p in profiles.items()}
        self.norms = {lang: math.sqrt(sum(v * v for v in p.values()))
                      for lang, p in self.profiles.items()}

    @property
    def languages(self) -> frozenset[str]:
        """The languages ``detect`` can return."""
        return frozenset(self.profiles)

    @classmethod
    def fit(cls, texts_by_language: Mapping[str, Iterable[str]]) -> NgramDetector:
        """Profiles from example texts of each language."""
        profiles = {}
        for lang, texts in texts_by_language.items():
            grams: Counter = Counter()
            for t in texts:
                grams.update(char_ngrams(t))
            if grams:
                profiles[lang] = grams
        return cls(profiles)

    def detect(self, text: str) -> tuple[str | None, float]:
        grams = char_ngrams(text)
        norm = math.sqrt(sum(v * v for v in grams.values()))
        if norm == 0:
            return None, 0.0
        scores = {}
        for lang, prof in self.profiles.items():
            dot = sum(c * prof.get(g, 0) for g, c in grams.items())
            scores[lang] = dot / (norm * self.norms[lang]) if self.norms[lang] else 0.0
        ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
        best, top = ranked[0]
        if top <= 0:
            return None, 0.0
        second = ranked[1][1] if len(ranked) > 1 else 0.0
        return best, (top - second) / top


@register_detector("benchmark")
def benchmark_detector(texts_by_language: Mapping[str, Iterable[str]] | None = None) -> NgramDetector:
    """An n-gram detector trained on the benchmark's prompts (passed by the runner)."""
    if not texts_by_language:
        raise ValueError("the 'benchmark' detector needs example texts per language")
    return NgramDetector.fit(texts_by_language)


def make_detector(name: str, texts_by_language: Mapping[str, Iterable[str]] | None = None):
    """Instantiate a registered detector."""
    if name not in DETECTORS:
        raise KeyError(f"unknown language detector {name!r}; known: {sorted(DETECTORS)}")
    return DETECTORS[name](texts_by_language)


def detect_language(text: str) -> tuple[str | None, float]:
    """Language of ``text`` with the builtin detector: ``(code or None, confidence)``."""
    return BuiltinDetector().detect(text)


def passes_language_rule(text: str, target: str, detector: LanguageDetector, *,
                         min_words: int = 3, undetermined: str = "pass") -> bool:
    """Whether ``text`` is in ``target`` (texts too short or unclassifiable follow ``undetermined``).

    Word counts for scripts without spaces (ja, zh, th) count letters / 2 instead of words.
    """
    n_words = len(words(text))
    script_letters = sum(1 for ch in text if ch.isalpha() and ord(ch) > 0x2E80)
    if max(n_words, script_letters // 2) < min_words:
        return undetermined == "pass"
    lang, _ = detector.detect(text)
    if lang is None:
        return undetermined == "pass"
    return lang.split("-")[0].lower() == target.split("-")[0].lower()
