"""Unpickling downloaded data files without running what they carry: plain Python containers and numbers,
and numpy arrays and scalars of numeric dtypes, nothing else.

A pickle names the functions that rebuild its objects, so ``pickle.load`` on a hostile file can call any of
them (``os.system`` included). ``safe_load`` resolves only the names that numpy arrays and scalars pickle to,
each through a guard that admits bool, integer, float and complex dtypes (an object dtype would unpickle its
items through arbitrary names) and plain ``numpy.ndarray``; any other name ends the load with an
``UnpicklingError`` that names it.
"""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Callable
from typing import IO, Any

import numpy as np

#: numpy dtype kinds allowed: bool, signed and unsigned integer, float, complex.
NUMERIC_KINDS = "biufc"


def _rebuilder(obj: Any) -> Callable[..., Any]:
    """The function numpy pickles ``obj`` with, reached through the object rather than by module path: numpy 1.x
    pickles it as ``numpy.core.multiarray.*``, numpy 2.x as ``numpy._core.multiarray.*``."""
    function: Callable[..., Any] = obj.__reduce__()[0]
    return function


_reconstruct = _rebuilder(np.zeros(0))
_scalar = _rebuilder(np.float64(0))


def numeric_dtype(name: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """``numpy.dtype`` for pickles: a fresh (copied) numeric dtype, so its ``__setstate__`` never touches the
    dtype instances numpy shares."""
    try:
        dtype = np.dtype(name)
    except (TypeError, ValueError) as err:
        raise pickle.UnpicklingError(f"numpy.dtype({name!r}): not a dtype") from err
    if dtype.kind not in NUMERIC_KINDS:
        raise pickle.UnpicklingError(f"numpy.dtype({name!r}): only bool, integer, float and complex are allowed")
    return np.dtype(dtype, align=bool(align), copy=True)


def reconstruct_array(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct`` for plain ``numpy.ndarray`` only (its state sets dtype and data)."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"numpy array of type {subtype!r}: only numpy.ndarray is allowed")
    array: np.ndarray = _reconstruct(np.ndarray, shape, dtype)
    return array


def numeric_scalar(dtype: Any, data: Any) -> np.generic:
    """``numpy.core.multiarray.scalar`` for a numeric dtype and its raw bytes."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in NUMERIC_KINDS or not isinstance(data, bytes):
        raise pickle.UnpicklingError("numpy scalar: expected a numeric dtype and its bytes")
    scalar: np.generic = _scalar(dtype, data)
    return scalar


#: Pickled names and what they resolve to (protocol 2 pickles bytes as ``_codecs.encode(text, "latin1")``).
ALLOWED: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): codecs.encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): numeric_dtype,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): reconstruct_array for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): numeric_scalar for core in ("core", "_core")},
}


class NumericUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the names in ``ALLOWED``."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"the file needs {module}.{name} to load; only containers, numbers and numeric numpy arrays are "
                "read from data pickles (other names could run code)"
            ) from None


def safe_load(file: IO[bytes]) -> Any:
    """Unpickle ``file`` (opened in binary mode) allowing only containers, numbers and numeric numpy data."""
    return NumericUnpickler(file).load()
