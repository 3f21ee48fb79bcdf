"""Plots the pages share (what `d2l.show_heatmaps` does not already do).

`d2l.show_heatmaps` draws grids of same-shaped matrices (e.g. the weights of every head); `show_matrices` draws
matrices of *different* shapes side by side with their values written in the cells, for worked examples where
the reader follows each number (a query, its keys, the weights, the context vector).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


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
