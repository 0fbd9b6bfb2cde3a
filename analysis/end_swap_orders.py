"""Gene-order files for the end-swap probe: the failing order with blocks of genes at its ends moved inside.

Usage:
  python analysis/end_swap_orders.py --out sweeps/probes/orders

``failing_shift_synthetic`` and ``failing_roll_map_synthetic`` (``docs/findings.md``, point 9) found generator
seed 0's failing order (its stored order at G = 128) failing the U-Net as stored, reversed and rolled by up to 16
genes, and escaping when rolled 32 genes either way. A roll by 32 moves the 32 genes at one end inside the axis and
keeps the other end's 32 genes at an end (the opposite one); reversal keeps both at the ends. So the reading to test
is that the failure needs both end blocks where they are, or one of them. Rolls cannot tell these apart; these
orders can (``order`` is the failing order, positions ``0..G-1``):

- ``left{w}_inside``: the ``w`` genes at the left end swapped with the ``w`` genes at the middle of the axis (each
  block keeps its internal order; nothing else moves);
- ``right{w}_inside``: the same for the right end;
- ``ends_exchanged``: the two 32-gene end blocks swapped with each other, the rest in place (both blocks stay at an
  end, in their own orientation, unlike the reversal).

Each file lists the failing order's gene names, one per line, in the new order, for ``data.gene_order: file``
(``sweeps/probes/failing_end_swap_synthetic.yaml``). The failing order is built exactly as a run of
``failing_shift_synthetic``'s ``unet1d`` arm builds it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from arch_lab.data.task import build_task
from arch_lab.errors import ArchLabError
from arch_lab.sweeps.sweep import load_sweep

PROBES = Path(__file__).resolve().parents[1] / "sweeps" / "probes"
SOURCE = "failing_shift_synthetic"
#: block widths swapped with the middle of the axis
WIDTHS = (16, 32)
#: the width of the end blocks ``ends_exchanged`` swaps
EXCHANGED = 32


def swap_blocks(names: Sequence[str], first: int, second: int, width: int) -> list[str]:
    """``names`` with the blocks ``[first, first + width)`` and ``[second, second + width)`` swapped, each keeping
    its internal order.

    Raises
    ------
    ValueError
        The blocks overlap or leave the axis.
    """
    a, b = sorted((first, second))
    if width <= 0 or a < 0 or b + width > len(names) or a + width > b:
        raise ValueError(f"blocks at {first} and {second} of width {width} overlap or leave the {len(names)} genes")
    out = list(names)
    out[a : a + width], out[b : b + width] = names[b : b + width], names[a : a + width]
    return out


def end_swap_orders(names: Sequence[str]) -> dict[str, list[str]]:
    """The probe's orders of ``names`` (the failing order), by file stem (module docstring)."""
    n = len(names)
    orders = {}
    for width in WIDTHS:
        middle = (n - width) // 2
        orders[f"left{width}_inside"] = swap_blocks(names, 0, middle, width)
        orders[f"right{width}_inside"] = swap_blocks(names, n - width, middle, width)
    orders["ends_exchanged"] = swap_blocks(names, 0, n - EXCHANGED, EXCHANGED)
    return orders


def failing_order() -> list[str]:
    """The failing order's gene names, position 0 first, as ``SOURCE``'s ``unet1d`` arm builds it."""
    sweep = load_sweep(PROBES / f"{SOURCE}.yaml")
    values = next(v for v in sweep.grid() if v["arm"] == "unet1d")
    return list(build_task(sweep.experiment(values, 0)).spec.gene_names)


def write_orders(out: Path, names: Sequence[str]) -> list[Path]:
    """Write one ``failing_<stem>.txt`` per order of :func:`end_swap_orders` into ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, order in end_swap_orders(names).items():
        path = out / f"failing_{stem}.txt"
        header = f"# generator seed 0's failing order ({SOURCE}, unet1d), {stem}: analysis/end_swap_orders.py\n"
        path.write_text(header + "".join(f"{name}\n" for name in order))
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROBES / "orders", help="folder for the order files")
    args = parser.parse_args(argv)
    try:
        names = failing_order()
    except ArchLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in write_orders(args.out, names):
        moved = int(np.sum(np.asarray(path.read_text().splitlines()[1:]) != np.asarray(names)))
        print(f"{path}: {moved} of {len(names)} genes moved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
