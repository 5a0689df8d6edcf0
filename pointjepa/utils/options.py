"""Validation of option values, with errors that name the option and what it takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_choice(option: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise ``ValueError`` naming ``option`` and listing ``allowed`` when ``value`` is not one of them."""
    if value not in allowed:
        raise ValueError(f"{option}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
