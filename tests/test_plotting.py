"""The figures' colour scales say what the prose says: panels that a page compares share one scale and its colour
bar; boolean masks are two colours; the pages draw their heatmaps through `attention_course.plotting`.

`d2l.show_heatmaps` scales every panel on its own (the capstone's layer-1 map, largest weight 0.21, was as dark
as layer 2's 0.98 under a colour bar reading to 0.9): test_d2l_scales_panels_apart shows that fault, the others
show that the course's helper does not have it.
"""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from helpers import ROOT
from matplotlib.image import AxesImage
from sitebuild import toc_pages

from attention_course import plotting

PAGES = [p for p in toc_pages() if (ROOT / f"{p}.md").is_file()]


def two_layers() -> torch.Tensor:
    """A broad map (largest weight 0.21) and a sharp one (0.98), as the capstone's layers: (1, 2, 8, 8)."""
    broad = torch.full((8, 8), 0.79 / 7)
    broad[:, 0] = 0.21
    sharp = torch.full((8, 8), 0.02 / 7)
    sharp[torch.arange(8), torch.arange(7, -1, -1)] = 0.98
    return torch.stack([broad, sharp]).unsqueeze(0)


def images(fig) -> list[AxesImage]:
    return [im for ax in fig.axes for im in ax.images]


def colour_of(im: AxesImage, value: float):
    return im.cmap(im.norm(value))


def panels_and_bar(fig):
    panels = [im for im in images(fig) if im.axes.get_label() != "<colorbar>"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    return panels, bars


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_d2l_scales_panels_apart():
    """The fault: with d2l's helper the same colour means 0.21 in one panel and 0.98 in the other."""
    d2l = pytest.importorskip("d2l.torch")
    d2l.show_heatmaps(two_layers(), "keys", "queries", titles=["layer 1", "layer 2"])
    broad, sharp = [im for im in images(plt.gcf()) if im.get_array().shape == (8, 8)]
    assert broad.get_clim() != sharp.get_clim()
    assert colour_of(broad, 0.21) == colour_of(sharp, 0.98)


def test_panels_share_one_scale_and_its_colour_bar():
    plotting.show_heatmaps(two_layers(), "keys", "queries", titles=["layer 1", "layer 2"])
    fig = plt.gcf()
    panels, bars = panels_and_bar(fig)
    assert len(panels) == 2 and len(bars) == 1
    assert panels[0].norm is panels[1].norm is fig.shared_norm
    assert [im.get_clim() for im in panels] == [(0.0, pytest.approx(0.98))] * 2
    assert colour_of(panels[0], 0.21) != colour_of(panels[1], 0.98)  # 0.21 is paler than 0.98, as it should be
    assert bars[0].get_ylim() == pytest.approx((0.0, 0.98))  # the colour bar reads the shared scale
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["layer 1", "layer 2"]


def test_explicit_scale_and_negative_values():
    plotting.show_heatmaps(two_layers(), "keys", "queries", vmax=1.0)
    assert {im.get_clim() for im in panels_and_bar(plt.gcf())[0]} == {(0.0, 1.0)}
    plotting.show_heatmaps(torch.tensor([[[[-2.0, 1.0]], [[0.5, 3.0]]]]), "x", "y", cmap="coolwarm")
    assert {im.get_clim() for im in panels_and_bar(plt.gcf())[0]} == {(-2.0, 3.0)}


def test_masks_are_two_colours_with_a_labelled_bar():
    mask = torch.ones(4, 6, dtype=torch.bool).tril()
    plotting.show_heatmaps(
        torch.stack([mask, ~mask]).unsqueeze(0), "keys", "queries", mask_labels=("masked", "may attend")
    )
    fig = plt.gcf()
    panels, bars = panels_and_bar(fig)
    assert len(panels) == 2 and len(bars) == 1
    colours = {tuple(np.round(colour_of(im, v), 6)) for im in panels for v in np.unique(im.get_array())}
    assert len(colours) == 2, colours  # exactly two colours, the same in every panel
    assert [t.get_text() for t in bars[0].get_yticklabels()] == ["masked", "may attend"]
    assert bars[0].get_yticks().tolist() == [0, 1]


def test_a_mask_passed_as_numbers_is_refused():
    mask = torch.ones(4, 4).tril()
    with pytest.raises(ValueError, match="mask"):
        plotting.show_heatmaps(mask.reshape(1, 1, 4, 4), "keys", "queries")
    plotting.show_heatmaps(mask.reshape(1, 1, 4, 4), "keys", "queries", vmin=0, vmax=1)  # stated: allowed


def test_into_given_axes_mask_beside_weights():
    fig, (left, right) = plt.subplots(1, 2)
    mask = torch.ones(4, 4, dtype=torch.bool).tril()
    plotting.show_masks(mask.reshape(1, 1, 4, 4), "k", "q", axes=[left])
    plotting.show_heatmaps(torch.rand(1, 1, 4, 4), "k", "q", axes=[right])
    assert len(plt.get_fignums()) == 1 and len(panels_and_bar(fig)[1]) == 2


def page_code(page: str) -> str:
    text = (ROOT / f"{page}.md").read_text()
    return "\n".join(re.findall(r"```\{code-cell\}[^\n]*\n(.*?)\n```", text, re.S))


@pytest.mark.parametrize("page", PAGES)
def test_pages_draw_heatmaps_on_a_stated_scale(page):
    """No page calls `d2l.show_heatmaps` (each panel on its own scale) or `shared_color_scale` after it; every
    `imshow` a page calls itself states its colour limits (`vmin` and `vmax`, or a `norm`)."""
    code = page_code(page)
    assert "d2l.show_heatmaps(" not in code, f"{page}: use attention_course.plotting.show_heatmaps (one scale)"
    for call in re.finditer(r"\.imshow\(", code):
        depth, end = 0, call.end() - 1
        for end in range(call.end() - 1, len(code)):
            depth += {"(": 1, ")": -1}.get(code[end], 0)
            if depth == 0:
                break
        args = code[call.end() : end]
        assert "norm=" in args or ("vmin=" in args and "vmax=" in args), f"{page}: imshow({args}) has no stated scale"
