"""Shared pytest setup: tests marked ``slow`` run only when asked for.

``pytest -m slow`` (or any ``-m`` expression naming ``slow``) or ``DYNFIX_SLOW=1`` selects
them; otherwise they are deselected (not skipped), so the default run stays short.
"""

from __future__ import annotations

import os


def pytest_collection_modifyitems(config, items):
    if "slow" in (config.option.markexpr or "") or os.environ.get("DYNFIX_SLOW") == "1":
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("slow") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
