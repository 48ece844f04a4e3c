"""Business rules and tables the engines read: loaded from ``config/domain.toml`` and validated at start.

Plain pydantic models with no service imports, so the engines (and their unit tests) take them as values.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clickcash._errors import ConfigError

DEFAULT_DOMAIN_FILE = Path(__file__).with_name("domain.toml")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RegionRule(_Section):
    """Currencies and payment networks allowed for orders from one country."""

    currencies: list[str]
    networks: list[str]


class OrderRules(_Section):
    max_quantity_per_line: Annotated[int, Field(ge=1)] = 50
    max_order_total_cents: Annotated[int, Field(ge=1)] = 2_000_000
    regions: dict[str, RegionRule]


class Psp(_Section):
    """A payment service provider and where it may be used.

    ``fee_pct`` and ``fee_fixed_cents`` make the expected cost; ``priority`` (lower first) orders PSPs of
    equal cost.
    """

    name: str
    countries: list[str]
    currencies: list[str]
    networks: list[str]
    priority: Annotated[int, Field(ge=0)] = 100
    fee_pct: Annotated[float, Field(ge=0, le=20)] = 2.9
    fee_fixed_cents: Annotated[int, Field(ge=0)] = 30


class DunningPolicy(_Section):
    """How declined payments are chased: decline-code classes and the retry schedule for soft ones."""

    hard_codes: list[str]
    technical_codes: list[str]
    soft_retry_offsets_h: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)]
    technical_retry_offsets_h: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)]
    reminder_channel: str = "email"


class DomainConfig(_Section):
    orders: OrderRules
    psps: Annotated[list[Psp], Field(min_length=1)]
    dunning: DunningPolicy

    @model_validator(mode="after")
    def _unique_psp_names(self) -> DomainConfig:
        names = [p.name for p in self.psps]
        if len(names) != len(set(names)):
            raise ValueError(f"psps: duplicate PSP names in {names}")
        return self


def load_domain_config(path: Path = DEFAULT_DOMAIN_FILE) -> DomainConfig:
    """Read and validate the domain file; raise ``ConfigError`` naming the file and the bad key."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"domain config {path}: {exc}") from exc
    try:
        return DomainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"domain config {path}: {problems}") from exc
