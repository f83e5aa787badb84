"""Commands of the ``zoo`` stage (registered by ``frugalmerge.cli``).

Keep module-level imports light: heavy modules are imported inside the command functions.
"""

from __future__ import annotations

from pathlib import Path

import typer

zoo_app = typer.Typer(help="The demo zoo: tiny models and benchmarks built locally.",
                      no_args_is_help=True)


@zoo_app.command("build")
def build(
    size: str = typer.Option("full", "--size", help="smoke (seconds, for tests) or full (the demo zoo)"),
    out: Path = typer.Option(None, "--out", help="output folder (default: ./zoo-<size>)"),
    jobs: int = typer.Option(1, "--jobs", min=1, max=4,
                             help="experts trained at a time (1 thread each; same bytes)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing folder"),
) -> None:
    """Build the zoo deterministically: base, experts, benchmarks (train/search/test), zoo.json."""
    from frugalmerge.zoo.build import build_zoo
    from frugalmerge.zoo.errors import ZooError

    try:
        build_zoo(size, out or Path(f"zoo-{size}"), jobs=jobs, overwrite=overwrite)
    except ZooError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@zoo_app.command("info")
def info(directory: Path = typer.Argument(None, help="zoo folder (default: the shipped full zoo)")) -> None:
    """Print a zoo's models, benchmarks and showcases."""
    from frugalmerge.zoo.errors import ZooError
    from frugalmerge.zoo.manifest import load_zoo
    from frugalmerge.zoo.registry import prebuilt_zoo_dir

    try:
        target = directory or prebuilt_zoo_dir("full")
        if target is None:
            raise ZooError("no zoo folder given and this installation ships no prebuilt zoo")
        zoo = load_zoo(target)
    except ZooError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"zoo {zoo.root} (size {zoo.size}, base {zoo.base})")
    for name, path in zoo.models.items():
        typer.echo(f"  model {name}: {path}")
    for name, entry in zoo.benchmarks.items():
        typer.echo(f"  benchmark {name} [{entry.language}]: " + ", ".join(
            f"{s}={getattr(entry.splits, s).name}" for s in ("train", "search", "test")))
    for name, show in zoo.showcases.items():
        typer.echo(f"  showcase {name}: models {show.models} objectives {show.objectives}")


@zoo_app.command("cards")
def cards(
    out: Path = typer.Option(Path("estimators/zoo"), "--out", help="cards folder (one card per benchmark)"),
    zoo_dir: Path = typer.Option(None, "--zoo", help="zoo folder (default: the shipped full zoo)"),
    estimator: str = typer.Option(None, "--estimator", help="estimator name (default: the shipped cards' choice)"),
    k: int = typer.Option(None, "--k", min=1, help="items each card selects"),
    random_merges: int = typer.Option(None, "--random-merges", min=0,
                                      help="seeded random merges per showcase in the training data"),
    seed: int = typer.Option(0, "--seed"),
    pilot_searches: int = typer.Option(None, "--pilot-searches", min=0,
                                       help="cheap pilot searches per showcase whose best candidates join "
                                            "the training data (default: the shipped cards' choice)"),
    pilot_top: int = typer.Option(None, "--pilot-top", min=1, help="best distinct candidates taken per pilot"),
    showcase: list[str] = typer.Option(None, "--showcase", help="only this showcase (repeatable; default: all)"),
    graded: str = typer.Option(None, "--graded",
                               help="score the training responses (and a search's card items) with this graded "
                                    "measure, e.g. token_probability; the 0/1 search accuracy stays the target"),
) -> None:
    """Fit estimator cards for the zoo's showcase objectives on SEARCH-split responses of the
    sources, base, naive average, seeded random merges and the best candidates of pilot searches
    (see estimators/README.md)."""
    from rich.console import Console

    from frugalmerge._atomic import OutputInUseError
    from frugalmerge.estimators.errors import EstimatorError
    from frugalmerge.runtime import configure_torch_threads
    from frugalmerge.search.errors import SearchError
    from frugalmerge.zoo import cards as zc
    from frugalmerge.zoo.errors import ZooError

    configure_torch_threads()
    console = Console(stderr=True)
    searches = zc.DEFAULT_PILOT_SEARCHES if pilot_searches is None else pilot_searches
    if pilot_top is not None and searches == 0:  # it would be dropped, and cards.json would say 0
        typer.echo("error: --pilot-top needs pilot searches (--pilot-searches N, N >= 1)", err=True)
        raise typer.Exit(1)
    try:
        with console.status("evaluating the cards' training models") as status:
            index = zc.build_cards(zoo_dir, out, estimator=estimator or zc.DEFAULT_ESTIMATOR, k=k or zc.DEFAULT_K,
                                   random_merges=zc.DEFAULT_RANDOM_MERGES if random_merges is None else random_merges,
                                   seed=seed,
                                   pilot_searches=searches,
                                   pilot_top=pilot_top or zc.DEFAULT_PILOT_TOP,
                                   showcases=showcase or None, graded=graded,
                                   progress=lambda msg: status.update(msg))
    except (ZooError, SearchError, EstimatorError, OutputInUseError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for name, card in index["cards"].items():
        v = card["validation"]
        err = f"CV MAE {100 * v['mae']:.2f} points, spearman {v['spearman']:.3f}" if "mae" in v else v["kind"]
        typer.echo(f"{out / name}: {card['models']} models x {card['items']} search items ({err})")
    typer.echo(f"one-off cost: {index['items_evaluated']:,} items evaluated, {index['seconds']:.0f} s")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the top-level app."""
    app.add_typer(zoo_app, name="zoo")
