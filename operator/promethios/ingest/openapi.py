"""The OpenAPI 3.1 document, generated from the same pydantic models that validate requests."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..api import wire

REF = "#/components/schemas/{model}"
_REPORTS: tuple[tuple[str, type[BaseModel], str, str], ...] = (
    (
        wire.PATH_HEARTBEAT,
        wire.HeartbeatReport,
        "202",
        "Report a heartbeat (acknowledged from memory).",
    ),
    (wire.PATH_METRICS, wire.MetricsReport, "202", "Report governance metrics."),
    (
        wire.PATH_VIOLATIONS,
        wire.ViolationReport,
        "200",
        "Report one violation or a batch; 200 once recorded.",
    ),
)
_ERRORS = {
    "400": "Body is not valid JSON.",
    "401": "Missing, unknown or expired API key.",
    "403": "API key of another agent, or mismatched X-Governance-ID / agentId.",
    "413": "Body over the size limit.",
    "415": "Content-Type is not application/json.",
    "422": "Validation failed; `fields` names each offending field.",
    "429": "Rate limited; see Retry-After.",
    "503": "Not recorded yet (agent unknown or status write failed); retry with the same key.",
}


def _headers() -> list[dict[str, Any]]:
    def header(name: str, required: bool, description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "header",
            "required": required,
            "description": description,
            "schema": {"type": "string"},
        }

    return [
        header(wire.HEADER_AGENT_ID, True, "The agent's id, <namespace>/<name>."),
        header(wire.HEADER_GOVERNANCE_ID, True, "The agent's governance identity."),
        header(wire.HEADER_IDEMPOTENCY_KEY, False, "Per-report key; a repeat is counted once."),
    ]


def _error_responses() -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}
    return {code: {"description": text, "content": content} for code, text in _ERRORS.items()}


def _report_path(model: type[BaseModel], code: str, summary: str) -> dict[str, Any]:
    ok = {
        "description": "Accepted.",
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Accepted")}}},
    }
    return {
        "post": {
            "summary": summary,
            "security": [{"agentKey": []}],
            "parameters": _headers(),
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}
                },
            },
            "responses": {code: ok, **_error_responses()},
        }
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The whole document (computed once)."""
    models: list[tuple[type[BaseModel], Any]] = [(m, "validation") for _, m, _, _ in _REPORTS]
    models += [(wire.ErrorBody, "serialization"), (wire.Accepted, "serialization")]
    _, schemas = models_json_schema(models, ref_template=REF, by_alias=True)
    paths: dict[str, Any] = {
        path: _report_path(model, code, text) for path, model, code, text in _REPORTS
    }
    paths[wire.PATH_SUMMARY] = {
        "get": {
            "summary": "Fleet and per-agent aggregates over a time range.",
            "security": [{"readToken": []}],
            "parameters": [
                {
                    "name": "range",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "string",
                        "pattern": r"^[0-9]{1,7}[smhd]?$",
                        "default": "1h",
                    },
                }
            ],
            "responses": {
                "200": {
                    "description": "Summary.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "401": _error_responses()["401"],
                "422": _error_responses()["422"],
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Promethios governance ingest API", "version": "v1"},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "agentKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The agent's API key.",
                },
                "readToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The summary read token.",
                },
            },
        },
    }
