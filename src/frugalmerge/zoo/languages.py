"""Word problems and plain sentences in English, German and French, built from templates.

Why this shape (see ``docs/zoo.md``): a cross-lingual merge only works when the skill being
merged lives in tokens every language shares. Every word problem is therefore answered by an
*equation line* in shared symbols (``= 7 + 5 = 12``): reading a problem in a language means
writing its equation (a language skill), solving means computing the result of an equation (a
math skill that never depends on the language). The three languages use real words with a
near word-for-word sentence structure, so one model can share structure across them.

Every problem is generated from a language-independent *structure* (template ids, names,
objects, numbers): the same structure renders to the same problem in every language, and the
train / search / test split of a problem is decided by its structure, so a test problem never
appears in training in any language.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

LANGUAGES: tuple[str, ...] = ("en", "de", "fr")
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French"}

#: Operand range: results 0-20 are learnable by a 1M-parameter model in a few hundred steps.
MAX_NUMBER = 20

# Names are shared across languages (as in real text); the gender picks the pronoun.
NAMES: tuple[tuple[str, str], ...] = (
    ("tom", "m"), ("anna", "f"), ("ben", "m"), ("lea", "f"), ("max", "m"),
    ("emma", "f"), ("paul", "m"), ("julia", "f"), ("leo", "m"), ("nina", "f"),
)

PRONOUNS = {
    "en": {"m": "he", "f": "she"},
    "de": {"m": "er", "f": "sie"},
    "fr": {"m": "il", "f": "elle"},
}

# Countable things (plural forms), index-aligned across languages.
OBJECTS = {
    "en": ("apples", "books", "coins", "pens", "cards", "balls", "cups", "stones"),
    "de": ("äpfel", "bücher", "münzen", "stifte", "karten", "bälle", "tassen", "steine"),
    "fr": ("pommes", "livres", "pièces", "stylos", "cartes", "balles", "tasses", "pierres"),
}

# Distractor things (never asked about).
OTHER_OBJECTS = {
    "en": ("birds", "cars", "trees", "dogs", "boats", "flowers"),
    "de": ("vögel", "autos", "bäume", "hunde", "boote", "blumen"),
    "fr": ("oiseaux", "voitures", "arbres", "chiens", "bateaux", "fleurs"),
}

# Sentence templates, index-aligned across languages. Placeholders: {name} {pron} {name2}
# {n} (a number) {obj} {obj2}.
HAVE = {
    "en": ("{name} has {n} {obj} .", "{name} owns {n} {obj} ."),
    "de": ("{name} hat {n} {obj} .", "{name} besitzt {n} {obj} ."),
    "fr": ("{name} a {n} {obj} .", "{name} possède {n} {obj} ."),
}
GAIN = {
    "en": ("{pron} buys {n} more {obj} .", "{pron} finds {n} more {obj} .",
           "{pron} gets {n} more {obj} ."),
    "de": ("{pron} kauft {n} weitere {obj} .", "{pron} findet {n} weitere {obj} .",
           "{pron} bekommt {n} weitere {obj} ."),
    "fr": ("{pron} achète {n} autres {obj} .", "{pron} trouve {n} autres {obj} .",
           "{pron} reçoit {n} autres {obj} ."),
}
LOSE = {
    "en": ("{pron} sells {n} {obj} .", "{pron} loses {n} {obj} .",
           "{pron} gives {n} {obj} to {name2} ."),
    "de": ("{pron} verkauft {n} {obj} .", "{pron} verliert {n} {obj} .",
           "{pron} gibt {name2} {n} {obj} ."),
    "fr": ("{pron} vend {n} {obj} .", "{pron} perd {n} {obj} .",
           "{pron} donne {n} {obj} à {name2} ."),
}
DISTRACT = {
    "en": ("{name2} has {n} {obj2} .", "{pron} sees {n} {obj2} ."),
    "de": ("{name2} hat {n} {obj2} .", "{pron} sieht {n} {obj2} ."),
    "fr": ("{name2} a {n} {obj2} .", "{pron} voit {n} {obj2} ."),
}
QUESTION = {
    "en": ("how many {obj} does {name} have now ?",),
    "de": ("wie viele {obj} hat {name} jetzt ?",),
    "fr": ("combien de {obj} a {name} maintenant ?",),
}

# Plain sentences (language exposure for the base and the language experts).
ADJECTIVES = {
    "en": ("red", "yellow", "pink", "dirty", "clean", "quiet"),
    "de": ("rote", "gelbe", "rosa", "schmutzige", "saubere", "ruhige"),
    "fr": ("rouges", "jaunes", "roses", "sales", "propres", "calmes"),
}
PLACES = {
    "en": ("to the park", "to the garden", "to the market", "to the lake", "to the city"),
    "de": ("in den park", "in den garten", "auf den markt", "an den see", "in die stadt"),
    "fr": ("au parc", "au jardin", "au marché", "au lac", "en ville"),
}
DAYS = {
    "en": ("in the morning", "tomorrow", "on monday", "on sunday", "in the evening"),
    "de": ("am morgen", "morgen", "am montag", "am sonntag", "am abend"),
    "fr": ("le matin", "demain", "lundi", "dimanche", "le soir"),
}
SENTENCES = {
    "en": ("{name} likes {adj} {obj} .", "{day} {name} goes {place} with {name2} .",
           "{name} and {name2} look at the {obj2} .", "{pron} plays {day} .",
           "the {obj} of {name} are {adj} ."),
    "de": ("{name} mag {adj} {obj} .", "{day} geht {name} mit {name2} {place} .",
           "{name} und {name2} sehen die {obj2} an .", "{pron} spielt {day} .",
           "die {obj} von {name} sind {adj} ."),
    "fr": ("{name} aime les {obj} {adj} .", "{day} {name} va {place} avec {name2} .",
           "{name} et {name2} regardent les {obj2} .", "{pron} joue {day} .",
           "les {obj} de {name} sont {adj} ."),
}

SYMBOLS = ("=", "+", "-", ".", "?")


def vocabulary() -> list[str]:
    """Every word the generators can emit, in a fixed order (digits and specials are added by
    :func:`frugalmerge.zoo.tiny.build_word_tokenizer`)."""
    words: list[str] = list(SYMBOLS)
    tables = (HAVE, GAIN, LOSE, DISTRACT, QUESTION, SENTENCES, OBJECTS, OTHER_OBJECTS,
              ADJECTIVES, PLACES, DAYS, PRONOUNS)
    for name, _ in NAMES:
        words.append(name)
    for lang in LANGUAGES:
        for table in tables:
            entries = table[lang].values() if isinstance(table[lang], dict) else table[lang]
            for entry in entries:
                for word in entry.split():
                    if not (word.startswith("{") and word.endswith("}")):
                        words.append(word)
    seen: dict[str, None] = {}
    for word in words:
        seen.setdefault(word, None)
    return list(seen)


@dataclass(frozen=True)
class Problem:
    """A language-independent word problem: render it with :meth:`render`."""

    op: str  # "+" or "-"
    a: int
    b: int
    distractor: int
    name: int
    name2: int
    obj: int
    obj2: int
    have_tpl: int
    op_tpl: int
    distract_tpl: int
    distract_pos: int  # 0: before the first sentence, 1: between, 2: after the operation

    @property
    def result(self) -> int:
        return self.a + self.b if self.op == "+" else self.a - self.b

    @property
    def equation(self) -> str:
        """The shared-symbol answer line, e.g. ``7 + 5 = 12``."""
        return f"{self.a} {self.op} {self.b} = {self.result}"

    @property
    def key(self) -> str:
        """Language-independent identity (decides the split)."""
        return (f"{self.op}|{self.a}|{self.b}|{self.distractor}|{self.name}|{self.name2}|"
                f"{self.obj}|{self.obj2}|{self.have_tpl}|{self.op_tpl}|{self.distract_tpl}|"
                f"{self.distract_pos}")

    def render(self, lang: str) -> str:
        """The problem text in ``lang``, ending with the question and ``=``."""
        name, gender = NAMES[self.name]
        fill = {
            "name": name,
            "pron": PRONOUNS[lang][gender],
            "name2": NAMES[self.name2][0],
            "obj": OBJECTS[lang][self.obj],
            "obj2": OTHER_OBJECTS[lang][self.obj2],
        }
        have = HAVE[lang][self.have_tpl].format(n=self.a, **fill)
        table = GAIN if self.op == "+" else LOSE
        change = table[lang][self.op_tpl].format(n=self.b, **fill)
        distract = DISTRACT[lang][self.distract_tpl].format(n=self.distractor, **fill)
        sentences = [have, change]
        sentences.insert(self.distract_pos, distract)
        question = QUESTION[lang][0].format(**fill)
        return " ".join([*sentences, question, "="])


def sample_problem(rng: np.random.Generator) -> Problem:
    """Draw one problem: results and operands within 0..MAX_NUMBER, operands >= 1, and a
    distractor number different from both operands (the digits alone do not give the answer)."""
    op = "+" if rng.random() < 0.5 else "-"
    if op == "+":
        a = int(rng.integers(1, MAX_NUMBER))
        b = int(rng.integers(1, MAX_NUMBER - a + 1))
    else:
        a = int(rng.integers(1, MAX_NUMBER + 1))
        b = int(rng.integers(1, a + 1))
    while True:
        d = int(rng.integers(1, MAX_NUMBER + 1))
        if d not in (a, b):
            break
    name = int(rng.integers(len(NAMES)))
    name2 = int(rng.integers(len(NAMES) - 1))
    name2 += name2 >= name  # a different person
    n_op_tpl = len(GAIN["en"]) if op == "+" else len(LOSE["en"])
    return Problem(
        op=op, a=a, b=b, distractor=d, name=name, name2=name2,
        obj=int(rng.integers(len(OBJECTS["en"]))),
        obj2=int(rng.integers(len(OTHER_OBJECTS["en"]))),
        have_tpl=int(rng.integers(len(HAVE["en"]))),
        op_tpl=int(rng.integers(n_op_tpl)),
        distract_tpl=int(rng.integers(len(DISTRACT["en"]))),
        distract_pos=int(rng.integers(3)),
    )


def sample_sentence(rng: np.random.Generator, lang: str) -> str:
    """One plain sentence in ``lang`` (no numbers)."""
    name = int(rng.integers(len(NAMES)))
    name2 = int(rng.integers(len(NAMES) - 1))
    name2 += name2 >= name
    tpl = SENTENCES[lang][int(rng.integers(len(SENTENCES[lang])))]
    return tpl.format(
        name=NAMES[name][0],
        pron=PRONOUNS[lang][NAMES[name][1]],
        name2=NAMES[name2][0],
        obj=OBJECTS[lang][int(rng.integers(len(OBJECTS[lang])))],
        obj2=OTHER_OBJECTS[lang][int(rng.integers(len(OTHER_OBJECTS[lang])))],
        adj=ADJECTIVES[lang][int(rng.integers(len(ADJECTIVES[lang])))],
        place=PLACES[lang][int(rng.integers(len(PLACES[lang])))],
        day=DAYS[lang][int(rng.integers(len(DAYS[lang])))],
    )


def sample_equation(rng: np.random.Generator) -> str:
    """A bare equation line (``= 7 + 5 = 12``): the language-free solving skill."""
    p = sample_problem(rng)
    return f"= {p.equation}"


SPLIT_BUCKETS = {"train": (0, 80), "search": (80, 90), "test": (90, 100)}


def split_of(key: str) -> str:
    """The split a problem belongs to, from a stable hash of its language-independent key."""
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 100
    for split, (lo, hi) in SPLIT_BUCKETS.items():
        if lo <= bucket < hi:
            return split
    raise AssertionError(bucket)  # the buckets cover 0..99
