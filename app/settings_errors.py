"""The one-line messages for bad settings: the variable as typed, the rule, the fix.

`app.settings.load_settings` prints these and exits 2. The rule is read from the
field itself (its type and constraints), so a new setting gets a clear message
without anyone writing one; `_FIXES` adds a hint where "such a value" would not
say enough. Secrets (`SECRET_VARIABLES`) are named, never quoted.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

#: How a valid DATABASE_URL looks, for the messages.
URL_SHAPE = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
#: Variables whose values never appear in a message (a URL may carry a password).
SECRET_VARIABLES = frozenset({"API_KEY", "DATABASE_URL", "DATABASE_REPLICA_URLS", "REDIS_URL"})
#: How to fix a variable, where "such a value" would not say enough.
_FIXES = {
    "DATABASE_URL": f"a URL like {URL_SHAPE} (postgres:// and postgresql+DRIVER:// work too)",
    "DATABASE_REPLICA_URLS": f"comma-separated URLs like {URL_SHAPE}",
    "TRUSTED_PROXIES": "a list like 10.0.0.5,10.1.0.0/16",
    "REDIS_URL": "a URL like redis://HOST:6379/0 (rediss:// for TLS, unix:///PATH for a socket)",
    "API_KEY": "such a key (`python -c 'import secrets; print(secrets.token_hex(32))'` prints one)",
}
#: What unsetting a variable without a default means.
_UNSET = {
    "API_KEY": "or unset it (every write is then refused)",
    "TRUSTED_PROXIES": "or unset it (no proxy is trusted)",
    "DATABASE_REPLICA_URLS": "or unset it (the primary serves every read)",
    "REDIS_URL": "or unset it (each process caches features in its own memory)",
}


def describe_errors(exc: ValidationError, settings: type[BaseSettings]) -> list[str]:
    """One line per bad variable: `error: VARIABLE='value' is invalid: rule. Fix: ...`."""
    lines: list[str] = []
    seen: set[str] = set()
    for error in exc.errors(include_url=False):
        variable, info = _variable(error["loc"], settings)
        if variable in seen:  # a union reports each of its branches
            continue
        seen.add(variable)
        lines.append(_describe(variable, info, error) if variable else _model_error(error))
    return lines


def _variable(
    loc: tuple[int | str, ...], settings: type[BaseSettings]
) -> tuple[str, FieldInfo | None]:
    """The environment variable (as the user types it) and its field, from an error's loc.

    A nested setting's loc is `("WEIGHTS", "proximity_weight")`: the variable is
    `WEIGHTS__PROXIMITY_WEIGHT` (`env_nested_delimiter`).
    """
    if not loc:
        return "", None
    top = str(loc[0]).upper()
    aliases = {str(f.validation_alias).upper(): f for f in settings.model_fields.values()}
    info = aliases.get(top)
    nested = _model_class(info)
    if nested is not None and len(loc) > 1 and str(loc[1]) in nested.model_fields:
        return f"{top}__{str(loc[1]).upper()}", nested.model_fields[str(loc[1])]
    return top, info


def _model_class(info: FieldInfo | None) -> Any:
    """The pydantic model a field holds (`Weights`), or None."""
    annotation = info.annotation if info is not None else None
    return (
        annotation if isinstance(annotation, type) and hasattr(annotation, "model_fields") else None
    )


def _describe(variable: str, info: FieldInfo | None, error: Any) -> str:
    shown = variable if variable in SECRET_VARIABLES else f"{variable}={_show(error.get('input'))}"
    if error["type"] == "value_error":  # our own validators say what is wrong
        rule = str(error["ctx"]["error"])
    elif info is not None:
        rule = f"must be {_requirement(variable, info)}"
    else:
        rule = f"is refused ({error['msg']})"
    if info is None:
        return f"error: {shown} is invalid: it {rule}."
    fix = f"set {variable} to {_FIXES.get(variable, 'such a value')}, {_unset(variable, info)}"
    return f"error: {shown} is invalid: it {rule}. Fix: {fix}."


def _model_error(error: Any) -> str:
    """A rule across settings (ENVIRONMENT=production needs API_KEY): its own words."""
    message = str(error["ctx"]["error"]) if "ctx" in error else str(error["msg"])
    return f"error: {message}."


def unparsable(message: str, settings: type[BaseSettings]) -> str:
    """pydantic-settings' `error parsing value for field "weights" ...` as our line."""
    match = re.search(r'field "(\w+)"', message)
    info = settings.model_fields.get(match.group(1)) if match else None
    if info is None or info.validation_alias is None:
        return f"error: {message}. Fix: correct that variable's value, or unset it."
    variable = str(info.validation_alias).upper()
    return (
        f"error: {variable} is invalid: it must be a JSON object. Fix: set {variable} to"
        f' JSON such as {{"name": 1.0}}, or use {variable}__<NAME>=<value> variables instead.'
    )


def _show(value: Any) -> str:
    """A value as typed (quoted when a string), cut at 60 characters."""
    if not isinstance(value, str):
        return repr(value)[:60]
    return repr(value if len(value) <= 60 else f"{value[:57]}...")


def _unset(variable: str, info: FieldInfo) -> str:
    if variable in _UNSET:
        return _UNSET[variable]
    default = info.get_default(call_default_factory=True)
    if default is None or _model_class(info) is not None:
        return "or unset it"
    return f"or unset it to use the default ({_plain(default)})"


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_KINDS: dict[Any, str] = {
    int: "a whole number",
    float: "a number",
    Path: "a file path",
    SecretStr: "a secret",
}


def _requirement(variable: str, info: FieldInfo) -> str:
    """What the variable must hold, from its type and its constraints."""
    annotation = info.annotation
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    if _model_class(info) is not None:
        return f"set through {variable}__<NAME>=<number> variables"
    # `SecretStr | None` and the like: the type that is not None.
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = options[0] if len(options) == 1 else annotation
    if base is bool:
        return "true or false"
    kind = _KINDS.get(base, "a text")
    low = high = None
    for rule in info.metadata:
        if isinstance(rule, annotated_types.Ge):
            low = f"{_plain(rule.ge)}"
        elif isinstance(rule, annotated_types.Gt):
            low = f"greater than {_plain(rule.gt)}"
        elif isinstance(rule, annotated_types.Le):
            high = _plain(rule.le)
        elif isinstance(rule, annotated_types.MinLen):
            return f"{kind} of at least {rule.min_length} characters"
    if low is not None and high is not None and not low.startswith("greater"):
        return f"{kind} from {low} to {high}"
    if low is not None:
        return f"{kind} {low}" if low.startswith("greater") else f"{kind} of at least {low}"
    if high is not None:
        return f"{kind} of at most {high}"
    return kind
