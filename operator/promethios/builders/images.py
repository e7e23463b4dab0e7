"""Which governance-sidecar images the operator will run: the allowlist's patterns.

A GovernedAgent may name its own ``spec.sidecar.image``, and that container receives the
provider credential and the agent's ingest API key. So the operator runs a sidecar image
only if it is its own (``--sidecar-image``) or matches a pattern an operator administrator
listed with ``--allowed-sidecar-image``.

A pattern is an exact image reference, or a prefix ending in ``*``. Images are compared as
written (no registry or tag normalisation). A prefix must not be able to cross into a
registry host or repository the administrator did not name: the ``*`` follows a ``/``
(any repository below that path), or comes inside the tag or digest (after ``:`` or ``@``
in the last path segment). ``ghcr.io/promethios*`` is refused because it would also allow
``ghcr.io/promethios-evil/...``.
"""

from __future__ import annotations

from collections.abc import Iterable

WILDCARD = "*"


def _refuse(pattern: str, why: str) -> ValueError:
    return ValueError(f"sidecar image pattern {pattern!r}: {why}")


def parse_image_pattern(pattern: str) -> str:
    """``pattern`` unchanged if valid; a ValueError naming the pattern and the rule if not."""
    if not pattern:
        raise _refuse(pattern, "empty")
    if any(char.isspace() for char in pattern):
        raise _refuse(pattern, "contains whitespace")
    if pattern == WILDCARD:
        raise _refuse(pattern, "allows every image; list registries or repositories instead")
    if WILDCARD not in pattern:
        return pattern
    prefix = pattern[:-1]
    if not pattern.endswith(WILDCARD) or WILDCARD in prefix:
        raise _refuse(pattern, "'*' is allowed only at the end")
    last_segment = prefix.rsplit("/", 1)[-1] if "/" in prefix else None
    inside_tag = last_segment is not None and (":" in last_segment or "@" in last_segment)
    if not (prefix.endswith("/") or inside_tag):
        raise _refuse(
            pattern,
            "'*' must come after '/' (a repository path) or inside a tag or digest "
            "(after ':' or '@'), so that it cannot match other registries or repositories",
        )
    return pattern


def pattern_matches(pattern: str, image: str) -> bool:
    """Exact equality, or the prefix before a trailing ``*`` (which matches one character
    or more: ``ghcr.io/promethios/*`` does not match ``ghcr.io/promethios/``)."""
    if pattern.endswith(WILDCARD):
        prefix = pattern[:-1]
        return image.startswith(prefix) and len(image) > len(prefix)
    return image == pattern


def image_allowed(image: str, patterns: Iterable[str]) -> bool:
    """Whether ``image`` matches any of ``patterns``."""
    return any(pattern_matches(pattern, image) for pattern in patterns)
