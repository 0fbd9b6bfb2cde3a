"""``optim.micro_batch_size: auto``: the block size at which forward and backward of one batch run fastest here.

Memory-bound backbones (the gene transformer at its default width, the U-Net at many genes) run a whole batch
slower than the same rows in blocks whose activations stay in cache; how small a block pays depends on the machine.
The trainer times forward and backward of one real batch at the whole batch and at halvings of it (down to
:data:`MIN_BLOCK` rows), a few calls each, before training, and keeps the fastest. Gradients are accumulated over
the blocks, so the loss and the update are the whole batch's up to float rounding.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["MIN_BLOCK", "block_candidates", "fastest_block"]

#: Smallest block tried.
MIN_BLOCK = 8
#: A larger block is kept unless a smaller one is faster by more than this fraction.
TOLERANCE = 0.05


def block_candidates(batch: int, min_block: int = MIN_BLOCK) -> list[int]:
    """The whole batch and its successive halvings down to ``min_block`` rows: ``[batch, batch // 2, ...]``."""
    out = [batch]
    while out[-1] // 2 >= min_block:
        out.append(out[-1] // 2)
    return out


def fastest_block(run: Callable[[int], None], batch: int, repeats: int = 2) -> tuple[int, dict[int, float]]:
    """Time ``run(block)`` (forward and backward of one batch in blocks of ``block`` rows) for every candidate.

    Parameters
    ----------
    run
        Runs forward and backward of the same batch over blocks of the given size.
    batch
        Rows in the batch.
    repeats
        Timed calls per candidate after one warm-up call; the best counts.

    Returns
    -------
    block, seconds
        The chosen block size (the largest within :data:`TOLERANCE` of the fastest) and the best seconds per
        candidate.
    """
    seconds: dict[int, float] = {}
    for block in block_candidates(batch):
        run(block)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            run(block)
            best = min(best, time.perf_counter() - start)
        seconds[block] = best
    fastest = min(seconds.values())
    chosen = max(b for b, s in seconds.items() if s <= fastest * (1 + TOLERANCE))
    return chosen, seconds
