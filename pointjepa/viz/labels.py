"""Class names for figure legends and axes, from whatever object carries them."""

from __future__ import annotations

from typing import Any


def label_names(source: Any, num_classes: int | None = None) -> list[str] | None:
    """``source.label_names`` (a data module's class names) as strings, when it has them (and, if given,
    ``num_classes`` of them); else None."""
    try:
        names = getattr(source, "label_names", None)
    except NotImplementedError:
        return None
    if names is None or (num_classes is not None and len(names) != num_classes):
        return None
    return [str(name) for name in names]
