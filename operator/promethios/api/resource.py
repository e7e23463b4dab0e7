"""Describes a custom resource kind for CRD generation: names, columns, models."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel


@dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry shown by ``kubectl get``."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str | None = None


@dataclass(frozen=True)
class CustomResourceInfo:
    """Everything the CRD generator needs to know about one kind."""

    kind: str
    plural: str
    singular: str
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    description: str
    short_names: tuple[str, ...] = ()
    printer_columns: tuple[PrinterColumn, ...] = field(default_factory=tuple)
    #: CEL rules on the object root (``self.spec`` …), for rules that span spec and metadata.
    root_validations: tuple[dict[str, str], ...] = ()
