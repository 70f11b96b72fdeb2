"""Flags, look and output files of every figure script (not run by ``just figures``).

Every ``experiments/<name>.py`` takes ``--quick``, ``--seed`` and ``--out-dir`` and writes
``<out-dir>/<name>.{png,pdf,json}``: :func:`parse_args`, :func:`style`, :func:`save_figure`,
:func:`save_json`. The VAE scripts add their budget flags through
``_vae_runs.parse_args``.
"""

import argparse
import dataclasses
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every script takes: ``--quick``, ``--seed``, ``--out-dir``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--seed", type=int, default=0, help="root PRNG seed")
    parser.add_argument("--out-dir", type=Path, default=Path("paper_figures"))
    return parser


def parse_args(argv, description: str) -> argparse.Namespace:
    """Parse ``--quick``, ``--seed`` and ``--out-dir``."""
    return parser(description).parse_args(argv)


def style(*, grid: bool = False) -> None:
    """One look for all figures; ``grid=True`` for line plots (not over images)."""
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "font.size": 10,
            "axes.titlesize": 10.5,
            "axes.labelsize": 10,
            "legend.fontsize": 8.5,
            "axes.grid": grid,
            "grid.alpha": 0.3,
        }
    )


def save_figure(fig, out_dir: Path, name: str, *, dpi: int = 150) -> Path:
    """Write ``<out_dir>/<name>.png`` and ``.pdf``, close the figure; returns the PNG path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{name}.png"
    fig.savefig(png, dpi=dpi, bbox_inches="tight")
    fig.savefig(out_dir / f"{name}.pdf", bbox_inches="tight")
    plt.close(fig)
    return png


def to_jsonable(obj):
    """Dataclasses, dicts, sequences, paths and arrays as JSON values; refuses NaN and Inf."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, str | bool):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    arr = np.asarray(obj)
    if arr.dtype.kind in "fc":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"refusing to write a non-finite number to JSON: {arr}")
        return arr.astype(float).tolist()
    if arr.dtype.kind in "iub":
        return arr.tolist()
    return repr(obj)


def save_json(out_dir: Path, name: str, data: dict) -> Path:
    """Write the numbers behind a figure to ``<out_dir>/<name>.json`` (finite numbers only)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(to_jsonable(data), indent=1))
    return path
