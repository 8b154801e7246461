"""Figures of the report (seaborn), returned as PNG data: URIs so the HTML stays self-contained."""

import base64
import io
import re

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator  # noqa: E402
from rdd import methods  # noqa: E402

DPI = 80
PALETTE = {m.name: m.colour for m in methods.METHODS.values()}


def png_data_uri(data):
    """A data: URI for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_uri(fig):
    buf = io.BytesIO()
    # No Software/date metadata: the same inputs give the same bytes.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return png_data_uri(buf.getvalue())


def _log2_steps_axis(ax, steps):
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted(steps)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(s) for s in sorted(steps)])


def _log_if_wide(ax, values):
    values = [v for v in values if v > 0]
    if values and max(values) / min(values) > 10:
        ax.set_yscale("log")


def quality_vs_cost(metrics, paper_points=None):
    """FID and KID against NFE (log2), one line per method, error bars = std over seeds."""
    done = metrics[(metrics["status"] == "done") & (metrics["ablation"] == "") & (metrics["variant"] == "")]
    if done.empty:
        return None
    data = done.assign(nfe=done["steps"].astype(int), kid_x1e3=pd.to_numeric(done["kid_mean"]) * 1e3)
    floor = data[data["method"].isin(methods.floor_names())]
    data = data[~data["method"].isin(methods.floor_names())]
    if data.empty:
        return None
    order = [m for m in methods.method_names() if m in set(data["method"])]
    panels = [("fid", "FID")] + ([("kid_x1e3", "KID ×10³")] if data["kid_x1e3"].notna().any() else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.4), squeeze=False)
    for ax, (column, label) in zip(axes[0], panels):
        sns.lineplot(data=data.dropna(subset=[column]), x="nfe", y=column, hue="method", hue_order=order,
                     palette=PALETTE, marker="o", errorbar="sd", err_style="bars", ax=ax)
        if column == "fid" and paper_points:
            for method, points in paper_points.items():
                xs, ys = zip(*sorted(points))
                ax.plot(xs, ys, linestyle=":", marker="s", markerfacecolor="none", color=PALETTE[method],
                        label=f"{methods.label(method)} (paper)")
        for name, rows in floor.groupby("method"):
            level = pd.to_numeric(rows[column]).mean()
            if pd.notna(level):  # real images take no network evaluation: a level, not a point on the NFE axis
                ax.axhline(level, linestyle="--", color=PALETTE[name], label=methods.label(name))
        _log2_steps_axis(ax, set(data["nfe"]))
        _log_if_wide(ax, data[column].dropna())
        _nfe_axes(ax, label)
    fig.tight_layout()
    return _figure_uri(fig)


def _nfe_axes(ax, ylabel):
    """Axis labels, a legend with the methods' display names, and a light grid."""
    ax.set_xlabel("NFE (sampling steps)")
    ax.set_ylabel(ylabel)
    handles, names = ax.get_legend_handles_labels()
    ax.legend(handles, [methods.label(n) for n in names], fontsize=8)
    ax.grid(alpha=0.3)


def speed_plot(speed):
    """Measured images/s against NFE per method (main rows): the benchmark's median, bars = range over repeats."""
    done = speed[(speed["status"] == "done") & (speed["ablation"] == "") & (speed["variant"] == "")]
    done = done.dropna(subset=["images_per_second"])
    if done.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for method in [m for m in methods.method_names() if m in set(done["method"])]:
        rows = done[done["method"] == method].sort_values("nfe")
        ips, low, high = (pd.to_numeric(rows[c]).to_numpy() for c in
                          ("images_per_second", "images_per_second_low", "images_per_second_high"))
        ax.errorbar(rows["nfe"].astype(int), ips, yerr=[ips - low, high - ips], marker="o", capsize=3,
                    color=PALETTE[method], label=method)
    _log2_steps_axis(ax, set(done["nfe"].astype(int)))
    ax.set_yscale("log")
    _nfe_axes(ax, "images / s (measured)")
    fig.tight_layout()
    return _figure_uri(fig)


def _round_order(name):
    match = re.fullmatch(r"\s*(\d+)\s*->\s*(\d+)\s*", str(name))
    return (1, -int(match.group(1))) if match else (0, 0)


def training_curves(curves, replicate_labels):
    """The figure of `curves_figure` as a data: URI (None without curves)."""
    fig = curves_figure(curves, replicate_labels)
    return None if fig is None else _figure_uri(fig)


def curves_figure(curves, replicate_labels):
    """One panel per (loss term, round) of one run lineage; rows = terms, columns = rounds; one line per
    training replicate (`replicate_labels`: replicate -> legend text), so their spread shows the training
    noise of each loss."""
    if curves.empty:
        return None
    rounds = sorted(curves["round"].unique(), key=_round_order)
    terms = sorted(curves["term"].unique(), key=lambda t: (t != "loss", t))
    several = len(replicate_labels) > 1
    colours = dict(zip(sorted(replicate_labels), sns.color_palette("colorblind", len(replicate_labels))
                       if several else ["#444"]))
    fig, axes = plt.subplots(len(terms), len(rounds), figsize=(2.6 * len(rounds) + 0.4, 1.7 * len(terms) + 0.3),
                             squeeze=False, sharey="row")
    for i, term in enumerate(terms):
        for j, name in enumerate(rounds):
            ax = axes[i][j]
            panel = curves[(curves["term"] == term) & (curves["round"] == name)]
            # Few lines per panel, nothing to aggregate: plain plot (seaborn's per-call cost adds up here).
            for replicate, part in sorted(panel.groupby("replicate"), key=lambda kv: kv[0]):
                part = part.sort_values("step")
                ax.plot(part["step"], part["value"], color=colours[replicate], linewidth=1,
                        label=replicate_labels[replicate])
            if i == 0 and name:
                ax.set_title(str(name), fontsize=9)
            ax.set_ylabel(term if j == 0 else "", fontsize=9)
            ax.set_xlabel("step" if i == len(terms) - 1 else "", fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    if several:
        # Every panel's lines, in replicate order: a replicate need not have points in the first panel.
        drawn = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels())}
        labels = [replicate_labels[r] for r in sorted(replicate_labels) if replicate_labels[r] in drawn]
        fig.legend([drawn[label] for label in labels], labels, loc="lower center", ncol=min(len(labels), 3),
                   fontsize=7, frameon=False)
        fig.tight_layout(rect=(0, 0.12 / len(terms), 1, 1))
    else:
        fig.tight_layout()
    return fig
