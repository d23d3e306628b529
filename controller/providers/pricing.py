"""Instance prices: the AWS Price List API when the account allows it, else a shipped table.

:class:`AwsPrices` asks ``pricing:GetProducts`` (the Price List API answers only in us-east-1,
ap-south-1 and eu-central-1; kbl uses us-east-1) for the on-demand price of each instance type
in the cluster's region (Linux, shared tenancy, no pre-installed software, capacity status
"Used"), and ``ec2:DescribeSpotPriceHistory`` for the latest spot price (the mean over the
region's zones). Answers are kept for ``ttl_s`` (a day). A call the account does not allow (or
any cloud error) is reported once in :attr:`AwsPrices.problem` and the shipped table is used:
:func:`shipped_prices` reads ``data/prices.json``, whose ``date`` and ``source`` say where its
figures come from. A spot type without a spot price is ranked by its on-demand price.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol, runtime_checkable

from controller.providers import ProviderError
from controller.providers.awscalls import aws_call
from controller.providers.retrying import Backoff

Prices = dict[tuple[str, str], float]


@runtime_checkable
class PricesInstances(Protocol):
    """Providers that can price instance types (USD per hour by (type, capacity type))."""

    def instance_prices(self, instance_types: Iterable[str]) -> Prices:
        """Prices of the given types; a type missing from the answer has no known price.

        Raises
        ------
        ProviderError
            When the cloud refuses or fails.
        """
        ...


@dataclass(frozen=True, slots=True)
class PriceTable:
    """A shipped price table: on-demand USD per hour, its date, region and source."""

    date: str
    region: str
    source: str
    on_demand: Mapping[str, float] = field(default_factory=dict)

    def prices(self) -> Prices:
        """On-demand prices, and the same figure for spot (a ranking proxy, see the module)."""
        out: Prices = {}
        for name, price in self.on_demand.items():
            out[name, "ON_DEMAND"] = price
            out[name, "SPOT"] = price
        return out


def shipped_prices() -> PriceTable:
    """The table shipped with kbl (``controller/providers/data/prices.json``)."""
    raw = json.loads(resources.files("controller.providers").joinpath("data/prices.json").read_text())
    return PriceTable(str(raw["date"]), str(raw["region"]), str(raw["source"]), {str(k): float(v) for k, v in raw["onDemand"].items()})


def _on_demand_of(product: Mapping[str, Any]) -> float | None:
    """The hourly USD price in one GetProducts ``PriceList`` entry (``terms.OnDemand``)."""
    for term in (product.get("terms") or {}).get("OnDemand", {}).values():
        for dimension in (term.get("priceDimensions") or {}).values():
            if dimension.get("unit") in ("Hrs", "Hours"):
                usd = (dimension.get("pricePerUnit") or {}).get("USD")
                if usd is not None and float(usd) > 0:
                    return float(usd)
    return None


class AwsPrices:
    """On-demand prices from ``pricing:GetProducts``, spot from ``ec2:DescribeSpotPriceHistory``.

    Parameters
    ----------
    pricing:
        A boto3 ``pricing`` client in us-east-1.
    ec2:
        The cluster region's EC2 client (spot prices); ``None`` skips spot.
    region:
        The cluster's region (the products priced).
    """

    def __init__(
        self, pricing: Any, ec2: Any | None, region: str, *, backoff: Backoff | None = None,
        ttl_s: float = 86_400.0, clock: Callable[[], float] = time.time,
    ) -> None:
        self.pricing = pricing
        self.ec2 = ec2
        self.region = region
        self.backoff = backoff or Backoff(attempts=2)
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[str, tuple[float, Prices]] = {}
        self.problem = ""

    def instance_prices(self, instance_types: Iterable[str]) -> Prices:
        out: Prices = {}
        now = self.clock()
        for name in sorted(set(instance_types)):
            cached = self._cache.get(name)
            if cached is None or now - cached[0] > self.ttl_s:
                cached = (now, self._price(name))
                self._cache[name] = cached
            out.update(cached[1])
        return out

    def _price(self, name: str) -> Prices:
        filters = [
            {"Type": "TERM_MATCH", "Field": field_name, "Value": value}
            for field_name, value in (
                ("instanceType", name), ("regionCode", self.region), ("operatingSystem", "Linux"), ("tenancy", "Shared"),
                ("preInstalledSw", "NA"), ("capacitystatus", "Used"),
            )
        ]
        out: Prices = {}
        page = aws_call(self.backoff, self.pricing.get_products, ServiceCode="AmazonEC2", Filters=filters, MaxResults=10)
        for raw in page.get("PriceList", []):
            price = _on_demand_of(json.loads(raw) if isinstance(raw, str) else raw)
            if price is not None:
                out[name, "ON_DEMAND"] = price
                break
        spot = self._spot(name)
        if spot is not None:
            out[name, "SPOT"] = spot
        elif (name, "ON_DEMAND") in out:
            out[name, "SPOT"] = out[name, "ON_DEMAND"]
        return out

    def _spot(self, name: str) -> float | None:
        if self.ec2 is None:
            return None
        page = aws_call(
            self.backoff, self.ec2.describe_spot_price_history, InstanceTypes=[name], ProductDescriptions=["Linux/UNIX"], MaxResults=50,
        )
        latest: dict[str, tuple[Any, float]] = {}
        for row in page.get("SpotPriceHistory", []):
            zone, stamp, price = str(row.get("AvailabilityZone")), row.get("Timestamp"), float(row.get("SpotPrice") or 0)
            if price > 0 and (zone not in latest or stamp > latest[zone][0]):
                latest[zone] = (stamp, price)
        return sum(p for _, p in latest.values()) / len(latest) if latest else None


def price_table(provider: object, instance_types: Iterable[str], table: PriceTable | None = None) -> tuple[Prices, str]:
    """Prices of ``instance_types``: the shipped table, overridden by what the provider answers
    when it can price (:class:`PricesInstances`); and where they came from, for the plan."""
    shipped = table or shipped_prices()
    out = shipped.prices()
    source = f"shipped table of {shipped.date} ({shipped.region})"
    if isinstance(provider, PricesInstances):
        try:
            asked = provider.instance_prices(instance_types)
        except ProviderError as exc:
            return out, f"{source}; the Price List API failed: {exc}"
        if asked:
            out.update(asked)
            source = "AWS Price List API (pricing:GetProducts) and spot price history"
    return out, source
