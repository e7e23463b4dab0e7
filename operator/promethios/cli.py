"""The ``promethios`` console script: one entry point, one subcommand per component.

Subcommands import their component lazily so that ``promethios sidecar`` never
loads kopf or the Kubernetes client (the sidecar runs in every agent pod).

Other distributions add subcommands through the ``promethios.subcommands`` entry-point
group (``name = "module:function"``): the local development tooling contributes
``cluster`` and ``demo`` that way, so this package never names it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

#: Entry-point group through which other distributions add subcommands.
PLUGIN_GROUP = "promethios.subcommands"

#: subcommand -> (module, function, one-line help). Each function takes argv, returns an exit code.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "operator": (
        "promethios.composition",
        "operator_main",
        "run the operator (and the ingest API in-process)",
    ),
    "ingest": (
        "promethios.composition",
        "ingest_main",
        "run the ingest API on its own (--dashboard-port: and the dashboard)",
    ),
    "dashboard": ("promethios.dashboard.main", "main", "run the governance dashboard on its own"),
    "sidecar": ("promethios.sidecar.main", "main", "run the governance sidecar"),
    "crds": ("promethios.api.crdgen", "main", "write the CRD YAML generated from the models"),
    "instructions": (
        "promethios.deploy.cli",
        "instructions_main",
        "print an agent's integration instructions",
    ),
    "package": ("promethios.deploy.cli", "package_main", "write a GitOps or Compose bundle"),
    "rollback": ("promethios.deploy.cli", "rollback_main", "restore an earlier revision's spec"),
}

#: Help for plug-in subcommands this project's own tooling provides (others get a generic line).
PLUGIN_HELP = {
    "cluster": "start the embedded control plane and wait (promethios-local)",
    "demo": "control plane + operator + a live governed agent (promethios-local)",
}


def subcommands() -> dict[str, tuple[str, str, str]]:
    """The built-in subcommands plus those installed distributions contribute."""
    found = dict(SUBCOMMANDS)
    for point in entry_points(group=PLUGIN_GROUP):
        module, _, function = point.value.partition(":")
        if point.name not in found and function:
            found[point.name] = (module, function, PLUGIN_HELP.get(point.name, "(plug-in)"))
    return found


def usage() -> str:
    """The help text listing every subcommand."""
    lines = ["usage: promethios <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, _, help_) in subcommands().items()]
    return "\n".join(lines)


def resolve(name: str) -> Callable[[list[str]], int]:
    """The function implementing a subcommand; KeyError for an unknown name."""
    module_name, function_name, _ = subcommands()[name]
    function: Callable[[list[str]], int] = getattr(
        importlib.import_module(module_name), function_name
    )
    return function


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``promethios <subcommand> [args...]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in subcommands():
        hint = ""
        if name in PLUGIN_HELP:
            hint = "\n\n`promethios {name}` comes with the local tooling: pip install -e localdev"
        print(
            f"promethios: unknown subcommand {name!r}{hint.format(name=name)}\n\n{usage()}",
            file=sys.stderr,
        )
        return 2
    return resolve(name)(rest)


if __name__ == "__main__":
    sys.exit(main())
