"""PNG plots of a run (matplotlib, Agg backend): fitness over generations, the Pareto front with
the source models marked, estimated vs true test accuracy."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from frugalmerge.search.loop import SearchRun, SearchState


def _save(fig: Any, path: Path) -> str:
    from frugalmerge.search.store import atomic_write_bytes
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path.name


def plot_fitness(run: SearchRun, state: SearchState) -> Any:
    import matplotlib.pyplot as plt

    hist = state.history or []
    gens = [h["generation"] for h in hist]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in run.names:
        ax.plot(gens, [h["best"][name] for h in hist], marker="o", label=f"{name}: best so far")
        ax.plot(gens, [h["mean"][name] for h in hist], linestyle="--", alpha=0.7, label=f"{name}: generation mean")
    ax.set_xlabel("generation")
    ax.set_ylabel("estimated accuracy (search split)")
    ax.set_title(f"{run.config.name}: fitness over generations")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def plot_pareto(run: SearchRun, entries: list[dict[str, Any]], front: list[dict[str, Any]],
                search_view: dict[str, dict[str, float]], chosen: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    pairs = list(combinations(range(len(run.names)), 2))
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.2), squeeze=False)
    allv = np.asarray([[e["estimate"][n]["value"] for n in run.names] for e in entries])
    fv = np.asarray([[e["estimate"][n]["value"] for n in run.names] for e in front])
    cv = [chosen["estimate"][n]["value"] for n in run.names]
    for ax, (i, j) in zip(axes[0], pairs):
        ax.scatter(allv[:, i], allv[:, j], s=12, c="0.7", label="candidates")
        order = np.argsort(fv[:, i])
        ax.plot(fv[order, i], fv[order, j], "o-", c="tab:red", ms=5, label="Pareto set")
        for name, vals in search_view.items():
            ax.scatter(vals[run.names[i]], vals[run.names[j]], marker="*", s=160, edgecolor="k", zorder=5,
                       label=f"source {name}")
        ax.scatter(cv[i], cv[j], marker="D", s=70, c="gold", edgecolor="k", zorder=6, label="knee (chosen)")
        ax.set_xlabel(f"{run.names[i]} (estimated)")
        ax.set_ylabel(f"{run.names[j]} (estimated)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{run.config.name}: Pareto front (search split estimates)")
    return fig


def plot_estimated_vs_true(run: SearchRun, state: SearchState, tested: dict[str, dict[str, Any]]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    lo, hi = 1.0, 0.0
    for name in run.names:
        est = [state.cache[k]["estimate"][name]["value"] for k in tested]
        ese = [state.cache[k]["estimate"][name]["se"] for k in tested]
        tru = [tested[k][name]["acc"] for k in tested]
        tse = [tested[k][name]["se"] for k in tested]
        ax.errorbar(est, tru, xerr=ese, yerr=tse, fmt="o", ms=4, capsize=2, label=name)
        lo, hi = min(lo, *est, *tru), max(hi, *est, *tru)
    pad = 0.02
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
    ax.set_xlabel("estimated accuracy (search, cheap)")
    ax.set_ylabel("true accuracy (held-out test)")
    ax.set_title(f"{run.config.name}: estimated vs true")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def plot_all(run: SearchRun, state: SearchState, entries: list[dict[str, Any]], front: list[dict[str, Any]],
             tested: dict[str, dict[str, Any]], search_view: dict[str, dict[str, float]],
             chosen: dict[str, Any]) -> list[str]:
    """Write every plot into the run directory; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: list[str] = []
    for fname, make in (
        ("fitness.png", lambda: plot_fitness(run, state)),
        ("pareto.png", lambda: plot_pareto(run, entries, front, search_view, chosen) if len(run.names) > 1 else None),
        ("estimated_vs_true.png", lambda: plot_estimated_vs_true(run, state, tested) if tested else None),
    ):
        fig = make()
        if fig is not None:
            out.append(_save(fig, run.run_dir / fname))
            plt.close(fig)
    return out
