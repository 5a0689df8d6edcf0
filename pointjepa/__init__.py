"""Point-JEPA: self-supervised point-cloud transformer pretraining and downstream tasks.

``pointjepa.load_encoder(path)`` loads a pretrained backbone as an embedding model; it is imported
on first use so that ``import pointjepa`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pointjepa.api import load_encoder

__all__ = ["load_encoder"]


def __getattr__(name: str) -> Any:
    if name == "load_encoder":
        from pointjepa.api import load_encoder

        return load_encoder
    raise AttributeError(f"module 'pointjepa' has no attribute {name!r}")
