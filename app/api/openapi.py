"""Make the OpenAPI schema say exactly what the request bodies accept.

Litestar derives the schema from the msgspec structs but drops rules they
enforce: `forbid_unknown_fields` (so the schema allowed extra keys that the app
refuses with a 400), the constraints on list items (a `tags` entry must be 1 to
500 characters without control characters), and a bound of 0 (`ge=0` on a viewer
count or on `local_preference_strength` vanished, 0 being falsy). msgspec's own
JSON schema keeps them all; this copies them into the components Litestar
generated. It also writes what no struct can say: a body that may be left out is
not `required` (`/live`, `/offline`), a HOMETOWN request names either a
`user_id` or a location, not both (`VIEWER_RULE`), and the items of a list the app
checks one by one (`POST /v1/events`: a bad event is answered `rejected`, the
others are stored) are documented as the struct they should be, or anything else.
So a client, or a fuzzer, that trusts the schema sends only what the app accepts,
and the app accepts it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIFormat,
    OpenAPIType,
    Reference,
    RequestBody,
    Schema,
)

#: Constraints worth carrying from msgspec's schema of a list's items.
ITEM_RULES = {"minLength": "min_length", "maxLength": "max_length", "pattern": "pattern"}
#: Bounds of numbers, carried where Litestar lost them (it drops a bound of 0).
NUMBER_RULES = {
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
}
#: The fields of a signed-out viewer, which a request with `user_id` may not carry.
VIEWER_FIELDS: tuple[str, ...] = ("latitude", "longitude", "language", "preferred_categories")
VIEWER_FIELDS += ("local_preference_strength",)


def viewer_rule(properties: dict[str, Any]) -> list[Schema]:
    """HometownRequest: `user_id` and no viewer field, or `latitude` + `longitude`.

    A field left out or null counts as absent, as in the app (`HometownRequest`'s
    `__post_init__`). The two variants exclude each other. Each repeats the
    constraints of the fields it requires (from msgspec's schema, `properties`), so
    a generator that builds from one variant keeps them.
    """
    null = Schema(type=OpenAPIType.NULL)
    absent: dict[str, Schema | Reference] = {name: null for name in VIEWER_FIELDS}
    known = Schema(
        required=["user_id"], properties={"user_id": _present(properties["user_id"]), **absent}
    )
    located = Schema(
        required=["latitude", "longitude"],
        properties={
            "user_id": null,
            "latitude": _present(properties["latitude"]),
            "longitude": _present(properties["longitude"]),
        },
    )
    return [known, located]


def _present(wanted: dict[str, Any]) -> Schema:
    """The non-null variant of an optional field of msgspec's schema, as a Schema."""
    return _from_msgspec(next(v for v in wanted.get("anyOf", [wanted]) if v.get("type") != "null"))


def tighten(
    schema: OpenAPI,
    models: Iterable[type[msgspec.Struct]],
    *,
    optional_bodies: Iterable[str] = (),
    checked_items: Mapping[tuple[str, str], type[msgspec.Struct]] | None = None,
) -> None:
    """Carry the structs' rules into their components (see the module's docstring).

    `optional_bodies` names the paths whose POST body may be left out;
    `checked_items` maps (component, list field) to the struct each item should
    be, where the app checks every item on its own and answers a bad one in the
    response rather than refusing the request.
    """
    models = list(models)
    checked_items = dict(checked_items or {})
    _, definitions = msgspec.json.schema_components([*models, *checked_items.values()])
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
            if isinstance(have, Schema):
                for key, value in _number_rules(wanted).items():
                    if getattr(have, NUMBER_RULES[key]) is None:
                        setattr(have, NUMBER_RULES[key], value)
        if model.__name__ == "HometownRequest":
            target.one_of = viewer_rule(source["properties"])
    for (owner, field), item_model in checked_items.items():
        _document_items(schema, owner, field, item_model, definitions)
    for path in optional_bodies:
        item = schema.paths.get(path) if schema.paths else None
        body = item.post.request_body if item and item.post else None
        if isinstance(body, RequestBody):
            body.required = False


def _document_items(
    schema: OpenAPI,
    owner: str,
    field: str,
    item_model: type[msgspec.Struct],
    definitions: dict[str, Any],
) -> None:
    """`owner.field`'s items: `item_model` (a component of its own), or anything else.

    "Anything else" is the truth (the request still succeeds; that item is
    `rejected`), and it keeps a fuzzer from expecting a 400 for a bad item.
    """
    if schema.components is None or schema.components.schemas is None:
        return
    components = schema.components.schemas
    target = components.get(owner)
    have = (target.properties or {}).get(field) if isinstance(target, Schema) else None
    items = _items(have) if isinstance(have, Schema) else None
    if items is None:
        return
    name = item_model.__name__
    components[name] = _from_msgspec(definitions[name])
    if item_model.__struct_config__.forbid_unknown_fields:
        components[name].additional_properties = False
    items.any_of = [
        Reference(ref=f"#/components/schemas/{name}"),
        Schema(description="anything else: answered `rejected` with the reason, not stored"),
    ]


def _from_msgspec(source: dict[str, Any]) -> Schema:
    """The JSON schema msgspec writes for a plain struct (no references), as a Schema."""
    kind = source.get("type")
    return Schema(
        type=OpenAPIType(kind) if kind else None,
        title=source.get("title"),
        description=source.get("description"),
        properties={k: _from_msgspec(v) for k, v in source.get("properties", {}).items()} or None,
        required=source.get("required"),
        any_of=[_from_msgspec(v) for v in source.get("anyOf", [])] or None,
        enum=source.get("enum"),
        format=OpenAPIFormat(source["format"]) if "format" in source else None,
        min_length=source.get("minLength"),
        max_length=source.get("maxLength"),
        pattern=source.get("pattern"),
        minimum=source.get("minimum"),
        maximum=source.get("maximum"),
    )


def _number_rules(wanted: dict[str, Any]) -> dict[str, Any]:
    """The bounds of a (possibly optional) number in msgspec's schema."""
    for variant in [wanted, *wanted.get("anyOf", [])]:
        if variant.get("type") in ("integer", "number"):
            return {key: variant[key] for key in NUMBER_RULES if key in variant}
    return {}


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
