"""Answer extraction (numbers) and string normalisation for generative tasks.

Extractors and normalisers are registries (:func:`register_extractor`,
:func:`register_normalizer`); a :class:`~frugalmerge.evaluation.tasks.TaskSpec` names them.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable

EXTRACTORS: dict[str, Callable[[str, str], str | None]] = {}
NORMALIZERS: dict[str, Callable[[str], str]] = {}

#: Languages that write decimals with a comma and group thousands with "." or a space.
DECIMAL_COMMA = frozenset({"de", "fr", "es", "it", "pt", "nl", "ru", "pl", "cs", "sv", "da", "no",
                           "fi", "tr", "id"})

# "The answer is" in the MGSM languages (the exemplar answer prefixes) and a few more.
ANSWER_PREFIXES = (
    r"the (?:final )?answer is", r"answer\s*:", r"die antwort (?:lautet|ist)", r"antwort\s*:",
    r"la réponse est", r"réponse\s*:", r"la respuesta es", r"respuesta\s*:", r"ответ\s*:?",
    r"答案是", r"答案\s*[:：]", r"答えは", r"答え\s*[:：]", r"jibu ni", r"jibu\s*:",
    r"คำตอบคือ", r"คำตอบ\s*:", r"উত্তর হল", r"উত্তর\s*:", r"సమాధానం\s*:?", r"la risposta è",
    r"a resposta é",
)
_PREFIX_RE = re.compile("(?:" + "|".join(ANSWER_PREFIXES) + ")", re.IGNORECASE)

_SIGN = r"[-−–]?"
_CURRENCY = r"(?:[$€£¥₹]\s?)?"
#: Languages that group thousands with a plain space ("1 250"); elsewhere "3 250" is two numbers.
SPACE_GROUPING = frozenset({"fr", "ru", "pl", "cs", "sk", "sv", "no", "nb", "fi", "uk", "bg",
                            "et", "lv", "lt", "hu"})


def _number_pattern(space_grouping: bool) -> str:
    # One number token: grouped thousands (1,234,567 / 1.234.567 / 1 234 with a no-break space,
    # or a plain space where the language groups that way; a group is exactly three digits, so
    # 3.14159 is not grouped), plain integers, decimals with either separator.
    seps = ",.\u00a0\u202f" + (" " if space_grouping else "")
    return (_SIGN + _CURRENCY + _SIGN
            + rf"(?:\d{{1,3}}(?:[{seps}]\d{{3}}(?!\d))+(?:[.,]\d+)?|\d+(?:[.,]\d+)?|[.,]\d+)")


_NUMBER_RE = {grouped: re.compile(_number_pattern(grouped)) for grouped in (False, True)}


def _number_re(language: str) -> re.Pattern:
    return _NUMBER_RE[language.split("-")[0].lower() in SPACE_GROUPING]


def register_extractor(name: str):
    """Decorator registering ``extract(text, language) -> number string | None``."""

    def decorator(func):
        EXTRACTORS[name] = func
        return func

    return decorator


def register_normalizer(name: str):
    """Decorator registering ``normalize(text) -> text`` for exact string match."""

    def decorator(func):
        NORMALIZERS[name] = func
        return func

    return decorator


def find_numbers(text: str, language: str = "en") -> list[str]:
    """Every number token of ``text`` (raw, with signs, currency and separators)."""
    return [m.group(0) for m in _number_re(language).finditer(text)]


def parse_number(raw: str, language: str = "en") -> float | None:
    """The value of a number token: handles signs (incl. U+2212), currency, thousands separators
    and decimal commas (for :data:`DECIMAL_COMMA` languages, ``1.234,5`` is 1234.5; a lone
    ``3,5`` is 3.5 there and 35 elsewhere only when followed by three digits, e.g. ``3,500``)."""
    s = raw.strip()
    negative = bool(re.match(r"^[-−–]", s)) or bool(re.search(r"[$€£¥₹]\s?[-−–]", s))
    digits = re.sub(r"[^\d.,\u00a0\u202f ]", "", s).strip()
    digits = digits.replace("\u00a0", " ").replace("\u202f", " ")
    if not digits or not any(c.isdigit() for c in digits):
        return None
    comma_decimal = language.split("-")[0].lower() in DECIMAL_COMMA
    group, decimal = (".", ",") if comma_decimal else (",", ".")
    # A single separator followed by exactly three digits, the other one absent: a grouping
    # separator in either convention (80.000 in German, 80,000 in English) unless it is the
    # language's decimal mark and the number would otherwise be unusual; treat as grouping.
    if re.fullmatch(r"\d{1,3}([.,])\d{3}", digits):
        digits = digits.replace(",", "").replace(".", "")
    else:
        digits = digits.replace(" ", "").replace(group, "")
        if decimal == ",":
            digits = digits.replace(",", ".")
        elif digits.count(",") and not digits.count("."):
            digits = digits.replace(",", "")
    try:
        value = float(digits)
    except ValueError:
        return None
    return -value if negative else value


@register_extractor("last_number")
def extract_last_number(text: str, language: str = "en") -> str | None:
    """The last number in the text."""
    numbers = find_numbers(text, language)
    return numbers[-1] if numbers else None


@register_extractor("hash")
def extract_hash(text: str, language: str = "en") -> str | None:
    """The first number after the last ``####`` (GSM8K solutions)."""
    if "####" not in text:
        return None
    numbers = find_numbers(text.rsplit("####", 1)[1], language)
    return numbers[0] if numbers else None


@register_extractor("answer_is")
def extract_answer_is(text: str, language: str = "en") -> str | None:
    """The first number after the last "The answer is" (or a localised variant)."""
    matches = list(_PREFIX_RE.finditer(text))
    if not matches:
        return None
    numbers = find_numbers(text[matches[-1].end():], language)
    return numbers[0] if numbers else None


@register_extractor("auto")
def extract_auto(text: str, language: str = "en") -> str | None:
    """``####`` first, then "The answer is", then the last number."""
    for name in ("hash", "answer_is", "last_number"):
        found = EXTRACTORS[name](text, language)
        if found is not None:
            return found
    return None


_COMPLETE_RE = re.compile(
    r"(?:" + "|".join(ANSWER_PREFIXES) + r"|####)\s*" + _number_pattern(True)
    + r"(?=\s*[^\d.,\s\u00a0\u202f]|[.,][^\d])",
    re.IGNORECASE,
)


def answer_complete(text: str) -> bool:
    """Whether ``text`` already states a final answer that more text cannot change: an answer
    prefix or ``####`` followed by a number and then (after optional spaces) a character that
    cannot extend it: not a digit or separator ("1 250" is one number in French), and "." only
    when a non-digit follows it."""
    return _COMPLETE_RE.search(text) is not None


def numbers_equal(a: float | None, b: float | None, tolerance: float = 1e-6) -> bool:
    """Equal within an absolute ``tolerance`` (None never equals anything).

    Absolute, not relative: a relative 1e-6 would call 1,450,000 and 1,450,001 equal.
    """
    if a is None or b is None:
        return False
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=tolerance)


def numeric_match(response: str, reference: str, *, extractor: str = "auto",
                  language: str = "en", tolerance: float = 1e-6) -> bool:
    """Whether the number extracted from ``response`` equals the reference number."""
    if extractor not in EXTRACTORS:
        raise KeyError(f"unknown extractor {extractor!r}; known: {sorted(EXTRACTORS)}")
    raw = EXTRACTORS[extractor](response, language)
    if raw is None:
        return False
    ref = parse_number(reference, "en")  # references are stored plainly (GSM8K/MGSM: 70000)
    if ref is None:
        ref = parse_number(reference, language)
    return numbers_equal(parse_number(raw, language), ref, tolerance)


@register_normalizer("strict")
def normalize_strict(text: str) -> str:
    """Only surrounding whitespace removed."""
    return text.strip()


@register_normalizer("whitespace")
def normalize_whitespace(text: str) -> str:
    """Runs of whitespace collapsed to one space, surrounding whitespace removed."""
    return " ".join(text.split())


@register_normalizer("loose")
def normalize_loose(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed, surrounding quotes and final punctuation removed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = " ".join(text.split())
    return text.strip(" \"'`“”‘’«»").rstrip(".!?。").strip()


def exact_match(response: str, reference: str, normalizer: str = "loose") -> bool:
    """Whether response and reference are equal after the named normalisation."""
    if normalizer not in NORMALIZERS:
        raise KeyError(f"unknown normalizer {normalizer!r}; known: {sorted(NORMALIZERS)}")
    norm = NORMALIZERS[normalizer]
    return norm(response) == norm(reference)
