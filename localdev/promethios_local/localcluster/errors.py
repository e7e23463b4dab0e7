"""Exceptions raised by the local control-plane launcher."""

from __future__ import annotations

from pathlib import Path

MAKE_TESTENV_HINT = (
    "Run `make testenv` (it builds them from Go module sources into the cache), "
    "or point PROMETHIOS_TESTENV_BIN at a directory holding them."
)


class LocalClusterError(RuntimeError):
    """The local control plane could not be started or driven."""


class BinariesNotFoundError(LocalClusterError, FileNotFoundError):
    """One or more control-plane binaries are missing."""

    def __init__(self, missing: dict[str, Path]) -> None:
        self.missing = dict(missing)
        lines = [f"  {name}: {path}" for name, path in sorted(self.missing.items())]
        super().__init__(
            "The embedded Kubernetes control plane binaries are missing:\n"
            + "\n".join(lines)
            + "\n"
            + MAKE_TESTENV_HINT
        )


class ComponentError(LocalClusterError):
    """A control-plane component exited early or did not become ready in time."""

    def __init__(self, component: str, problem: str, log_path: Path, log_tail: str) -> None:
        self.component = component
        self.problem = problem
        self.log_path = log_path
        self.log_tail = log_tail
        super().__init__(
            f"{component} {problem}\n"
            f"--- last lines of {log_path} ---\n{log_tail.rstrip()}\n--- end of {component} log ---"
        )
