"""Training curves: the terms of a Trainer history per step, epoch means, validation, the KL weight beta;
several runs on one axis.

Histories are the Trainer's: ``{"steps": [{"step", "epoch", <term>: value, "beta", ...}],
"epochs": [{"epoch", <term>: mean, "val_<term>": value, ...}]}``.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from vae_lib.viz.grids import DPI, MAX_WIDTH_IN

SMOOTHING = 0.05     # moving-average window of per-step curves, as a fraction of the steps
# The unit of each term of a Trainer history (vae_lib.losses): what a loss axis is labelled with.
NATS = "nats per image"
TERM_UNITS = {"nll": NATS, "kl": NATS, "elbo": NATS, "neg_elbo": NATS, "iwae_nll": NATS,
              "mse": "squared error, summed over pixels, per image", "perceptual": "VGG feature distance per image",
              "sigma": "pixel value units", "beta": "KL weight", "psnr_db": "dB"}


def term_unit(term: str, history: dict | None = None) -> str | None:
    """The unit of a history's ``term`` (``TERM_UNITS``); "loss" is in nats per image when the history is a
    likelihood's (it has "nll" and no "mse": the CVAE, or the calibrated StyleGAN-VAE loss without a
    perceptual term), else a weighted sum of per-image terms. None for a term not known here."""
    if term.startswith("val_"):
        term = term[4:]
    if term == "loss":
        keys = {key for s in (history or {}).get("steps", [])[:1] for key in s}
        if "nll" in keys and ("mse" not in keys or not any(s.get("perceptual") for s in history["steps"])):
            return NATS
        return "weighted sum of the terms, per image"
    return TERM_UNITS.get(term)


def _axis_label(term: str, history: dict | None = None) -> str:
    unit = term_unit(term, history)
    return f"{term} ({unit})" if unit else term


def _moving_average(x: np.ndarray, values: np.ndarray, smoothing: float):
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing is the moving-average window as a fraction of the steps, in [0, 1); "
                         f"got {smoothing}.")
    window = max(1, int(round(len(values) * smoothing)))
    if window == 1:
        return x, values
    return x[window - 1:], np.convolve(values, np.ones(window) / window, mode="valid")


def _step_series(history: dict, term: str, run: str = "history"):
    points = [(s["step"], s[term]) for s in history.get("steps", []) if term in s]
    if not points:
        available = sorted({key for s in history.get("steps", []) for key in s} - {"step", "epoch"})
        raise ValueError(f"{run} has no per-step {term!r}; it has: {', '.join(available) or 'no steps'}.")
    x, v = np.array(points, dtype=float).T
    return x, v


def _epoch_ends(history: dict) -> np.ndarray:
    """The step at which each entry of history['epochs'] ends (the last step logged in that epoch)."""
    last_step = {}
    for s in history.get("steps", []):
        last_step[s["epoch"]] = s["step"]
    return np.array([last_step.get(e["epoch"], np.nan) for e in history.get("epochs", [])], dtype=float)


def _set_scale(ax, values, log_scale: bool) -> None:
    if log_scale:
        ax.set_yscale("log" if np.all(np.asarray(values) > 0) else "symlog")


def training_curves(history: dict, terms=("loss", "nll", "kl"), show_beta: bool = True, *,
                    log_scale: bool = False, smoothing: float = SMOOTHING, dpi: int = DPI) -> Figure:
    """One panel per term of a Trainer history: per-step values (faint), their moving average,
    epoch means (dots) and, where the history has them, validation values ("val_<term>").

    The KL weight beta is drawn on a twin axis of the "kl" panel (the first panel if "kl" is not
    plotted). ``log_scale`` uses a log y axis (symlog where values are <= 0); ``smoothing`` is the
    moving-average window as a fraction of the number of steps (0: no smoothing).
    """
    if not history.get("steps"):
        raise ValueError("The history has no steps to plot.")
    terms = [terms] if isinstance(terms, str) else list(terms)
    series = {term: _step_series(history, term) for term in terms}
    epochs, ends = history.get("epochs", []), _epoch_ends(history)
    fig = Figure(figsize=(min(3.2 * len(terms), 3 * MAX_WIDTH_IN), 2.6), dpi=dpi, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(terms)))
    for ax, term in zip(axes, terms):
        x, v = series[term]
        ax.plot(x, v, lw=0.8, alpha=0.3, color="tab:blue", label="per step")
        ax.plot(*_moving_average(x, v, smoothing), lw=1.5, color="tab:blue", label="smoothed")
        for key, style, color, label in ((term, "o", "tab:orange", "epoch mean"),
                                         (f"val_{term}", "s--", "tab:green", "validation")):
            points = [(end, e[key]) for end, e in zip(ends, epochs) if key in e and np.isfinite(end)]
            if points:
                ax.plot(*np.array(points).T, style, ms=4, color=color, label=label)
        _set_scale(ax, v, log_scale)
        ax.set_title(term)
        ax.set_xlabel("step")
        unit = term_unit(term, history)
        if unit:
            ax.set_ylabel(unit)
    axes[0].legend(fontsize="small")
    if show_beta:
        beta = [(s["step"], s["beta"]) for s in history["steps"] if "beta" in s]
        if beta:
            twin = axes[terms.index("kl") if "kl" in terms else 0].twinx()
            twin.plot(*np.array(beta, dtype=float).T, color="gray", ls=":", lw=1.2)
            twin.set_ylabel("β (gray, dotted)")
    return fig


def compare_runs(histories: dict, term: str = "kl", *, show_beta: bool = False, log_scale: bool = False,
                 smoothing: float = SMOOTHING, from_step: int = 0, dpi: int = DPI) -> Figure:
    """Several runs' per-step ``term`` on one axis (e.g. the KL under different warm-up schedules).

    histories: {run name: Trainer history}. Each run is a moving average over its raw values (faint,
    same colour). ``show_beta`` adds each run's beta on a twin axis, dashed in the run's colour.
    ``from_step``: draw the steps from this one on (runs that share their start differ only later).
    """
    if not histories:
        raise ValueError("No histories to compare.")
    fig = Figure(figsize=(5.0, 3.0), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    twin = ax.twinx() if show_beta else None
    all_values = []
    for name, history in histories.items():
        x, v = _step_series(history, term, run=f"Run {name!r}")
        xs, vs = _moving_average(x, v, smoothing)
        keep, keep_smooth = np.asarray(x) >= from_step, np.asarray(xs) >= from_step
        x, v, xs, vs = np.asarray(x)[keep], np.asarray(v)[keep], np.asarray(xs)[keep_smooth], np.asarray(vs)[keep_smooth]
        if not len(v):
            raise ValueError(f"Run {name!r} has no step at or after from_step={from_step}.")
        (line,) = ax.plot(xs, vs, lw=1.5, label=str(name))
        ax.plot(x, v, lw=0.8, alpha=0.25, color=line.get_color())
        all_values.append(v)
        if twin is not None:
            beta = [(s["step"], s["beta"]) for s in history["steps"] if "beta" in s]
            if beta:
                twin.plot(*np.array(beta).T, ls="--", lw=1.0, color=line.get_color())
    _set_scale(ax, np.concatenate(all_values), log_scale)
    ax.set_xlabel("step")
    ax.set_ylabel(_axis_label(term, next(iter(histories.values()))))
    ax.legend(fontsize="small")
    if twin is not None:
        twin.set_ylabel("β (dashed)")
    return fig


def metric_curves(runs: dict, metric: str = "psnr_db", *, references: dict | None = None, ylabel: str | None = None,
                  title: str | None = None, dpi: int = DPI) -> Figure:
    """A measure against training steps for several runs (e.g. ``benchmarks/stylevae_learning.py``'s curves).

    runs: {run name: [{"step": int, metric: float, ...}, ...]} (points in step order). references:
    {label: value} drawn as grey dotted horizontal lines (a floor such as the mean image's PSNR).
    """
    if not runs:
        raise ValueError("No runs to draw.")
    fig = Figure(figsize=(5.5, 3.2), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    for name, points in runs.items():
        if not points or any(metric not in p or "step" not in p for p in points):
            raise ValueError(f"Run {name!r} needs points with 'step' and {metric!r}.")
        ax.plot([p["step"] for p in points], [p[metric] for p in points], marker="o", ms=3, lw=1.5, label=str(name))
    for label, value in (references or {}).items():
        ax.axhline(value, color="grey", ls=":", lw=1.0)
        ax.annotate(str(label), (0.01, value), xycoords=("axes fraction", "data"), va="bottom", fontsize="x-small",
                    color="grey")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(ylabel or _axis_label(metric))
    if title:
        ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="x-small")
    return fig
