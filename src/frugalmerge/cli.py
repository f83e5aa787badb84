"""The ``frugalmerge`` command line.

Each pipeline stage registers its own commands (``<stage>/cli.py``); this module only assembles
them. Stage CLI modules import nothing heavy at module level, so ``frugalmerge --help`` is instant.
"""

from __future__ import annotations

import typer

from frugalmerge.estimators import cli as estimators_cli
from frugalmerge.evaluation import cli as evaluation_cli
from frugalmerge.merging import cli as merging_cli
from frugalmerge.search import cli as search_cli
from frugalmerge.zoo import cli as zoo_cli

app = typer.Typer(
    name="frugalmerge",
    help="Evolutionary model merging with cheap fitness.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

@app.callback()
def _configure(
    threads: int = typer.Option(
        0, "--threads", help="torch CPU threads (0: automatic, 1 on small machines)", min=0
    ),
) -> None:
    from frugalmerge.runtime import configure_torch_threads

    configure_torch_threads(threads or None)


for _stage in (merging_cli, evaluation_cli, estimators_cli, zoo_cli, search_cli):
    _stage.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
