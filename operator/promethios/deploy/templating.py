"""The jinja2 environment of the deploy package's templates (package data, ``templates/``).

Undefined names fail loudly (:class:`jinja2.StrictUndefined`). Output is Markdown, YAML
and code, never HTML, so nothing is HTML-escaped; values that land inside code go
through the ``literal`` filter (a JSON string literal, valid in Python and JavaScript),
so a model name or URL from a spec can never break out of the string it is put in.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jinja2


def literal(value: Any) -> str:
    """A string literal for Python, JavaScript and shell-free JSON (quotes escaped)."""
    return json.dumps(str(value))


@cache
def environment() -> jinja2.Environment:
    """The shared environment (templates are read once)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("promethios.deploy", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["literal"] = literal
    return env


def render_template(template: str, /, **context: Any) -> str:
    """Render one template of ``templates/`` with ``context``."""
    return environment().get_template(template).render(**context)
