"""Commands of the ``merging`` stage (registered by ``frugalmerge.cli``).

Keep module-level imports light: heavy modules are imported inside the command functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add ``frugalmerge merge`` to the top-level app."""

    @app.command("merge")
    def merge(
        recipe: Path = typer.Argument(..., help="mergekit YAML config"),
        out: Path = typer.Option(..., "--out", help="output Hugging Face model directory"),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
        dtype: Optional[str] = typer.Option(
            None, "--dtype", help="float32, bfloat16 or float16 (default: the recipe's dtype)"
        ),
        seed: Optional[int] = typer.Option(None, "--seed", help="seed of DARE methods (default random_seed or 0)"),
        max_device_memory: Optional[str] = typer.Option(
            None, "--max-device-memory", help="cap on operands + outputs resident on the device at a time (e.g. 6GB); tensors are merged in batches that fit"
        ),
        shard_size: str = typer.Option("2GiB", "--shard-size", help="maximum size of one output shard"),
    ) -> None:
        """Merge models as described by a mergekit YAML RECIPE into a Hugging Face directory."""
        from frugalmerge.merging.errors import MergeError
        from frugalmerge.merging.execute import DeviceUsage, describe_error, run_merge
        from frugalmerge.merging.engine import parse_bytes
        from frugalmerge.merging.recipe import MergeRecipe

        try:
            if dtype is not None and dtype not in ("float32", "bfloat16", "float16"):
                raise MergeError(f"--dtype {dtype!r} is not one of float32, bfloat16, float16")
            if device != "cpu" and not device.startswith("cuda"):
                raise MergeError(f"--device {device!r} is not cpu or cuda")
            budget = parse_bytes(max_device_memory)
            shard_bytes = parse_bytes(shard_size)
            if shard_bytes <= 0:  # 0 would write one shard per tensor, a negative size makes no sense
                raise MergeError(f"--shard-size must be positive, got {shard_size!r}")
            parsed = MergeRecipe.from_yaml(Path(recipe))
            usage = DeviceUsage(budget)
            run_merge(parsed, out, device=device, dtype=dtype, seed=seed, max_shard_bytes=shard_bytes,
                      max_device_memory=budget, usage=usage,
                      warn=lambda msg: typer.echo(f"warning: {msg}", err=True))
        except (MergeError, OSError) as exc:
            typer.echo(f"error: {describe_error(exc)}", err=True)
            raise typer.Exit(code=1) from None
        typer.echo(usage.describe())
        typer.echo(f"merged {parsed.merge_method} of {len(parsed.referenced_models())} models -> {out}")

