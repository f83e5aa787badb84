"""Fitted estimator cards for the demo zoo's showcase objectives (``frugalmerge zoo cards``).

What a card is fitted on - responses on the **search** split only (the test split is never read):
for each showcase of the zoo, the sources, the base, the naive average and ``random_merges`` seeded
random recipes of that showcase's search space (the demo's own space: method gene, weights,
densities) are materialised and evaluated on every item of the search split of each objective's
benchmark. The response matrix is stored next to the card (``responses.npz``, a few KB), so the
card can be rebuilt bit for bit (:func:`refit_card`) and its training-data hash checked.

Pilot searches (``pilot_searches``, ``pilot_top``): random merges rarely reach the accuracy a
search converges to, so an estimator fitted on them alone saturates near the best random merge and
cannot rank the candidates a search ends among (measured: ``benchmarks/results/search_cost.md``).
So, after the random merges, a first card is fitted on them and ``pilot_searches`` cheap searches
of the showcase (the demo's own config with that card, seeds ``PILOT_SEED_BASE + 100 * seed + j``,
never the seeds reported anywhere, final test re-scoring off: the test split is still never read)
are run; the ``pilot_top`` best distinct candidates of each pilot (by their search-time estimate)
are then evaluated on every search item and added to the training data (model ids
``pilot<j>:<i>``). The pilots' own items count in the one-off cost.

Validation error (in ``card.json``): K-fold cross-validation over the random and pilot merges (the
sources, base and average always stay in training, as they do when the card is used), each
held-out merge revealing only the card's ``k`` items; truth = its mean over the whole search split.

The one-off cost (items evaluated, seconds) is written to ``cards.json`` at the top of the output
folder; a search that uses a card calibrates nothing and pays only the card's ``k`` items per
candidate.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frugalmerge._atomic import atomic_dir, check_replaceable
from frugalmerge.estimators.card import RESPONSES_FILE
from frugalmerge.zoo.errors import ZooError

#: Defaults of the shipped cards (estimators/zoo): see estimators/README.md for the measurements.
DEFAULT_ESTIMATOR = "default"
DEFAULT_K = 10
DEFAULT_RANDOM_MERGES = 60
DEFAULT_PILOT_SEARCHES = 0
DEFAULT_PILOT_TOP = 30
#: Pilot searches run with seeds PILOT_SEED_BASE + 100 * seed + j: far from any reported run's seed.
PILOT_SEED_BASE = 9000
#: A seed stream of its own: the card's random merges differ from any run's calibration merges.
CARD_SEED_SALT = 31337
INDEX_FILE = "cards.json"


@dataclass(frozen=True)
class CardData:
    """The responses one card is fitted on: models x search items of one benchmark."""

    showcase: str
    benchmark: str
    model_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    values: np.ndarray
    #: Each model's 0/1 accuracy over the search split when ``values`` are graded scores.
    target: np.ndarray | None = None


def _showcase_recipes(config: Any, space: Any, random_merges: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """(model id, recipe) of the card's training models for one showcase config."""
    from frugalmerge.search.fitness import base_recipe, source_recipe
    from frugalmerge.search.space import average_recipe

    out: list[tuple[str, dict[str, Any]]] = [(f"source:{m}", source_recipe(config, m)) for m in config.models]
    if config.base_model is not None:
        out.append(("base", base_recipe(config)))
    if len(config.models) > 1:
        out.append(("average", average_recipe(config)))
    rng = np.random.default_rng([seed, CARD_SEED_SALT])
    out += [(f"random:{i}", space.decode(x)) for i, x in enumerate(space.random(rng, random_merges))]
    return out


def _showcase_raws(zoo: Any, showcases: list[str] | None) -> dict[str, dict[str, Any]]:
    from frugalmerge.search.demo import showcase_configs

    raws = showcase_configs(zoo)
    names = showcases or list(raws)
    unknown = [n for n in names if n not in raws]
    if unknown:
        raise ZooError(f"unknown showcase {unknown[0]!r} (known: {', '.join(raws)})")
    return {n: raws[n] for n in names}


def _evaluate_models(zoo: Any, name: str, raw: dict[str, Any], recipes: list[tuple[str, dict[str, Any]]],
                     progress: Callable[[str], None] | None, scoring: dict[str, Any] | None = None) -> list[CardData]:
    """Every recipe on every search item of each objective of one showcase -> one CardData each.

    With ``scoring`` (task settings such as graded token probabilities) the values are scored that
    way and each model's 0/1 accuracy over the split becomes the target."""
    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.fitness import Fitness
    from frugalmerge.search.space import SearchSpace, recipe_key

    # Full fitness: the objectives are plain search-split evaluators (no calibration).
    cfg = config_from_dict({**raw, "fitness": "full"}, zoo.root)
    fitness = Fitness.build(cfg, SearchSpace(cfg))
    benches: dict[str, tuple[Any, Any]] = {}
    for obj in fitness.objectives:
        bench = obj.search_bench  # type: ignore[attr-defined]
        graded = None
        if scoring:
            try:
                graded = bench.with_task(bench.task.with_overrides(scoring))
            except ValueError as exc:
                msg = " ".join(str(exc).split())
                raise ZooError(f"{name}: benchmark {bench.name!r} cannot be scored with {scoring}: {msg}") from None
        benches[obj.name] = (bench, graded)
    rows: dict[str, list[list[float]]] = {o.name: [] for o in fitness.objectives}
    targets: dict[str, list[float]] = {o.name: [] for o in fitness.objectives}
    for i, (model_id, recipe) in enumerate(recipes):
        if progress:
            progress(f"{name}: model {i + 1}/{len(recipes)} ({model_id})")
        key = recipe_key(recipe)
        for obj in fitness.objectives:
            bench, graded = benches[obj.name]
            resp = obj._responses(bench, recipe, key, None)  # type: ignore[attr-defined]
            if graded is None:
                rows[obj.name].append([resp[item.id] for item in bench.items])
                continue
            targets[obj.name].append(float(np.mean(list(resp.values()))))
            scores = obj._responses(graded, recipe, key, None)  # type: ignore[attr-defined]
            # float32 precision, so responses.npz stores them losslessly at half the size
            rows[obj.name].append([float(np.float32(scores[item.id])) for item in bench.items])
    out = []
    for obj in fitness.objectives:
        bench, graded = benches[obj.name]
        out.append(CardData(name, obj.spec.benchmark or obj.name, tuple(m for m, _ in recipes),  # type: ignore[attr-defined]
                            tuple(item.id for item in bench.items),
                            np.asarray(rows[obj.name], dtype=np.float64).reshape(len(recipes), len(bench.items)),
                            None if graded is None else np.asarray(targets[obj.name], dtype=np.float64)))
    return out


def collect_card_data(zoo: Any, *, random_merges: int = DEFAULT_RANDOM_MERGES, seed: int = 0,
                      showcases: list[str] | None = None, scoring: dict[str, Any] | None = None,
                      progress: Callable[[str], None] | None = None) -> list[CardData]:
    """Evaluate every training model of each showcase on the search split of its objectives."""
    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.space import SearchSpace

    out: list[CardData] = []
    for name, raw in _showcase_raws(zoo, showcases).items():
        cfg = config_from_dict({**raw, "fitness": "full"}, zoo.root)
        recipes = _showcase_recipes(cfg, SearchSpace(cfg), random_merges, seed)
        out += _evaluate_models(zoo, name, raw, recipes, progress, scoring)
    return out


def pilot_recipes(zoo: Any, name: str, cards: dict[str, Path], work: Path, *,
                  searches: int, top: int, seed: int, exclude: set[str], generations: int | None = None,
                  progress: Callable[[str], None] | None = None) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """Run ``searches`` cheap pilot searches of showcase ``name`` with ``cards`` and return the
    ``top`` best distinct candidates of each (by search-time estimate, promoted value first; mean
    over objectives), skipping recipe keys in ``exclude``; plus the items the pilots evaluated.
    ``generations``: the pilots' budget (None: the showcase's own).

    The pilots never read the test split (``final.test`` off) and export nothing."""
    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.demo import showcase_configs
    from frugalmerge.search.loop import run_search

    base = showcase_configs(zoo, cards=cards)[name]
    chosen: list[tuple[str, dict[str, Any]]] = []
    seen = set(exclude)
    items = 0
    for j in range(searches):
        pilot_seed = PILOT_SEED_BASE + 100 * seed + j
        if progress:
            progress(f"{name}: pilot search {j + 1}/{searches} (seed {pilot_seed})")
        budget = {"generations": generations} if generations else base["budget"]
        cfg = config_from_dict({**base, "name": f"{name}-pilot{j}", "seed": pilot_seed, "budget": budget,
                                "final": {"test": False, "export": "none"}}, zoo.root)
        summary = run_search(cfg, work / f"{name}-pilot{j}", quiet=True)
        items += int(summary["items_evaluated"])
        cands, promoted = {}, {}
        for line in (work / f"{name}-pilot{j}" / "candidates.jsonl").read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if "promotion" in rec:
                promoted[rec["key"]] = rec["promotion"]
            elif "recipe" in rec:
                cands[rec["key"]] = rec

        def value(rec: dict[str, Any]) -> float:
            est = promoted.get(rec["key"], rec["estimate"])
            return float(np.mean([v["value"] for v in est.values()]))

        ranked = sorted(cands.values(), key=lambda r: (-value(r), r["order"]))
        picked = [r for r in ranked if r["key"] not in seen][:top]
        seen.update(r["key"] for r in picked)
        chosen += [(f"pilot{j}:{i}", r["recipe"]) for i, r in enumerate(picked)]
    return chosen, items


def _concat(a: CardData, b: CardData) -> CardData:
    if a.item_ids != b.item_ids:
        raise ZooError(f"{a.benchmark}: pilot responses cover other items than the random merges'")
    target = None if a.target is None or b.target is None else np.concatenate([a.target, b.target])
    return CardData(a.showcase, a.benchmark, a.model_ids + b.model_ids, a.item_ids, np.vstack([a.values, b.values]),
                    target)


def write_responses(data: CardData, path: Path) -> None:
    """The card's training responses as an ``.npz`` that ``load_responses`` reads (compressed)."""
    extra = {} if data.target is None else {"target": data.target.astype(np.float64)}
    # Graded scores do not compress like 0/1 ones: stored as float32 when that loses nothing.
    lossless = data.target is not None and np.array_equal(data.values.astype(np.float32), data.values, equal_nan=True)
    np.savez_compressed(path, values=data.values.astype(np.float32 if lossless else np.float64),
                        model_ids=np.asarray(data.model_ids), item_ids=np.asarray(data.item_ids), **extra)


def _context(estimator: str, model_ids: tuple[str, ...]) -> dict[str, Any]:
    endpoints = [m for m in model_ids if m.startswith("source:")]
    from frugalmerge.estimators.core import uses_endpoints

    return {"endpoints": endpoints} if uses_endpoints(estimator) and len(endpoints) >= 2 else {}


def validate_card(responses: Any, estimator: str, k: int, *, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """K-fold CV over the random merges (anchors - sources, base, average - always train)."""
    from scipy.stats import spearmanr

    from frugalmerge.estimators import make_estimator

    ids = responses.model_ids
    held = np.asarray([r for r, m in enumerate(ids) if m.startswith(("random:", "pilot"))])
    if len(held) < 2 * folds:
        return {"kind": "skipped (too few random or pilot merges)", "n_test": 0}
    truth = responses.full_scores()
    pred = np.full(len(ids), np.nan)
    perm = np.random.default_rng(seed).permutation(held)
    for f, test in enumerate(np.array_split(perm, folds)):
        train = responses.select_models(np.setdiff1d(np.arange(len(ids)), test))
        est = make_estimator(estimator).fit(train, k=k, seed=seed, **_context(estimator, train.model_ids))
        pred[test] = est.predict(responses.select_models(test).reveal(est.selected_items_)).score
    err = np.abs(pred[held] - truth[held])
    top = held[np.argsort(-truth[held])[: max(len(held) // 4, 2)]]
    n_pilot = sum(1 for m in ids if m.startswith("pilot"))
    what = f"{len(held) - n_pilot} random" + (f" + {n_pilot} pilot" if n_pilot else "")
    return {"kind": f"{folds}-fold CV over the {what} merges (sources, base, average always train)",
            "mae": float(err.mean()), "max_abs_error": float(err.max()),
            "spearman": float(spearmanr(pred[held], truth[held]).statistic),
            "mae_top_quartile": float(np.abs(pred[top] - truth[top]).mean()), "n_test": int(len(held))}


def fit_card(responses_path: Path, out: Path, *, estimator: str, k: int, seed: int = 0,
             validation: dict[str, Any] | None = None, scoring: dict[str, Any] | None = None) -> Any:
    """Fit ``estimator`` on the stored responses and write the card (``responses.npz`` beside it).

    ``scoring``: the task settings the responses were scored with (recorded in the card, so a
    search scores the card's items the same way)."""
    from frugalmerge.estimators import load_responses, make_estimator, save_card

    data = load_responses(responses_path)
    est = make_estimator(estimator).fit(data, k=k, seed=seed, **_context(estimator, data.model_ids))
    save_card(est, data, out, validation, scoring=scoring)
    if responses_path.resolve() != (out / RESPONSES_FILE).resolve():
        shutil.copyfile(responses_path, out / RESPONSES_FILE)
    return est


def refit_card(card_dir: str | Path, out: str | Path) -> Path:
    """Rebuild a shipped card from its own ``responses.npz`` (same estimator, k, seed) into ``out``.

    Raises :class:`ZooError` when the stored responses do not hash to the card's training data."""
    from frugalmerge.estimators.card import load_card_responses
    from frugalmerge.estimators.errors import CardError

    card_dir, out = Path(card_dir), Path(out)
    card = json.loads((card_dir / "card.json").read_text())
    try:
        data = load_card_responses(card_dir, card)
    except CardError as exc:
        raise ZooError(str(exc)) from None
    if data is None:
        raise ZooError(f"{card_dir}: no {RESPONSES_FILE} to rebuild the card from")
    fit_card(card_dir / RESPONSES_FILE, out, estimator=card["estimator"], k=int(card["k"]), seed=int(card["fitted"]["seed_"]),
             validation=card.get("validation"), scoring=card.get("scoring"))
    return out


def build_cards(zoo_dir: str | Path | None, out: str | Path, *, estimator: str = DEFAULT_ESTIMATOR,
                k: int = DEFAULT_K, random_merges: int = DEFAULT_RANDOM_MERGES, seed: int = 0,
                folds: int = 5, showcases: list[str] | None = None, graded: str | None = None,
                pilot_searches: int = DEFAULT_PILOT_SEARCHES, pilot_top: int = DEFAULT_PILOT_TOP,
                pilot_generations: int | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build one card per showcase objective into ``out/<benchmark>`` plus ``out/cards.json``.

    With ``pilot_searches``, a first card per objective is fitted on the random merges, the pilot
    searches run with it, and the final cards are fitted on random + pilot merges (module
    docstring). ``graded``: score the training responses (and so the search's card items) with
    this graded measure (e.g. ``token_probability``); the 0/1 accuracy over the search split stays
    the target. The whole folder is written next to ``out`` and renamed into place (atomic)."""
    from frugalmerge.estimators import load_responses
    from frugalmerge.search.space import recipe_key
    from frugalmerge.zoo.manifest import load_zoo
    from frugalmerge.zoo.registry import ensure_zoo

    out = Path(out)
    check_replaceable(out, INDEX_FILE)  # before minutes of evaluation, not after
    zoo = load_zoo(zoo_dir) if zoo_dir is not None else ensure_zoo("full")
    # A card of fewer items than asked would be recorded as k in cards.json: refused before the
    # minutes of evaluation.
    for name in sorted({o for sname, show in zoo.showcases.items() if not showcases or sname in showcases
                        for o in show.objectives}):
        n = sum(1 for line in zoo.split_path(name, "search").read_text(encoding="utf-8").splitlines() if line.strip())
        if k > n:
            raise ZooError(f"--k {k} exceeds the {n} search items of benchmark {name!r}")
    t0 = time.perf_counter()
    scoring = {"graded": True, "graded_measure": graded} if graded else None
    datasets = collect_card_data(zoo, random_merges=random_merges, seed=seed, showcases=showcases,
                                 scoring=scoring, progress=progress)
    pilot_items: dict[str, int] = {}
    if pilot_searches:
        datasets, pilot_items = _with_pilots(zoo, datasets, estimator=estimator, k=k, seed=seed,
                                             searches=pilot_searches, top=pilot_top, showcases=showcases,
                                             generations=pilot_generations, scoring=scoring,
                                             progress=progress, key_of=recipe_key)
    eval_seconds = time.perf_counter() - t0
    index: dict[str, Any] = {"zoo": zoo.root.name, "zoo_size": zoo.size, "estimator": estimator, "k": k,
                             "random_merges": random_merges, "pilot_searches": pilot_searches,
                             "pilot_top": pilot_top if pilot_searches else 0, "seed": seed, "split": "search",
                             **({"scoring": scoring} if scoring else {}), "cards": {}}
    per_showcase = {d.showcase: sum(1 for e in datasets if e.showcase == d.showcase) for d in datasets}
    with atomic_dir(out, marker=INDEX_FILE) as tmp:
        for data in datasets:
            # Staged under the same file name as in the card, so the matrix keeps one name.
            raw = tmp / ".stage" / data.benchmark / RESPONSES_FILE
            raw.parent.mkdir(parents=True)
            write_responses(data, raw)
            validation = validate_card(load_responses(raw), estimator, k, folds=folds, seed=seed)
            fit_card(raw, tmp / data.benchmark, estimator=estimator, k=k, seed=seed, validation=validation,
                     scoring=scoring)
            # The pilots' own search items are shared by the showcase's objectives: split evenly.
            pilot_share = pilot_items.get(data.showcase, 0) // per_showcase[data.showcase]
            index["cards"][data.benchmark] = {
                "showcase": data.showcase, "models": len(data.model_ids), "items": len(data.item_ids),
                "pilot_models": sum(1 for m in data.model_ids if m.startswith("pilot")),
                "pilot_search_items": pilot_share,
                "items_evaluated": int(data.values.size) + pilot_share, "validation": validation,
            }
        shutil.rmtree(tmp / ".stage")
        index["items_evaluated"] = int(sum(c["items_evaluated"] for c in index["cards"].values()))
        index["seconds"] = round(time.perf_counter() - t0, 1)
        index["evaluation_seconds"] = round(eval_seconds, 1)
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return index


def _with_pilots(zoo: Any, datasets: list[CardData], *, estimator: str, k: int, seed: int, searches: int,
                 top: int, showcases: list[str] | None, generations: int | None,
                 scoring: dict[str, Any] | None, progress: Callable[[str], None] | None,
                 key_of: Callable[[dict[str, Any]], str]) -> tuple[list[CardData], dict[str, int]]:
    """Fit first cards on ``datasets``, run the pilot searches with them, and return the datasets
    extended by the pilots' best candidates (evaluated on every search item) and the pilots' items."""
    import tempfile

    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.space import SearchSpace

    raws = _showcase_raws(zoo, showcases)
    out: list[CardData] = []
    items: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="frugalmerge-pilots-") as td:
        work = Path(td)
        first: dict[str, Path] = {}
        for data in datasets:
            raw_path = work / "data" / data.benchmark / RESPONSES_FILE
            raw_path.parent.mkdir(parents=True)
            write_responses(data, raw_path)
            fit_card(raw_path, work / "cards" / data.benchmark, estimator=estimator, k=k, seed=seed, scoring=scoring)
            first[data.benchmark] = work / "cards" / data.benchmark
        for name, raw in raws.items():
            mine = [d for d in datasets if d.showcase == name]
            cfg = config_from_dict({**raw, "fitness": "full"}, zoo.root)
            space = SearchSpace(cfg)
            n_random = sum(1 for m in mine[0].model_ids if m.startswith("random:"))
            known = {key_of(r) for _, r in _showcase_recipes(cfg, space, n_random, seed)}  # already in training
            recipes, items[name] = pilot_recipes(zoo, name, {d.benchmark: first[d.benchmark] for d in mine},
                                                 work / "runs", searches=searches, top=top, seed=seed,
                                                 exclude=known, generations=generations, progress=progress)
            extra = {d.benchmark: d for d in _evaluate_models(zoo, name, raw, recipes, progress, scoring)}
            out += [_concat(d, extra[d.benchmark]) for d in mine]
    return out, items


def card_dirs(root: str | Path) -> dict[str, Path]:
    """``{benchmark: card folder}`` of a cards folder written by :func:`build_cards`."""
    root = Path(root)
    index = root / INDEX_FILE
    if not index.is_file():
        raise ZooError(f"{root}: no {INDEX_FILE} (not a folder written by 'frugalmerge zoo cards')")
    return {name: root / name for name in json.loads(index.read_text())["cards"]}


#: Where the repository ships the zoo cards (top-level ``estimators/zoo``; present in a source
#: checkout and in the editable install ``make demo`` makes).
SHIPPED_CARDS = Path(__file__).resolve().parents[3] / "estimators" / "zoo"
#: Graded cards (``--graded token_probability``) for the objectives where they measured better in
#: the search (cross_domain's math_de; benchmarks/results/search_cost.md): they replace the 0/1 card.
SHIPPED_GRADED_CARDS = SHIPPED_CARDS.with_name("zoo_graded")


def shipped_cards_for(zoo: Any) -> dict[str, Path] | None:
    """``{benchmark: card folder}`` of the shipped cards when ``zoo`` is the shipped full zoo they
    were fitted on (a graded card where one is shipped, else the 0/1 card); None otherwise (another
    zoo's models differ: its searches calibrate instead)."""
    from frugalmerge.zoo.registry import prebuilt_zoo_dir

    prebuilt = prebuilt_zoo_dir("full")
    if prebuilt is None or Path(zoo.root).resolve() != prebuilt.resolve():
        return None
    if not (SHIPPED_CARDS / INDEX_FILE).is_file():
        return None
    graded = card_dirs(SHIPPED_GRADED_CARDS) if (SHIPPED_GRADED_CARDS / INDEX_FILE).is_file() else {}
    return {**card_dirs(SHIPPED_CARDS), **graded}
