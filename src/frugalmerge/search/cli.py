"""Commands of the ``search`` stage (registered by ``frugalmerge.cli``): ``evolve`` and ``demo``.

Keep module-level imports light: heavy modules are imported inside the command functions.
"""

from __future__ import annotations

from pathlib import Path

import typer


def _fail(exc: Exception) -> None:
    msg = " ".join(str(exc).split())
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code=1)  # as every other command; 2 stays typer's usage errors


def _known_errors() -> tuple[type[Exception], ...]:
    """The library's own error types: reported in one line (anything else is a bug: traceback)."""
    from frugalmerge._atomic import OutputInUseError
    from frugalmerge.estimators.errors import EstimatorError
    from frugalmerge.evaluation.errors import EvaluationError
    from frugalmerge.merging.errors import MergeError
    from frugalmerge.search.errors import SearchError
    from frugalmerge.zoo.errors import ZooError

    return (SearchError, MergeError, EvaluationError, EstimatorError, ZooError, OutputInUseError)


def evolve(
    config: Path = typer.Argument(..., help="search config YAML (see docs/search.md)"),
    out: Path = typer.Option(..., "--out", help="run directory"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its checkpoint"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Evolve merge recipes with cheap fitness; writes best.json / pareto.json, plots, report.md."""
    try:
        from frugalmerge.search.config import load_config
        from frugalmerge.search.loop import run_search

        cfg = load_config(config)
        summary = run_search(cfg, out, resume=resume, quiet=quiet)
    except _known_errors() as exc:
        _fail(exc)
        return
    from frugalmerge.search.report import items_with_promotion

    total, promo = items_with_promotion(summary)
    typer.echo(f"{cfg.name}: {summary['candidates']} candidates, {total:,} items evaluated "
               + (f"(incl. {promo:,} in the final re-scoring) " if promo else "")
               + f"(full fitness: {summary['items_full_fitness']:,}); report: {Path(out) / 'report.md'}")


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="output directory"),
    zoo: Path = typer.Option(None, "--zoo", help="zoo directory (default: the shipped zoo, built if missing)"),
    quick: bool = typer.Option(False, "--quick", help="smoke-size zoo and tiny budgets (seconds; for tests)"),
    cards: bool = typer.Option(True, "--cards/--no-cards",
                               help="use the shipped estimator cards (shipped zoo only) instead of calibrating"),
) -> None:
    """Both showcases on the zoo (cross-domain, multilingual); prints the final table."""
    try:
        from frugalmerge.search.demo import run_demo

        run_demo(out, zoo_dir=zoo, quick=quick, use_cards=cards)
    except _known_errors() as exc:
        _fail(exc)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the top-level app."""
    app.command("evolve")(evolve)
    app.command("demo")(demo)
