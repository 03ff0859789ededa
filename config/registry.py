"""Open-ended mappings with known keys: the scenario ``exchange`` and ``expect`` blocks.

Both grow as the simulated exchange and the scenario runner learn new
tricks, so their keys live in a :class:`KeyRegistry` rather than a fixed
model: a new key is one ``register`` call. What must not grow is leniency:
an unknown key is still an error with its line, because a typo such as
``fill_restng`` would otherwise make a safety scenario quietly test nothing.
Validation builds a pydantic model from the registry on demand, so errors in
nested values carry their full key path, like everywhere else.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any
from collections.abc import Iterable

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model


class Spec(BaseModel):
    """Base of scenario value models: unknown keys are errors, NaN/inf refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _flag(value: Any) -> Any:
    """``key: true``, ``key:`` (null) and ``key: {}`` all mean "do it, default options"."""
    if value is True or value is None:
        return {}
    if value is False:
        raise ValueError("write true (or a mapping of options), or leave the key out")
    return value


def flag(model: type[BaseModel]) -> Any:
    """A value that is ``true`` or a mapping of options for ``model``."""
    return Annotated[model, BeforeValidator(_flag)]


def plain(value: Any) -> Any:
    """Models to dicts (Decimals kept), recursively."""
    if isinstance(value, BaseModel):
        return {k: plain(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class KeyRegistry:
    """Known keys of an open mapping, the pydantic type of each value, and a group
    per key (e.g. exchange ``setting`` versus one-shot ``fault``)."""

    def __init__(self, name: str, types: dict[str, Any] | None = None,
                 group: str = "default") -> None:
        self.name = name
        self._entries: dict[str, tuple[Any, str]] = {k: (t, group) for k, t in (types or {}).items()}
        self._models: dict[frozenset[str] | None, type[BaseModel]] = {}
        self._lock = threading.Lock()

    def register(self, key: str, type_: Any, *, group: str = "default",
                 replace: bool = False) -> None:
        """Teach the registry a key. Replacing an existing key needs ``replace=True``."""
        with self._lock:
            if key in self._entries and not replace:
                raise KeyError(f"{self.name}: key {key!r} is already registered")
            self._entries[key] = (type_, group)
            self._models.clear()

    def unregister(self, key: str) -> None:
        with self._lock:
            del self._entries[key]
            self._models.clear()

    def keys(self, groups: Iterable[str] | None = None) -> list[str]:
        wanted = None if groups is None else set(groups)
        return sorted(k for k, (_, g) in self._entries.items() if wanted is None or g in wanted)

    def group_of(self, key: str) -> str | None:
        entry = self._entries.get(key)
        return entry[1] if entry else None

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def model(self, groups: Iterable[str] | None = None) -> type[BaseModel]:
        key = None if groups is None else frozenset(groups)
        with self._lock:
            model = self._models.get(key)
            if model is None:
                items = sorted((k, t) for k, (t, g) in self._entries.items()
                               if key is None or g in key)
                # Field names are opaque (k0, k1...) and keys are aliases, so any key
                # works, even one that would shadow a BaseModel attribute ("json").
                fields: dict[str, Any] = {f"k{i}": (t, Field(default=None, alias=k))
                          for i, (k, t) in enumerate(items)}
                model = create_model(self.name, __base__=Spec, **fields)
                self._models[key] = model
            return model

    def validate(self, data: Any, groups: Iterable[str] | None = None) -> dict[str, Any]:
        """Validated, normalised copy of ``data`` in the file's key order.

        Raises pydantic's ValidationError; keys outside ``groups`` are unknown.
        """
        model = self.model(groups)
        obj = model.model_validate(data)
        by_alias = {info.alias: name for name, info in model.model_fields.items()}
        return {key: plain(getattr(obj, by_alias[key])) for key in data
                if by_alias[key] in obj.model_fields_set}
