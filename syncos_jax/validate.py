"""Checking settings before any tracing: short reprs, and per-field rules for sampler options.

Every sampler config is a NamedTuple; its module holds a rule table ``{field: rule}`` and
:func:`check_options` applies it, so a bad value is rejected with one line naming the setting,
what was expected and (briefly) what was got — before anything is compiled::

    RULES = {"iters": integer(1), "lr": real(0.0), "t_min": optional(real(0.0)), ...}
    check_options(RULES, {"lr": float("nan")})   # OptionError: lr=nan: expected a finite number >= 0

Error messages never echo unbounded values: :func:`brief` cuts long strings and containers.
"""

from __future__ import annotations

import math
import numbers
import reprlib
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

__all__ = [
    "OptionError",
    "boolean",
    "brief",
    "check_options",
    "choice",
    "either",
    "integer",
    "names",
    "optional",
    "real",
    "real_pair",
    "reals",
]

_REPR = reprlib.Repr()
_REPR.maxstring = 40
_REPR.maxother = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 2

Rule = Callable[[Any], Any]


def brief(value: Any, limit: int = 60) -> str:
    """Returns a repr of ``value`` of at most about ``limit`` characters (containers and strings cut with ``...``)."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OptionError(ValueError):
    """A setting with a bad value: ``str(err)`` is ``"NAME=VALUE: expected WHAT"``.

    Attributes:
      name: the setting's name.
      problem: what was expected (without the name and value).
    """

    def __init__(self, name: str, value: Any, problem: str):
        self.name, self.value, self.problem = name, value, problem
        super().__init__(f"{name}={brief(value)}: {problem}")


class _Reject(Exception):
    """Raised by a rule; carries what was expected."""


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


_INT32_MAX = 2**31 - 1


def _num(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _range_text(lo, hi, lo_open: bool) -> str:
    if hi == _INT32_MAX:  # the implicit bound of integers: not worth saying
        hi = None
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}]"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        return f"<= {_num(hi)}"
    return ""


def real(lo: Optional[float] = None, hi: Optional[float] = None, *, lo_open: bool = False) -> Rule:
    """A finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); returns it as ``float``."""
    what = " ".join(filter(None, ("a finite number", _range_text(lo, hi, lo_open))))

    def rule(v):
        if getattr(v, "shape", None) == () and hasattr(v, "item"):  # a 0-d numpy / jax array
            v = v.item()
        if not _is_real(v) or not math.isfinite(float(v)):
            raise _Reject(what)
        if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
            raise _Reject(what)
        return v if type(v) in (int, float) else float(v)  # Python numbers unchanged (configs stay bit-identical)

    rule.what = what
    return rule


def integer(lo: Optional[int] = None, hi: Optional[int] = _INT32_MAX) -> Rule:
    """An integer (not a bool) in ``[lo, hi]`` (int32 by default); returns it as ``int``."""
    what = " ".join(filter(None, ("an integer", _range_text(lo, hi, False))))

    def rule(v):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool):
            raise _Reject(what)
        v = int(v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise _Reject(what)
        return v

    rule.what = what
    return rule


def boolean() -> Rule:
    """``True`` or ``False`` (not 0/1, not a string)."""

    def rule(v):
        if not isinstance(v, bool) and type(v).__name__ != "bool_":  # Python or numpy bools
            raise _Reject("true or false")
        return bool(v)

    rule.what = "true or false"
    return rule


def choice(*allowed: str) -> Rule:
    """One of the strings ``allowed``."""
    what = f"one of {', '.join(map(repr, allowed))}"

    def rule(v):
        if not isinstance(v, str) or v not in allowed:
            raise _Reject(what)
        return v

    rule.what = what
    return rule


def optional(inner: Rule) -> Rule:
    """``None``, or what ``inner`` accepts."""
    what = f"none or {inner.what}"

    def rule(v):
        if v is None:
            return None
        try:
            return inner(v)
        except _Reject:
            raise _Reject(what) from None

    rule.what = what
    return rule


def _sequence(v: Any) -> Optional[Sequence]:
    """``v`` as a sequence of items (a list, a tuple, or a numpy / jax array flattened), or ``None``."""
    if isinstance(v, (str, bytes)):
        return None
    if isinstance(v, Sequence):
        return v
    if hasattr(v, "__array__") and np.ndim(v) > 0:
        return np.asarray(v).ravel().tolist()
    return None


def reals(item: Rule, *, min_len: int = 1, max_len: int = 1_000_000) -> Rule:
    """A list of ``min_len``–``max_len`` values, each accepted by ``item``; returns a tuple."""
    what = f"a list of {min_len}+ values, each {item.what}"

    def rule(v):
        seq = _sequence(v)
        if seq is None or not min_len <= len(seq) <= max_len:
            raise _Reject(what)
        try:
            return tuple(item(x) for x in seq)
        except _Reject:
            raise _Reject(what) from None

    rule.what = what
    return rule


def real_pair(lo: Optional[float] = None, hi: Optional[float] = None) -> Rule:
    """Two finite numbers ``(a, b)`` in ``[lo, hi]`` with ``a <= b``; returns a tuple."""
    inner = real(lo, hi)
    what = f"[a, b] with a <= b, both {inner.what}"

    def rule(v):
        seq = _sequence(v)
        if seq is None or len(seq) != 2:
            raise _Reject(what)
        try:
            a, b = inner(seq[0]), inner(seq[1])
        except _Reject:
            raise _Reject(what) from None
        if a > b:
            raise _Reject(what)
        return (a, b)

    rule.what = what
    return rule


def names(allowed: Sequence[str]) -> Rule:
    """A list of distinct strings from ``allowed``; returns a tuple."""
    what = f"a list of names from {list(allowed)}"

    def rule(v):
        seq = _sequence(v)
        if seq is None or any(not isinstance(x, str) or x not in allowed for x in seq):
            raise _Reject(what)
        return tuple(seq)

    rule.what = what
    return rule


def either(*rules: Rule) -> Rule:
    """The first of ``rules`` that accepts the value."""
    what = " or ".join(r.what for r in rules)

    def rule(v):
        for r in rules:
            try:
                return r(v)
            except _Reject:
                pass
        raise _Reject(what)

    rule.what = what
    return rule


def check_options(rules: Mapping[str, Rule], options: Mapping[str, Any]) -> dict:
    """Returns ``options`` with each value checked and normalised by its rule.

    Raises:
      OptionError: for the first value its rule rejects (names the setting, the expectation and
        the value, briefly). Names without a rule pass through unchanged (the config's own
        constructor rejects unknown names).
    """
    out = {}
    for name, value in options.items():
        rule = rules.get(name)
        if rule is None:
            out[name] = value
            continue
        try:
            out[name] = rule(value)
        except _Reject as e:
            raise OptionError(name, value, f"expected {e}") from None
    return out
