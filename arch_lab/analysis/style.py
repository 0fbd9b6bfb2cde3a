"""One look for every figure: a colour-blind-safe colour per backbone, paper-sized fonts, PDF and PNG output."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

#: Okabe & Ito's colour-blind-safe palette (black last).
OKABE_ITO: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#F0E442",  # yellow
    "#000000",  # black
)

#: Backbones in display order: the velocity networks, then the baselines.
KNOWN_BACKBONES: tuple[str, ...] = (
    "unet1d",
    "mlp",
    "gene_transformer",
    "latent_additive",
    "linear_additive",
    "perturbation_mean",
    "no_change",
)

#: The same colour for a backbone in every figure.
BACKBONE_COLORS: dict[str, str] = {
    "unet1d": OKABE_ITO[0],
    "mlp": OKABE_ITO[1],
    "gene_transformer": OKABE_ITO[2],
    "latent_additive": OKABE_ITO[3],
    "linear_additive": OKABE_ITO[4],
    "perturbation_mean": OKABE_ITO[5],
    "no_change": "#7F7F7F",
}
#: Colours handed to backbones not listed above, in sorted-name order.
_SPARE = (OKABE_ITO[7], OKABE_ITO[6], "#999933", "#882255", "#44AA99", "#332288")

OBSERVED_COLOR = "#333333"
CONTROL_COLOR = "#BBBBBB"
FLOOR_COLOR = "#7F7F7F"
CEILING_COLOR = "#000000"

#: Figure widths in inches for a two-column paper.
SINGLE_COLUMN = 3.5
DOUBLE_COLUMN = 7.2

PAPER_RC: dict[RcKeyType, Any] = {
    "font.size": 7,
    "axes.titlesize": 8,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "legend.title_fontsize": 6,
    "legend.frameon": False,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.0,
    "patch.linewidth": 0.6,
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
}


def backbone_order(names: Iterable[str]) -> list[str]:
    """Backbones in display order: the known ones in :data:`KNOWN_BACKBONES` order, then the rest sorted."""
    present = set(names)
    return [b for b in KNOWN_BACKBONES if b in present] + sorted(present - set(KNOWN_BACKBONES))


def backbone_palette(names: Iterable[str]) -> dict[str, str]:
    """A colour per backbone; a known backbone always gets its own colour whatever else is plotted.

    Parameters
    ----------
    names
        Backbone names (duplicates allowed).

    Returns
    -------
    dict
        Backbone name to hex colour, in display order.
    """
    order = backbone_order(names)
    unknown = [b for b in order if b not in BACKBONE_COLORS]
    spare = {b: _SPARE[i % len(_SPARE)] for i, b in enumerate(unknown)}
    return {b: BACKBONE_COLORS.get(b, spare.get(b, "#999999")) for b in order}


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Matplotlib settings for a two-column paper (7 pt text, thin lines, editable PDF text)."""
    with mpl.rc_context(PAPER_RC):
        yield


def save_figure(fig: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``<out_dir>/<name>.pdf`` (vector) and ``<out_dir>/<name>.png`` (300 dpi).

    The PDF carries no creation date, so the same figure gives the same bytes.

    Returns
    -------
    list of Path
        The PDF and the PNG.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pdf, png = out / f"{name}.pdf", out / f"{name}.png"
    with paper_style():
        fig.savefig(pdf, format="pdf", metadata={"CreationDate": None, "Creator": None, "Producer": None})
        fig.savefig(png, format="png", dpi=300, metadata={"Software": None})
    return [pdf, png]
