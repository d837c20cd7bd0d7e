"""Reading the inventory YAML: every problem is one line naming the file, the place in it and the bad value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tasks.errors import did_you_mean, read_yaml
from tasks.inventory.model import Inventory


class InventoryError(ValueError):
    """An inventory file that cannot be used."""


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model whose fields are valid at a location inside Inventory (for did-you-mean on extra keys)."""
    model: type[BaseModel] | None = Inventory
    for part in loc[:-1]:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = candidates[0] if candidates else None
    return model


def _describe(error: ErrorDetails, data: Any) -> str:
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        model = _model_at(loc)
        hint = did_you_mean(str(loc[-1]), list(model.model_fields)) if model else ""
        return f"unknown key {where}{hint}"
    name = _host_name(data, loc)
    prefix = f"{where}" + (f" (host {name})" if name else "")
    message = error["msg"].removeprefix("Value error, ")
    return f"{prefix}: {message}" + ("" if error["type"] == "value_error" else f", got {error.get('input')!r}")


def _host_name(data: Any, loc: tuple[Any, ...]) -> str | None:
    if len(loc) >= 2 and loc[0] in ("nodes", "vms") and isinstance(loc[1], int):
        try:
            return str(data[loc[0]][loc[1]].get("name"))
        except (KeyError, IndexError, AttributeError, TypeError):
            return None
    return None


def parse_inventory(data: Any, source: str) -> Inventory:
    """Validate inventory data already read from `source` (named in every error)."""
    if not isinstance(data, dict):
        raise InventoryError(f"{source}: the inventory must be a mapping at the top level")
    try:
        return Inventory.model_validate(data)
    except ValidationError as exc:
        raise InventoryError(f"{source}: {_describe(exc.errors()[0], data)}") from None


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate an inventory YAML file."""
    path = Path(path)
    return parse_inventory(read_yaml(path, "the inventory", InventoryError), str(path))
