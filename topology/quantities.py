"""Kubernetes resource quantities, parsed exactly.

Kubernetes writes amounts as ``63770m`` (CPU millicores), ``126956280Ki`` (binary suffixes),
``76215832858`` (plain bytes), ``1.5Gi``, ``2e3`` or ``500M`` (decimal suffixes). This module
owns turning those strings into exact numbers: :func:`parse_quantity` gives a
:class:`~fractions.Fraction` in the base unit (cores, bytes, counts) so nothing is lost to
floating point, and :func:`to_milli` / :func:`to_int` round the way Kubernetes does (up).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from topology.errors import QuantityError

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_PATTERN = re.compile(
    r"^(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE](?P<exp>[+-]?[0-9]+))?$"
)


def parse_quantity(value: str | int | float) -> Fraction:
    """Parse a Kubernetes quantity into an exact number in its base unit.

    Parameters
    ----------
    value:
        A quantity string as the API server prints it, or a plain int/float (YAML may give
        numbers for ``pods: 110``).

    Returns
    -------
    Fraction
        The amount in base units: cores for CPU, bytes for memory and storage.

    Raises
    ------
    QuantityError
        If the string is not a valid quantity (empty, unknown suffix, garbage, NaN).

    Examples
    --------
    >>> parse_quantity("63770m")
    Fraction(6377, 100)
    >>> parse_quantity("126956280Ki") == 126956280 * 1024
    True
    """
    if isinstance(value, bool):
        raise QuantityError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError(f"not a finite quantity: {value!r}")
        return Fraction(value)
    if not isinstance(value, str):
        raise QuantityError(f"not a quantity: {value!r}")
    match = _PATTERN.match(value.strip())
    if match is None:
        raise QuantityError(f"not a Kubernetes quantity: {value!r}")
    number = Fraction(match["number"])
    if match["sign"] == "-":
        number = -number
    suffix = match["suffix"]
    if match["exp"] is not None:
        exponent = int(match["exp"])
        if abs(exponent) > 30:
            raise QuantityError(f"exponent out of range in quantity {value!r}")
        return number * Fraction(10) ** exponent
    if suffix is None:
        return number
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    return number * _DECIMAL[suffix]


def to_int(value: str | int | float) -> int:
    """Parse a quantity and round up to a whole base unit (bytes, counts).

    >>> to_int("1.5Ki")
    1536
    """
    return math.ceil(parse_quantity(value))


def to_milli(value: str | int | float) -> int:
    """Parse a quantity and return thousandths of the base unit, rounded up (CPU millicores).

    >>> to_milli("63770m"), to_milli("2"), to_milli("0.1")
    (63770, 2000, 100)
    """
    return math.ceil(parse_quantity(value) * 1000)
