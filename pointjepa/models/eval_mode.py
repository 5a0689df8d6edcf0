"""Lightning warns when modules are in eval mode as training starts; an EMA teacher is, by design (its targets
see no dropout or drop path). One line of ours says so instead of Lightning's warning about exactly it."""

from __future__ import annotations

import re
import warnings
from typing import Any, cast

from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from pointjepa.modules.ema import EMA

#: The start of Lightning's warning (``FitLoop._warn_if_modules_in_eval_mode``) for ``count`` modules.
LIGHTNING_WARNING = "Found {count} module(s) in eval mode at the start of training."


def teacher_eval_modules(module: nn.Module) -> list[str] | None:
    """Names of ``module``'s submodules in eval mode when they all belong to EMA teachers, else ``None`` (no
    teacher in eval mode, or other modules in eval mode too: then Lightning's warning is worth seeing)."""
    teachers = [name + "." for name, sub in module.named_modules() if isinstance(sub, EMA)]
    in_eval = [name for name, sub in module.named_modules() if not sub.training]
    if not in_eval or not all(name.startswith(tuple(teachers)) for name in in_eval):
        return None
    return in_eval


def explain_teacher_eval_mode(module: nn.Module) -> Any:
    """When only EMA teachers are in eval mode, say so in one line and ignore Lightning's warning about that
    many modules -> the warnings filter entry, for ``restore_warning`` once training has started (else ``None``)."""
    names = teacher_eval_modules(module)
    if names is None:
        return None
    rank_zero_info(
        f"The EMA teacher's {len(names)} modules stay in eval mode while training, as intended: "
        "its targets come without dropout or drop path (Lightning's warning about them is left out)."
    )
    warnings.filterwarnings("ignore", message=re.escape(LIGHTNING_WARNING.format(count=len(names))))
    return warnings.filters[0]


def restore_warning(entry: Any) -> None:
    """Remove a filter entry of ``explain_teacher_eval_mode`` (if still there): other fits warn as usual."""
    filters = cast("list[Any]", warnings.filters)  # a list (the docs), typed as a Sequence
    if entry is not None and entry in filters:
        filters.remove(entry)
