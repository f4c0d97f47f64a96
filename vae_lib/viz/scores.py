"""The judges' numbers (:mod:`vae_lib.metrics`) as pictures: conditional accuracy per class with its
confusion matrix, and which style layers carry which factor of the 'shapes' scenes.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vae_lib.metrics import COARSE_FACTORS, FINE_FACTORS
from vae_lib.viz.grids import DPI


def conditional_accuracy_bars(result: dict, class_names=None, *, judge_on_real=None, dpi: int = DPI) -> Figure:
    """Left: the share of samples per class that the judge recognises (``conditional_accuracy``
    output), with the overall share and chance; right: the confusion matrix (asked -> judged), its
    shares on a colour bar, classes named by ``class_names`` on both axes.

    ``judge_on_real``: the judge's own accuracy per class on real test images
    (``metrics.judge_accuracy_per_class(...)["per_class"]``), drawn as a second bar beside each class's:
    where the judge itself is unsure, a low score of the model says little.
    """
    per_class = np.asarray(result["per_class"], dtype=float)
    confusion = np.asarray(result["confusion"], dtype=float)
    classes = len(per_class)
    if confusion.shape != (classes, classes):
        raise ValueError(f"confusion must be ({classes}, {classes}), got {confusion.shape}.")
    names = [str(c) for c in (class_names if class_names is not None else range(classes))]
    if len(names) != classes:
        raise ValueError(f"Got {len(names)} class names for {classes} classes.")
    if judge_on_real is not None:
        judge_on_real = np.asarray(judge_on_real, dtype=float)
        if judge_on_real.shape != (classes,):
            raise ValueError(f"judge_on_real must hold one accuracy per class ({classes}), got {judge_on_real.shape}.")
    long_names = max(len(name) for name in names) > 3
    fig = Figure(figsize=(9.0, 3.8), dpi=dpi, layout="constrained")
    bars, matrix = fig.subplots(1, 2, width_ratios=(1.4, 1))
    positions = np.arange(classes)
    if judge_on_real is None:
        bars.bar(positions, per_class, color="tab:blue")
    else:
        bars.bar(positions - 0.2, per_class, width=0.4, color="tab:blue", label="model's samples")
        bars.bar(positions + 0.2, judge_on_real, width=0.4, color="tab:gray", label="real test images")
    bars.axhline(result["overall"], color="k", lw=1.2, label=f"overall {result['overall']:.1%}")
    bars.axhline(1 / classes, color="gray", ls=":", lw=1.2, label=f"chance {1 / classes:.0%}")
    bars.set_xticks(positions, names, rotation=45 if long_names else 0, ha="right" if long_names else "center",
                    fontsize="small")
    bars.set_ylim(0, 1)
    bars.set_ylabel("judged as asked (share)")
    bars.legend(fontsize="x-small", loc="lower right")
    bars.set_title(f"{result['n_per_class']} samples per class")
    shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    shown = matrix.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(shown, ax=matrix, shrink=0.8, label="share of the row")
    matrix.set_xlabel("judged")
    matrix.set_ylabel("asked")
    matrix.set_xticks(positions, names, rotation=90 if long_names else 0)
    matrix.set_yticks(positions, names)
    matrix.tick_params(labelsize="x-small")
    matrix.set_title("confusion (samples)")
    return fig


def factor_transfer_curves(table: dict, *, coarse=COARSE_FACTORS, fine=FINE_FACTORS, dpi: int = DPI) -> Figure:
    """``factor_transfer`` as lines: for each factor, the share of mixed images that take it from
    source 1 (the code of style layers [0, k)) against the crossover k.

    Coarse factors (solid) should come from source 1 already at small k, fine ones (dashed) only at
    large k; the gap between them is what the early and late layers control. Black: the share of
    images whose coarse factors all follow source 1 and fine ones all follow source 2.
    """
    if not table:
        raise ValueError("The table is empty.")
    ks = sorted(table)
    factors = list(next(iter(table.values()))["from_source1"])
    fig = Figure(figsize=(6.0, 3.4), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    solid = iter(["tab:blue", "tab:cyan", "tab:purple", "tab:green", "tab:olive", "tab:brown"])
    dashed = iter(["tab:red", "tab:orange", "tab:pink", "tab:brown"])
    for f in factors:
        y = [table[k]["from_source1"][f] for k in ks]
        if f in coarse:
            style = dict(ls="-", color=next(solid, None))
        elif f in fine:
            style = dict(ls="--", color=next(dashed, None))
        else:
            style = dict(ls=":", color="gray")
        ax.plot(ks, y, marker="o", ms=3, lw=1.3, label=f, **style)
    ax.plot(ks, [table[k]["as_expected"] for k in ks], color="k", lw=2.2, label="coarse from 1\n& fine from 2")
    ax.set_xlabel("crossover k: style layers [0, k) from source 1, [k, L) from source 2")
    ax.set_ylabel("share taking the factor from source 1")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xticks(ks)
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title("which style layers carry which factor")
    return fig


def transfer_by_level(table: dict, factor: str, *, level_names: dict | None = None, dpi: int = DPI) -> Figure:
    """One factor of ``factor_transfer`` split by the level of source 2: for each level, the share of mixed
    images that keep source 2's level (among pairs whose sources differ in ``factor``) against the crossover k,
    with the number of such pairs in the legend. Levels whose lines fall at different k are drawn by
    different layers (e.g. narrow stripes taken over by the coarse code long before wide ones).
    ``level_names``: ``{level: name}`` for the legend (default the level numbers)."""
    if not table:
        raise ValueError("The table is empty.")
    ks = sorted(table)
    first = table[ks[0]]
    if factor not in first.get("from_source2_by_level", {}):
        raise ValueError(f"The table has no levels of {factor!r}: make it with metrics.factor_transfer "
                         f"(factors: {sorted(first.get('from_source2_by_level', {}))}).")
    levels = sorted({level for k in ks for level in table[k]["from_source2_by_level"][factor]})
    fig = Figure(figsize=(6.0, 3.2), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    for level in levels:
        y = [table[k]["from_source2_by_level"][factor].get(level, math.nan) for k in ks]
        count = max(table[k]["informative_by_level"][factor].get(level, 0) for k in ks)
        name = (level_names or {}).get(level, f"level {level}")
        ax.plot(ks, y, marker="o", ms=3, lw=1.4, label=f"{name} ({count} pairs)")
    ax.set_xlabel("crossover k: style layers [0, k) from source 1, [k, L) from source 2")
    ax.set_ylabel(f"share keeping source 2's {factor}")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xticks(ks)
    ax.legend(fontsize="x-small", title=f"source 2's {factor}", title_fontsize="x-small", loc="center left",
              bbox_to_anchor=(1.01, 0.5))
    ax.set_title(f"which style layers draw each level of {factor}")
    return fig


def seed_comparison(runs: list[dict], measures: dict[str, str], variants, *, labels: dict | None = None,
                    ylim: dict | None = None, dpi: int = DPI) -> Figure:
    """Variants of a run over several seeds, one panel per measure: each seed's value as a dot, the dots
    of one seed joined by a line (the variants of a seed share everything but what they vary, so the
    slope of a line is the paired effect), and the mean over seeds as a black bar across them.

    runs: dicts with "seed", "variant" and the measures (a key, or "a.b" for a nested one such as
        "read_back.shape"); ``benchmarks/perceptual_quality.py``'s "runs".
    measures: key -> axis label with its unit, e.g. {"psnr_db": "PSNR (dB)"}.
    variants: the variants in the order of the x axis; ``labels``: their tick labels.
    ylim: measure -> (low, high) of its axis (default: around the values; give the measure's whole range,
        e.g. (0, 1) for a share, where a tight axis would make a difference of a few thousandths look large).
    """
    def value(run, key):
        for part in key.split("."):
            run = run[part]
        return float(run)

    variants = list(variants)
    seeds = sorted({r["seed"] for r in runs})
    if not runs or not measures:
        raise ValueError("seed_comparison needs runs and at least one measure")
    fig = Figure(figsize=(min(3.0 * len(measures), 13.0), 3.2), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, len(measures), squeeze=False)[0]
    ticks = [(labels or {}).get(v, v) for v in variants]
    for ax, (key, label) in zip(axes, measures.items()):
        table = {(r["seed"], r["variant"]): value(r, key) for r in runs if r["variant"] in variants}
        means = [np.mean([table[s, v] for s in seeds if (s, v) in table]) if any((s, v) in table for s in seeds)
                 else np.nan for v in variants]
        ax.scatter(range(len(variants)), means, marker="_", s=900, color="black", zorder=3, label="mean over seeds")
        for seed in seeds:
            xs = [i for i, v in enumerate(variants) if (seed, v) in table]
            ax.plot(xs, [table[seed, variants[i]] for i in xs], "o-", ms=4, lw=1, label=f"seed {seed}")
        values = [v for v in table.values()]
        spread = max(values) - min(values) or abs(max(values)) * 0.1 or 1.0
        ax.set_ylim(*(ylim or {}).get(key, (min(values) - 0.6 * spread, max(values) + 0.4 * spread)))
        ax.set_xticks(range(len(variants)), ticks, rotation=20, ha="right")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7, loc="lower left")
    return fig


READ_BACK_LABEL = "judge read-back: accuracy on these images / on the real ones"


def read_back_bars(runs: dict[str, dict[str, float]], factors=("shape", "position_x", "object_hue"), *,
                   target: float | None = None, xlabel: str = READ_BACK_LABEL, dpi: int = DPI) -> Figure:
    """How well a judge reads each factor back, per run: ``runs`` maps a run's label to {factor: ratio}, the
    ratio being accuracy on the run's images over accuracy on the real ones (``judges.read_back``), so 1 is
    "as well as from the data". One group of horizontal bars per run (top to bottom in the given order), one
    bar per factor of ``factors`` (a factor a run lacks is left out); ``target`` draws a dashed line. Any other
    per-factor score in [0, 1] draws the same way with its own ``xlabel`` (e.g. ``metrics.latent_probe``'s
    accuracies beside their chance levels)."""
    if not runs:
        raise ValueError("read_back_bars needs at least one run")
    labels = list(runs)
    height = 0.8 / len(factors)
    fig = Figure(figsize=(8.5, 0.9 + 0.32 * len(labels) * len(factors) ** 0.5 + 0.3), dpi=dpi)
    ax = fig.subplots()
    positions = np.arange(len(labels))[::-1].astype(float)
    for j, factor in enumerate(factors):
        values = [runs[label].get(factor, np.nan) for label in labels]
        ax.barh(positions + (len(factors) - 1 - 2 * j) * height / 2, values, height=height,
                label=factor.replace("_", " "))
    ax.set_yticks(positions, labels, fontsize=8)
    ax.axvline(1.0, color="black", lw=0.8)
    if target is not None:
        ax.axvline(target, color="gray", ls="--", lw=0.8, label=f"target {target:g}")
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))     # beside the bars, never over them
    fig.tight_layout()
    return fig


def rate_distortion(runs: list[dict], variants, *, labels: dict | None = None, rate: str = "kl",
                    distortion: str = "nll", dpi: int = DPI) -> Figure:
    """Every run as a point: its rate (the KL term, nats per image) across, its distortion (the
    reconstruction term E_q[-log p(x|z)], nats per image) up; one colour per variant, one marker per seed.

    The dotted diagonals are lines of equal -ELBO = distortion + rate (nats): a run below and left of another has
    the better bound; along a diagonal, runs trade reconstruction for KL at the same bound.

    runs: dicts with "seed", "variant", ``rate`` and ``distortion`` (``benchmarks/kl_schedules.py``'s "runs").
    variants: the variants to draw, in the legend's order; ``labels``: their names in the legend.
    """
    variants = list(variants)
    shown = [r for r in runs if r["variant"] in variants]
    if not shown:
        raise ValueError(f"rate_distortion needs runs of the variants {variants}")
    seeds = sorted({r["seed"] for r in shown})
    markers = dict(zip(seeds, "osD^v<>ph*"))
    fig = Figure(figsize=(5.6, 3.8), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    x = np.array([float(r[rate]) for r in shown])
    y = np.array([float(r[distortion]) for r in shown])
    pad_x, pad_y = 0.08 * (np.ptp(x) or 1.0), 0.08 * (np.ptp(y) or 1.0)
    x_lim, y_lim = (x.min() - pad_x, x.max() + pad_x), (y.min() - pad_y, y.max() + pad_y)
    # Round levels of -ELBO across the box, chosen as matplotlib chooses ticks.
    for total in MaxNLocator(nbins=8).tick_values(x_lim[0] + y_lim[0], x_lim[1] + y_lim[1]):
        ax.plot(x_lim, [total - x_lim[0], total - x_lim[1]], ":", color="gray", lw=0.8)
        label_x = min(x_lim[1], total - y_lim[0]) - 0.02 * np.ptp(x_lim)
        if x_lim[0] < label_x and y_lim[0] < total - label_x < y_lim[1]:
            ax.text(label_x, total - label_x, f"{total:g}", fontsize="x-small", color="gray", ha="right", va="bottom")
    for i, variant in enumerate(variants):
        named = False
        for seed in seeds:
            points = [r for r in shown if r["variant"] == variant and r["seed"] == seed]
            if points:
                ax.scatter([float(r[rate]) for r in points], [float(r[distortion]) for r in points], s=36,
                           color=f"C{i}", marker=markers[seed],
                           label=None if named else (labels or {}).get(variant, variant))
                named = True
    for seed in seeds:
        ax.scatter([], [], color="gray", marker=markers[seed], label=f"seed {seed}")
    ax.set_xlim(*x_lim)
    ax.set_ylim(*y_lim)
    ax.set_xlabel("rate: KL term (nats per image)")
    ax.set_ylabel("distortion: reconstruction term (nats per image)")
    ax.set_title("rate against distortion (dotted: equal -ELBO, nats)")
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig

