"""Value types shared by the config and scenario schemas.

Money, prices and quantities are ``Decimal`` (DESIGN section 4): YAML gives
us ints, floats and strings, and all three are accepted, but a float becomes
a Decimal through its shortest repr (``0.1`` -> ``Decimal("0.1")``, not the
binary expansion), and NaN, infinity and booleans are refused, because a NaN
limit compares false with everything and silently disables a check.
"""

from __future__ import annotations

import ipaddress
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable
    (one Config object is shared by every actor's thread), defaults are validated too."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True,
                              allow_inf_nan=False)


def to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, Decimal):
        dec = value
    elif isinstance(value, int):
        dec = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number (not NaN or infinity)")
        dec = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            dec = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("must be a decimal number such as \"100.5\"") from None
    else:
        raise ValueError("must be a decimal number such as \"100.5\"")
    if not dec.is_finite():
        raise ValueError("must be a finite number (not NaN or infinity)")
    return dec


def _no_bool(value: Any) -> Any:
    """pydantic's lax mode reads ``true`` as 1; a boolean where a number belongs is a typo."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number (not NaN or infinity)")
    return value


Dec = Annotated[Decimal, BeforeValidator(to_decimal)]
PosDec = Annotated[Dec, Field(gt=0)]
NonNegDec = Annotated[Dec, Field(ge=0)]
Fraction = Annotated[Dec, Field(gt=0, le=1)]

PosInt = Annotated[int, BeforeValidator(_no_bool), Field(gt=0)]
NonNegInt = Annotated[int, BeforeValidator(_no_bool), Field(ge=0)]
PosFloat = Annotated[float, BeforeValidator(_no_bool), Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, BeforeValidator(_no_bool), Field(ge=0, allow_inf_nan=False)]
Port = Annotated[int, BeforeValidator(_no_bool), Field(ge=0, le=65535)]

_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9._:/-]{0,31}$")
_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")


def _symbol(value: str) -> str:
    if not _SYMBOL.match(value):
        raise ValueError("must be an upper-case symbol such as BTCUSDT "
                         "(letters, digits and . _ : / -, at most 32)")
    return value


def _ident(value: str) -> str:
    if not _IDENT.match(value):
        raise ValueError("must be a name of letters, digits, '_', '.', '-' (at most 64)")
    return value


def _env_name(value: str) -> str:
    if not _ENV.match(value):
        raise ValueError("must be the NAME of an environment variable (upper case, digits, "
                         "'_', e.g. TW_TELEGRAM_TOKEN), never the secret value itself")
    return value


def _host(value: str) -> str:
    value = value.strip()
    if not value or any(c.isspace() or c in "/@" for c in value):
        raise ValueError("must be a host name or IP address")
    return value


Symbol = Annotated[str, AfterValidator(_symbol)]
Ident = Annotated[str, AfterValidator(_ident)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Host = Annotated[str, AfterValidator(_host)]


Jitter = Literal["full", "equal", "none"]


class BackoffSection(Section):
    """A backoff: first delay ``base_s``, cap ``max_s``, jitter. Each use (restart,
    reconnect, alert retry) subclasses it with its own defaults and docstring."""

    base_s: PosFloat = 0.05
    max_s: PosFloat = 5.0
    jitter: Jitter = "equal"

    @model_validator(mode="after")
    def _order(self) -> BackoffSection:
        # the first delay cannot exceed the cap
        if self.base_s > self.max_s:
            raise ValueError(f"base_s: {self.base_s} is above max_s {self.max_s}")
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unique(values: list[Any], what: str = "value") -> list[Any]:
    seen: set[Any] = set()
    dupes = []
    for v in values:
        if v in seen:
            dupes.append(v)
        seen.add(v)
    if dupes:
        raise ValueError(f"{what} listed twice: {', '.join(map(str, dupes))}")
    return values


# -- durations (scenario timelines) ---------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)\s*$")
_UNIT = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}


def parse_duration(value: Any) -> Decimal:
    """``"250ms"``, ``"1.5s"``, ``"2m"``, ``"1h"`` -> seconds as an exact Decimal.

    A bare number is refused: ``at: 90`` could mean seconds or milliseconds,
    and YAML 1.1 reads ``1:30`` as the integer 90.
    """
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return Decimal(match.group(1)) * _UNIT[match.group(2)]
    raise ValueError("must be a duration with a unit, e.g. 0s, 1.5s, 250ms, 2m")


Duration = Annotated[Decimal, BeforeValidator(parse_duration)]
