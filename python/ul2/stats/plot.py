"""``plot``: the measured histograms against the exact laws, as a PNG (matplotlib, imported
when called)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .fit import format_pvalue
from .measure import MixtureStats


def plot(stats: MixtureStats, path: str | Path, *, title: str | None = None) -> bool:
    """Write a PNG: per span denoiser, the span-length histogram against the exact law; per
    prefix LM, the split histogram against the uniform law; and the denoiser rates. Returns
    ``False`` (writing nothing) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [d for d in stats.denoisers if d.span_length_counts is not None or d.prefix_counts is not None]
    n = len(panels) + 1
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    flat = axes.ravel()
    for ax, d in zip(flat, panels, strict=False):
        if d.span_length_counts is not None and d.span_length_pmf is not None:
            counts, pmf, fit = d.span_length_counts, d.span_length_pmf, d.span_length_fit
            total = counts.sum()
            support = np.flatnonzero((pmf * total >= 0.5) | (counts > 0))
            support = support[support > 0]
            lo = int(support.min()) if support.size else 1
            hi = int(support.max()) if support.size else 1
            xs = np.arange(lo, hi + 1)
            freq = counts[lo : hi + 1] / max(total, 1)
            step = max(1, math.ceil((hi - lo + 1) / 60))  # wide laws: bars of `step` lengths
            starts = np.arange(0, len(xs), step)
            heights = np.add.reduceat(freq, starts) / step  # per-length height, comparable with the pmf
            ax.bar(
                xs[starts] - 0.5,
                heights,
                width=step,
                align="edge",
                color="tab:blue",
                alpha=0.6,
                label="observed",
            )
            if lo == hi:
                ax.plot([lo, lo], [0, pmf[lo]], color="tab:red", lw=1.5, label="exact law")
                ax.set_xlim(lo - 5, hi + 5)
            else:
                ax.plot(xs, pmf[lo : hi + 1], color="tab:red", lw=1.5, label="exact law")
            ax.set_xlabel("noise span length")
        else:
            assert d.prefix_counts is not None and d.prefix_bounds is not None
            counts, fit = d.prefix_counts, d.prefix_fit
            lo, hi = d.prefix_bounds
            total = counts.sum()
            bins = max(1, min(40, hi - lo + 1))
            edges = np.linspace(lo, hi + 1, bins + 1)
            ks = np.repeat(np.arange(len(counts)), counts)
            ax.hist(ks, bins=edges, color="tab:green", alpha=0.6, label="observed")
            ax.hlines(total / bins, lo, hi + 1, color="tab:red", lw=1.5, label="uniform law")
            ax.set_xlabel("prefix length k")
        p = "" if fit is None else f", p={format_pvalue(fit.pvalue)}"
        ax.set_title(f"{d.label}\n{d.samples} examples{p}", fontsize=9)
        ax.legend(fontsize=7)
    ax = flat[len(panels)]
    idx = np.arange(len(stats.denoisers))
    ax.bar(idx - 0.2, stats.denoiser_counts / max(stats.samples, 1), width=0.4, label="observed")
    ax.bar(idx + 0.2, [d.rate for d in stats.denoisers], width=0.4, label="rate / sum", color="tab:red")
    ax.set_xticks(idx, [str(i) for i in idx])
    ax.set_xlabel("denoiser (mixture index)")
    ax.set_title(f"denoiser shares, p={format_pvalue(stats.rates_fit.pvalue)}", fontsize=9)
    top = max(
        float(stats.denoiser_counts.max()) / max(stats.samples, 1), max(d.rate for d in stats.denoisers)
    )
    ax.set_ylim(0, top * 1.35)
    ax.legend(fontsize=7, ncol=2, loc="upper center")
    for ax in flat[n:]:
        ax.axis("off")
    fig.suptitle(title or f"ul2: {stats.samples} examples vs the exact laws", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
