"""``python -m arch_lab.cli``: the ``arch-lab`` command (e.g. ``torchrun ... -m arch_lab.cli train``)."""

from __future__ import annotations

from arch_lab.cli.main import main

if __name__ == "__main__":
    main()
