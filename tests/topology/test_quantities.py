from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topology.errors import QuantityError
from topology.quantities import parse_quantity, to_int, to_milli


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("63770m", Fraction(6377, 100)),
        ("126956280Ki", 126956280 * 1024),
        ("76215832858", 76215832858),
        ("83864556Ki", 83864556 * 1024),
        ("1.5Gi", 3 * 2**29),
        ("500M", 500 * 10**6),
        ("2k", 2000),
        ("100n", Fraction(1, 10**7)),
        ("1e3", 1000),
        ("1E-3", Fraction(1, 1000)),
        (".5", Fraction(1, 2)),
        ("0", 0),
        ("-1Mi", -(2**20)),
        (198, 198),
    ],
)
def test_parses_kubernetes_quantities_exactly(text: str | int, expected: Fraction | int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "5Kb", "Mi", "1 Gi x", "--1", "1e999", True, None, float("nan")])
def test_rejects_malformed_quantities_with_quantity_error(text: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)  # type: ignore[arg-type]


def test_cpu_rounds_up_to_millicores_like_kubernetes() -> None:
    assert to_milli("63770m") == 63770
    assert to_milli("1.0001") == 1001
    assert to_milli("64") == 64000


def test_bytes_round_up_to_whole_bytes() -> None:
    assert to_int("1.5Ki") == 1536
    assert to_int("0.1") == 1


@given(st.integers(min_value=0, max_value=2**50), st.sampled_from(["", "Ki", "Mi", "Gi", "k", "M", "G", "m"]))
def test_integer_quantities_scale_by_their_suffix(number: int, suffix: str) -> None:
    scale: dict[str, int | Fraction] = {"": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "k": 1000, "M": 10**6, "G": 10**9}
    scale["m"] = Fraction(1, 1000)
    assert parse_quantity(f"{number}{suffix}") == number * scale[suffix]
