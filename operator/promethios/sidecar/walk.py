"""One walk over every string of a JSON value: the only way content reaches the policy.

Every string is inspected: values and object keys, at any depth, under any key.
There is no list of "text" keys: a field the sidecar does not know (a new
provider feature, ``tools[].function.description``, ``response_format``,
``tool_use.input``, metadata) is inspected like any other, and identifiers
(``model``, ``role``, ``id``, ``type``, ``tool_call_id``) are inspected too:
they reach the provider with the prompt and some (``tool_call_id``, ``name``)
are shown to the model, and an inspected identifier costs next to nothing.
Pure; the input is never mutated (a clean container is returned as is).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Appended to a key that a redaction made collide with another key.
KEY_COLLISION_SUFFIX = "_"


def map_strings(payload: Any, fn: Callable[[str], str]) -> Any:
    """``payload`` with ``fn`` applied to every string, keys included.

    Copy on write: a container none of whose strings changed is returned as is,
    so inspecting a clean body allocates next to nothing.
    """
    if isinstance(payload, str):
        return fn(payload)
    if isinstance(payload, dict):
        return _map_dict(payload, fn)
    if isinstance(payload, list):
        items = [map_strings(item, fn) for item in payload]
        if all(new is old for new, old in zip(items, payload, strict=True)):
            return payload
        return items
    return payload


def _map_dict(payload: dict[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
    out: dict[str, Any] | None = None
    for position, (key, value) in enumerate(payload.items()):
        new_key, new_value = fn(key), map_strings(value, fn)
        if out is None:
            if new_key is key and new_value is value:
                continue
            out = dict(list(payload.items())[:position])
        while new_key in out:  # only after a redaction: input keys are unique
            new_key += KEY_COLLISION_SUFFIX
        out[new_key] = new_value
    return payload if out is None else out


def string_values(payload: Any) -> list[str]:
    """Every string value (not keys) in ``payload``, for token estimates."""
    found: list[str] = []
    stack = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found
