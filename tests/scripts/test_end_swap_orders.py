"""``analysis/end_swap_orders.py``: the failing order with blocks of genes at its ends moved inside."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from analysis import end_swap_orders
from arch_lab.data.gene_order import read_gene_order_file


def test_swapping_two_blocks_keeps_each_in_its_own_order():
    names = list("abcdefghij")
    assert end_swap_orders.swap_blocks(names, 0, 5, 2) == list("fgcdeabhij")  # by hand
    assert end_swap_orders.swap_blocks(names, 7, 1, 3) == list("ahijefgbcd")
    for first, second, width in ((0, 1, 2), (8, 0, 3), (0, 5, 0)):
        with pytest.raises(ValueError, match="overlap or leave"):
            end_swap_orders.swap_blocks(names, first, second, width)


def test_the_orders_move_exactly_the_blocks_they_name():
    names = [f"g{i:03d}" for i in range(128)]
    orders = end_swap_orders.end_swap_orders(names)
    assert set(orders) == {"left16_inside", "right16_inside", "left32_inside", "right32_inside", "ends_exchanged"}
    for order in orders.values():
        assert sorted(order) == names
    assert orders["left32_inside"][:32] == names[48:80]
    assert orders["left32_inside"][48:80] == names[:32]
    assert orders["left32_inside"][32:48] == names[32:48]
    assert orders["left32_inside"][80:] == names[80:]
    assert orders["right16_inside"][112:] == names[56:72]
    assert orders["right16_inside"][56:72] == names[112:]
    exchanged = orders["ends_exchanged"]
    assert exchanged == names[96:] + names[32:96] + names[:32]


def test_the_shipped_files_are_the_failing_order_swapped(tmp_path):
    names = end_swap_orders.failing_order()
    assert len(names) == 128
    assert names[:2] == ["g077", "g069"]
    written = end_swap_orders.write_orders(tmp_path, names)
    assert len(written) == 5
    for path in written:
        shipped = REPO / "sweeps" / "probes" / "orders" / path.name
        assert read_gene_order_file(path) == read_gene_order_file(shipped)
