"""Commands of the ``merging`` stage (registered by ``frugalmerge.cli``).

Keep module-level imports light: heavy modules are imported inside the command functions.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the top-level app."""
