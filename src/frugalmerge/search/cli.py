"""Commands of the ``search`` stage (registered by ``frugalmerge.cli``): ``evolve`` and ``demo``.

Keep module-level imports light: heavy modules are imported inside the command functions.
"""

from __future__ import annotations

from pathlib import Path

import typer


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2)


def evolve(
    config: Path = typer.Argument(..., help="search config YAML (see docs/search.md)"),
    out: Path = typer.Option(..., "--out", help="run directory"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its checkpoint"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Evolve merge recipes with cheap fitness; writes best.json / pareto.json, plots, report.md."""
    from frugalmerge.search.errors import SearchError

    try:
        from frugalmerge.search.config import load_config
        from frugalmerge.search.loop import run_search

        cfg = load_config(config)
        summary = run_search(cfg, out, resume=resume, quiet=quiet)
    except SearchError as exc:
        _fail(exc)
        return
    typer.echo(f"{cfg.name}: {summary['candidates']} candidates, {summary['items_evaluated']:,} items evaluated "
               f"(full fitness: {summary['items_full_fitness']:,}); report: {Path(out) / 'report.md'}")


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="output directory"),
    zoo: Path = typer.Option(None, "--zoo", help="zoo directory (default: the shipped zoo, built if missing)"),
    quick: bool = typer.Option(False, "--quick", help="smoke-size zoo and tiny budgets (seconds; for tests)"),
) -> None:
    """Both showcases on the zoo (cross-domain, multilingual); prints the final table."""
    from frugalmerge.search.errors import SearchError

    try:
        from frugalmerge.search.demo import run_demo

        run_demo(out, zoo_dir=zoo, quick=quick)
    except SearchError as exc:
        _fail(exc)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the top-level app."""
    app.command("evolve")(evolve)
    app.command("demo")(demo)
