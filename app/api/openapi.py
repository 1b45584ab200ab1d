"""Make the OpenAPI schema as strict as the request bodies really are.

Litestar derives the schema from the msgspec structs but drops two rules they
enforce: `forbid_unknown_fields` (so the schema allowed extra keys that the app
refuses with a 400) and the constraints on list items (a `tags` entry must be 1 to
500 characters without NUL). msgspec's own JSON schema keeps both; this copies
them into the components Litestar generated, so a client, or a fuzzer, that
trusts the schema sends only what the app accepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from litestar.openapi.spec import OpenAPI, Schema

#: Constraints worth carrying from msgspec's schema of a list's items.
ITEM_RULES = {"minLength": "min_length", "maxLength": "max_length", "pattern": "pattern"}


def tighten(schema: OpenAPI, models: Iterable[type[msgspec.Struct]]) -> None:
    """Add `additionalProperties: false` and list-item rules to each model's component."""
    models = list(models)
    _, definitions = msgspec.json.schema_components(models)
    components = schema.components.schemas if schema.components else None
    for model in models:
        target = (components or {}).get(model.__name__)
        source = definitions.get(model.__name__)
        if not isinstance(target, Schema) or source is None:
            continue
        if model.__struct_config__.forbid_unknown_fields:
            target.additional_properties = False
        for name, wanted in source.get("properties", {}).items():
            have = (target.properties or {}).get(name)
            rules = _item_rules(wanted)
            items = _items(have) if isinstance(have, Schema) else None
            if rules and isinstance(items, Schema):
                for key, attribute in ITEM_RULES.items():
                    if key in rules:
                        setattr(items, attribute, rules[key])


def _item_rules(wanted: dict[str, Any]) -> dict[str, Any]:
    """The item constraints of a (possibly optional) array in msgspec's schema."""
    for variant in [wanted, *wanted.get("anyOf", [])]:
        if variant.get("type") == "array":
            return dict(variant.get("items", {}))
    return {}


def _items(have: Schema) -> Schema | None:
    """The items schema of a (possibly optional) array in Litestar's schema."""
    for variant in [have, *(have.one_of or []), *(have.any_of or [])]:
        if isinstance(variant, Schema) and isinstance(variant.items, Schema):
            return variant.items
    return None
