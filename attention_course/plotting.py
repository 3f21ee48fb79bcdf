"""Plots the pages share (what `d2l.show_heatmaps` does not already do).

`show_heatmaps` draws grids of same-shaped matrices (e.g. the weights of every head) like `d2l.show_heatmaps`,
with the same arguments, but on **one colour scale**: d2l's lets each panel scale its own colours and draws one
colour bar, from its last panel, so that a panel whose largest weight is 0.2 looks as dark as one whose largest
is 1.0, under a colour bar that is right for the last panel only. Here every panel shares one
`matplotlib.colors.Normalize` (kept as `fig.shared_norm`) and the colour bar is that scale's. Boolean matrices
(masks) are drawn with two colours and a colour bar with two labelled ticks, never a continuous 0-1 bar
(`show_masks`). `show_matrices` draws matrices of *different* shapes side by side with their values written in
the cells, for worked examples where the reader follows each number.
"""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import BoundaryNorm, ListedColormap, Normalize

MASK_COLOURS = ("#f0f0f0", "#2b5c8a")  # False, True: light grey and dark blue, apart in any colour vision


def show_matrices(matrices: dict, *, cmap: str = "Reds", decimals: int = 2, cell: float = 0.55, suptitle=None):
    """Draw each named 2-D tensor as an annotated heatmap, left to right; returns the figure.

    A 1-D tensor is drawn as one row. Widths follow the number of columns, so shapes read at a glance.
    """
    mats = {name: torch.as_tensor(m).detach().float() for name, m in matrices.items()}
    mats = {name: (m.unsqueeze(0) if m.dim() == 1 else m) for name, m in mats.items()}
    widths = [m.shape[1] for m in mats.values()]
    height = max(m.shape[0] for m in mats.values())
    fig, axes = plt.subplots(
        1,
        len(mats),
        figsize=(cell * sum(widths) + 1.2 * len(mats), cell * height + 1.4),
        gridspec_kw={"width_ratios": widths},
        squeeze=False,
    )
    for ax, (name, m) in zip(axes[0], mats.items()):
        ax.imshow(m.numpy(), cmap=cmap, aspect="equal")
        scale = m.abs().max().item() or 1.0
        for (i, j), value in zip(((i, j) for i in range(m.shape[0]) for j in range(m.shape[1])), m.flatten()):
            v = value.item()
            ax.text(
                j,
                i,
                f"{v:.{decimals}f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if abs(v) > 0.6 * scale and cmap in ("Reds", "Blues", "viridis") else "black",
            )
        ax.set_title(f"{name}\n{tuple(m.shape)}", fontsize=9)
        ax.set_xticks(range(m.shape[1]))
        ax.set_yticks(range(m.shape[0]))
        ax.tick_params(labelsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def shared_color_scale(fig=None, vmin: float = 0.0, vmax: float | None = None) -> None:
    """Give every image of `fig` (default: the current figure) the same colour limits.

    `d2l.show_heatmaps` lets each panel scale its own colours and draws one colour bar, from its last panel: two
    panels whose largest weights are 1.0 and 0.3 then look equally dark. Call this right after it so that one
    colour means one value in every panel (and the colour bar is right for all of them). `vmax` defaults to
    the largest value shown. Returns None, so that a notebook cell ending with it does not show the figure twice.
    """
    from matplotlib.image import AxesImage

    fig = fig or plt.gcf()
    images = fig.findobj(AxesImage)
    if vmax is None:
        vmax = max(float(im.get_array().max()) for im in images)
    for im in images:
        im.set_clim(vmin, vmax)


def _svg_like_d2l() -> None:
    """The pages that use d2l show figures as SVG (`d2l.use_svg_display`); keep that when d2l is loaded."""
    d2l = sys.modules.get("d2l.torch")
    if d2l is not None:
        d2l.use_svg_display()


def _grid(matrices) -> np.ndarray:
    data = matrices.detach().cpu().numpy() if isinstance(matrices, torch.Tensor) else np.asarray(matrices)
    if data.ndim != 4:
        raise ValueError(f"matrices must be (rows, columns, height, width), as for d2l.show_heatmaps: {data.shape}")
    return data


def show_heatmaps(
    matrices,
    xlabel,
    ylabel,
    titles=None,
    figsize=(2.5, 2.5),
    cmap="Reds",
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar_label: str | None = None,
    mask_labels=("False", "True"),
    axes=None,
):
    """`d2l.show_heatmaps` on one colour scale, in the current figure (`plt.gcf()`).

    `matrices` is (rows, columns, height, width); `titles` name the columns. Every panel uses one `Normalize`
    from `vmin` (default: 0, or the smallest value if negative) to `vmax` (default: the largest value shown), and
    the one colour bar shows it. A boolean `matrices` is drawn by `show_masks` (two colours, `mask_labels`);
    values that are all 0 or 1 without an explicit scale are refused as a mask passed as numbers. `axes`: draw
    into these (rows, columns) axes of an existing figure instead of a new one. Returns None, as d2l's does, so
    that a cell ending with it shows the figure once.
    """
    data = _grid(matrices)
    if data.dtype == bool:
        show_masks(matrices, xlabel, ylabel, titles=titles, figsize=figsize, labels=mask_labels, axes=axes)
        return
    if vmin is None and vmax is None and np.isin(data, (0, 1)).all():
        raise ValueError(
            "every value is 0 or 1: a mask? Pass it as a bool tensor (drawn in two colours), or give vmin and vmax"
        )
    _svg_like_d2l()
    lo = min(0.0, float(data.min())) if vmin is None else vmin
    hi = float(data.max()) if vmax is None else vmax
    norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1.0)
    fig, axes = _panels(data, xlabel, ylabel, titles, figsize, cmap=cmap, norm=norm, axes=axes)
    bar = fig.colorbar(axes[-1, -1].images[0], ax=axes.ravel().tolist(), shrink=0.6)
    if colorbar_label:
        bar.set_label(colorbar_label)
    fig.shared_norm = norm


def show_masks(masks, xlabel, ylabel, titles=None, figsize=(2.5, 2.5), labels=("False", "True"), axes=None):
    """Boolean masks (rows, columns, height, width) in two colours, with a two-entry colour bar naming them.

    `labels` name False and True, e.g. ("masked out", "may attend"). Draws in the current figure; returns None.
    """
    data = _grid(masks)
    if data.dtype != bool:
        raise TypeError(f"show_masks draws boolean masks, not {data.dtype}: use show_heatmaps for values")
    _svg_like_d2l()
    cmap = ListedColormap(MASK_COLOURS)
    norm = BoundaryNorm([-0.5, 0.5, 1.5], cmap.N)
    fig, axes = _panels(data.astype(int), xlabel, ylabel, titles, figsize, cmap=cmap, norm=norm, axes=axes)
    for ax in axes.flat:  # cell borders, so that single cells can be counted
        h, w = data.shape[-2:]
        ax.set_xticks(np.arange(-0.5, w), minor=True)
        ax.set_yticks(np.arange(-0.5, h), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.8)
        ax.tick_params(which="minor", length=0)
    bar = fig.colorbar(axes[-1, -1].images[0], ax=axes.ravel().tolist(), shrink=0.6, ticks=[0, 1])
    bar.ax.set_yticklabels(list(labels))
    bar.ax.tick_params(length=0)
    fig.shared_norm = norm


def _panels(data, xlabel, ylabel, titles, figsize, *, cmap, norm, axes=None):
    num_rows, num_cols = data.shape[:2]
    if axes is None:
        fig, axes = plt.subplots(num_rows, num_cols, figsize=figsize, sharex=True, sharey=True, squeeze=False)
    else:
        axes = np.asarray(axes, dtype=object).reshape(num_rows, num_cols)
        fig = axes[0, 0].figure
    for i, (row_axes, row_matrices) in enumerate(zip(axes, data)):
        for j, (ax, matrix) in enumerate(zip(row_axes, row_matrices)):
            ax.imshow(matrix, cmap=cmap, norm=norm)
            if i == num_rows - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
            if titles:
                ax.set_title(titles[j])
    return fig, axes
