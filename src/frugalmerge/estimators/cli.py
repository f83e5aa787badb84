"""Commands of the ``estimators`` stage (registered by ``frugalmerge.cli``):
``frugalmerge estimators bench|fit|predict``.

Keep module-level imports light: heavy modules are imported inside the command functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from frugalmerge._atomic import OutputInUseError, check_output_file, check_replaceable

estimators_app = typer.Typer(help="Subset extraction and IRT estimators: benchmark, fit and use cards.",
                             no_args_is_help=True)


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(1)


def _refuse_repeats(option: str, values: list[str]) -> None:
    """A comma list naming one value twice (each would be computed, or weighed, twice)."""
    from frugalmerge.estimators.errors import EstimatorError

    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise EstimatorError(f"{option}: {twice[0]!r} is listed twice")


@estimators_app.command("bench")
def bench(
    responses: Path = typer.Argument(..., help="response matrix (csv, npz, parquet, jsonl, lb.pickle, PSN folder[#BLOCK])"),
    target: Optional[str] = typer.Option(None, "--target", help="column with the true full score"),
    k: str = typer.Option("10,30,100", "--k", help="comma-separated subset sizes ('all' = every item)"),
    methods: Optional[str] = typer.Option(None, "--methods", help="comma-separated estimator names (default: all)"),
    folds: int = typer.Option(5, "--folds", help="cross-validation folds over models"),
    seed: int = typer.Option(0, "--seed"),
    json_out: Path = typer.Option(..., "--json", help="where to write the results JSON"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="PNG of error vs k per method"),
) -> None:
    """K-fold CV over models: reveal k chosen items per test model, predict its full score."""
    from rich.console import Console
    from rich.table import Table

    from frugalmerge.estimators.bench import parse_ks, plot_results, run_bench, write_json
    from frugalmerge.estimators.errors import EstimatorError
    from frugalmerge.estimators.responses import load_responses

    try:
        for path in (json_out, plot):
            if path is not None:
                check_output_file(path)  # before the benchmark runs, not after
        data = load_responses(responses, target)
        ks = parse_ks(k)
        names = None
        if methods is not None:
            names = [m.strip() for m in methods.split(",") if m.strip()]
            if not names:  # an empty --methods ran every method
                raise EstimatorError("--methods: no method named (leave the option out to run all)")
            _refuse_repeats("--methods", names)
        capped = sorted({str(kk) for kk in ks if kk != "all" and int(kk) > data.n_items})
        if capped:
            typer.echo(f"note: --k {', '.join(capped)} exceed{'s' if len(capped) == 1 else ''} the {data.n_items} items: "
                       f"run as k = {data.n_items} (all items)", err=True)
        rows = run_bench(data, ks, names, folds=folds, seed=seed)
        meta = {"responses": str(responses), "name": data.name, "n_models": data.n_models, "n_items": data.n_items,
                "target": target or ("file target" if data.target is not None else "mean over items"),
                "folds": folds, "seed": seed, "data_sha256": data.sha256()}
        write_json(rows, json_out, meta)
        if plot is not None:
            plot_results(rows, plot, title=f"{data.name}: {data.n_models} models x {data.n_items} items, {folds}-fold CV")
    except (EstimatorError, OutputInUseError) as e:
        _fail(e)
        return
    table = Table(title=f"{data.name}: {data.n_models} models x {data.n_items} items, {folds}-fold CV "
                        "(errors in points)")
    for col in ("method", "k", "MAE", "RMSE", "max |err|", "spearman", "mean SE", "|err| ≤ 2 SE", "n_test", "s"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(r["method"], str(r["k"]), f"{100 * r['mae']:.2f}", f"{100 * r['rmse']:.2f}",
                      f"{100 * r['max_abs_error']:.1f}", f"{r['spearman']:.3f}", f"{100 * r['mean_se']:.2f}",
                      f"{100 * r['within_2se']:.0f}%", str(r["n_test"]), f"{r['seconds']:.1f}")
    Console().print(table)


@estimators_app.command("fit")
def fit(
    responses: Path = typer.Argument(..., help="training response matrix"),
    target: Optional[str] = typer.Option(None, "--target", help="column with the true full score"),
    k: int = typer.Option(..., "--k", help="number of items the estimator will ask for"),
    out: Path = typer.Option(..., "--out", help="card directory to write"),
    method: str = typer.Option("default", "--method", help="estimator name"),
    seed: int = typer.Option(0, "--seed"),
    folds: int = typer.Option(5, "--folds", help="CV folds for the card's validation error (0: skip)"),
    endpoints: Optional[str] = typer.Option(None, "--endpoints", help="mpirt/gmpirt: comma-separated endpoint model ids"),
    graded_measure: Optional[str] = typer.Option(
        None, "--graded-measure",
        help="the responses are graded scores of this measure (token_accuracy, token_probability; "
             "'choice' for multiple choice): recorded in the card so a search scores its items the same way"),
) -> None:
    """Fit an estimator on all models of RESPONSES and write a card."""
    import numpy as np

    from frugalmerge.estimators.bench import cross_validate
    from frugalmerge.estimators.card import save_card
    from frugalmerge.estimators.core import estimator_names, make_estimator, uses_endpoints
    from frugalmerge.estimators.errors import EstimatorError
    from frugalmerge.estimators.responses import load_responses

    scoring = None
    if graded_measure is not None:
        from typing import get_args

        from frugalmerge.evaluation.tasks import TaskSpec

        # the task's own graded measures (one source of truth) plus multiple choice's single one
        measures = (*get_args(TaskSpec.model_fields["graded_measure"].annotation), "choice")
        if graded_measure not in measures:
            _fail(EstimatorError(f"--graded-measure {graded_measure!r}: expected one of {', '.join(measures)}"))
            return
        # multiple choice has one graded score (the correct choice's probability): no measure field
        scoring = {"graded": True, **({} if graded_measure == "choice" else {"graded_measure": graded_measure})}
    try:
        check_replaceable(out, "card.json")  # before fitting: never wipe a mistyped --out
        data = load_responses(responses, target)
        if scoring and data.target is None:
            raise EstimatorError(f"{responses}: graded responses need the 0/1 full score as the target "
                                 "(--target); the mean of graded scores is not an accuracy")
        context = {"endpoints": [e.strip() for e in endpoints.split(",")]} if endpoints else {}
        _refuse_repeats("--endpoints", context.get("endpoints", []))
        if scoring and np.isin(data.values[~np.isnan(data.values)], (0.0, 1.0)).all():
            # graded scoring recorded for 0/1 data: a search would score the card's items graded
            raise EstimatorError(f"{responses}: --graded-measure given, but every response is 0 or 1; "
                                 "graded responses are scores strictly between 0 and 1 for some items")
        if context and not uses_endpoints(method):
            known = ", ".join(n for n in estimator_names() if uses_endpoints(n))
            raise EstimatorError(f"--endpoints applies to the MERGE³ estimators ({known}), not {method!r}")
        validation = None
        if folds:
            if data.n_models - len(context.get("endpoints", ())) >= 2 * folds:
                cv = cross_validate(data, method, k, folds=folds, seed=seed, context=context)
                validation = {"kind": f"{folds}-fold CV over models", "mae": cv["mae"],
                              "max_abs_error": cv["max_abs_error"], "spearman": cv["spearman"], "n_test": cv["n_test"]}
            else:
                typer.echo(f"note: {data.n_models} models are too few for {folds}-fold validation; skipped", err=True)
        est = make_estimator(method).fit(data, k=k, seed=seed, **context)
        save_card(est, data, out, validation, scoring=scoring)
    except (EstimatorError, OutputInUseError) as e:
        _fail(e)
        return
    n_items = len(est.selected_items_)
    # A sequential estimator asks its own k of the pool per model; a fixed-form one has k items.
    msg = f"wrote {out} ({method}, " + (f"{est.k_} of {n_items} items per model, chosen adaptively"
                                        if est.sequential else f"{n_items} items")
    if validation:
        msg += f", CV MAE {100 * validation['mae']:.2f} points"
    typer.echo(msg + ")")


@estimators_app.command("predict")
def predict(
    card_dir: Path = typer.Argument(..., help="card directory written by 'estimators fit'"),
    responses: Path = typer.Argument(..., help="responses of the models to score (at least the card's items)"),
    json_out: Path = typer.Option(..., "--json", help="where to write the predictions"),
    target: str = typer.Option(None, "--target", help="a column (CSV/parquet) or array (npz) holding the true "
                               "full scores: never read as an item; the MAE against it is printed"),
) -> None:
    """Estimate full scores from the card's items: writes {"predictions": {model: score}}."""
    import json

    import numpy as np

    from frugalmerge._atomic import atomic_write_text
    from frugalmerge.estimators.bench import nan_to_none
    from frugalmerge.estimators.card import load_card
    from frugalmerge.estimators.errors import EstimatorError
    from frugalmerge.estimators.responses import load_responses

    try:
        check_output_file(json_out)
        est, card = load_card(card_dir)
        data = load_responses(responses, target)
        out = est.predict(data)
    except (EstimatorError, OutputInUseError) as e:
        _fail(e)
        return
    # How many responses each estimate rests on: the card's items a model answered, at most the
    # card's k (an adaptive card asks k of its pool). Fewer than k is allowed (unseen items are
    # imputed) but said, since the card's validation error was measured with all k.
    present = set(data.item_ids)
    card_items = [i for i in card["selected_item_ids"] if i in present]
    answered = (~np.isnan(data.take_items(card_items))).sum(axis=1) if card_items else np.zeros(data.n_models, int)
    k = int(card.get("k", len(card["selected_item_ids"])))
    used = np.minimum(answered, k)
    doc = {"predictions": {m: float(s) for m, s in zip(out.model_ids, out.score)},
           "standard_errors": {m: float(s) for m, s in zip(out.model_ids, out.se)},
           "items_used": {m: int(n) for m, n in zip(data.model_ids, used)},
           "estimator": card["estimator"], "items": card["selected_item_ids"]}
    atomic_write_text(json_out, json.dumps(nan_to_none(doc), indent=2, allow_nan=False))
    short = np.flatnonzero(used < k)
    if short.size:
        i = int(short[0])
        typer.echo(f"note: {short.size} of {data.n_models} models answered fewer than the card's {k} items "
                   f"(e.g. {data.model_ids[i]!r}: {int(used[i])}); their unseen items are imputed, and the "
                   "card's validation error does not cover them", err=True)
    if data.target is not None:
        mae = float(np.mean(np.abs(out.score - data.full_scores())))
        source = f"column {target!r}" if target else "the file's own"
        typer.echo(f"MAE against the target ({source}): {100 * mae:.2f} points over {data.n_models} models")
    typer.echo(f"wrote {json_out} ({len(out.model_ids)} models)")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the top-level app."""
    app.add_typer(estimators_app, name="estimators")
