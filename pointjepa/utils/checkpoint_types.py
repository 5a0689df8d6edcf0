"""The Python types that checkpoints may hold besides what ``torch.load(weights_only=True)`` builds by itself.

By itself it builds tensors, dicts (``OrderedDict`` too), lists, tuples, sets, strings, bytes, numbers, ``None``
and torch dtypes and devices, and refuses every other type: unpickling one calls code that the file names.
What the supported checkpoints hold besides those (read off the projects' saving code):

- ours (Lightning 2.x): nothing. ``hyper_parameters`` are plain values (data modules are kept out), the
  ``ExactResume`` state keeps the random states as tensors and plain tuples, and the loop, optimizer,
  scheduler, precision and callback states are dicts of numbers, strings and tensors.
- the original Point-JEPA's (Lightning 1.9) and Point2Vec's (Lightning 1.7): nothing either. Both replace their
  ``svm_validation`` data modules with ``{}`` before saving; ``datamodule_hyper_parameters`` are plain values;
  pl_bolts' warm-up cosine scheduler, AdamW and the AMP grad scaler save dicts of numbers.
- Point-MAE's and Point-BERT's ``base_model`` files (``tools/builder.py: save_checkpoint``): ``optimizer`` is a
  torch state dict, ``epoch`` an int, and ``metrics`` / ``best_metrics`` are ``{'acc': x}`` where x is a float,
  a 0-d tensor (fine-tuning accuracy) or a **numpy float64** (the pretraining SVM accuracy,
  ``np.sum(...) * 1. / n``, in Point-BERT's published pretraining checkpoint).

So the one addition is numpy scalars. numpy pickles one as ``numpy.core.multiarray.scalar(numpy.dtype(name),
bytes)`` (numpy 2: ``numpy._core.multiarray.scalar``). Those two names are not allowed as numpy's own
functions, which also build object and structured scalars and whose ``dtype.__setstate__`` would run on
numpy's shared dtype instances, but as the stand-ins below: they build bool, integer, float and complex
scalars from a dtype name and raw bytes, and nothing else.

Refused on purpose: numpy arrays (``numpy.core.multiarray._reconstruct``), ``argparse.Namespace``, ``pathlib``
paths and instances of any class (data modules, metrics objects): none of the layouts above holds one.
"""

from __future__ import annotations

from collections.abc import Callable
from pickle import UnpicklingError
from typing import Any, Literal, get_args

import numpy as np

from pointjepa.utils.safe_pickle import NUMERIC_KINDS

ByteOrder = Literal["<", ">", "|", "="]
#: Byte orders in a pickled dtype's state.
BYTE_ORDERS: tuple[ByteOrder, ...] = get_args(ByteOrder)


class NumpyDtype:
    """Stand-in for ``numpy.dtype`` while unpickling: ``NumpyDtype(name, align, copy)`` with a numeric dtype name
    (``'f8'``, ``'i8'``, ``'b1'``...), then ``__setstate__(state)`` with numpy's dtype state, of which only the
    byte order (``state[1]``) is used."""

    def __init__(self, name: str, align: Any = False, copy: Any = True) -> None:
        if not isinstance(name, str):
            raise UnpicklingError(f"numpy.dtype({name!r}): only numeric dtype names are allowed")
        try:
            dtype = np.dtype(name)
        except (TypeError, ValueError) as err:
            raise UnpicklingError(f"numpy.dtype({name!r}): not a dtype name") from err
        if dtype.kind not in NUMERIC_KINDS:
            raise UnpicklingError(f"numpy.dtype({name!r}): only bool, integer, float and complex dtypes are allowed")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        order: Any = state[1] if isinstance(state, tuple) and len(state) > 1 else None
        if not isinstance(order, str) or order not in BYTE_ORDERS:
            raise UnpicklingError(f"numpy.dtype state {state!r}: expected a byte order among {BYTE_ORDERS}")
        self.dtype = self.dtype.newbyteorder(order)


def numpy_scalar(dtype: NumpyDtype, data: Any) -> np.generic:
    """Stand-in for numpy's scalar unpickler: the numeric scalar of ``dtype`` stored in the bytes ``data``."""
    if not isinstance(dtype, NumpyDtype) or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise UnpicklingError("numpy scalar: expected a numeric dtype and its bytes")
    return np.frombuffer(data, dtype=dtype.dtype)[0]


#: What ``weights_only`` loading allows beyond torch's own list, as (object, pickled name) pairs.
SAFE_GLOBALS: list[tuple[Callable[..., Any], str]] = [
    (NumpyDtype, "numpy.dtype"),
    (numpy_scalar, "numpy.core.multiarray.scalar"),  # numpy 1.x
    (numpy_scalar, "numpy._core.multiarray.scalar"),  # numpy 2.x
]
