"""The OCI runtime Docker runs containers with here: runc, minus the capabilities this
machine does not grant.

Docker 20.10 gives a ``--privileged`` container (every kind node is one) all capabilities
the kernel knows, and runc fails with ``unable to apply caps: operation not permitted``
when asked for one outside its own bounding set (here CAP_SYS_RESOURCE). On ``create`` and
``run`` this wrapper drops from the bundle's config.json every capability the wrapper's
own bounding set lacks (on ``exec``, from the ``--process`` file: `docker exec --privileged`
asks for the same set), then hands over to runc with the arguments unchanged. Docker runs
it as ``--add-runtime promethios=<shim>``; the shim is a two-line script that executes
this module with the session's Python.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

RUNC = "/usr/sbin/runc"
#: Linux capability names by number (linux/capability.h), as OCI configs spell them.
CAPABILITIES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
]


def bounding_set(status: str | None = None) -> set[str]:
    """``CAP_*`` names in this process's bounding set (from /proc/self/status)."""
    text = Path("/proc/self/status").read_text() if status is None else status
    line = next(line for line in text.splitlines() if line.startswith("CapBnd:"))
    mask = int(line.split()[1], 16)
    return {f"CAP_{name}" for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1}


def restrict_capabilities(process: object, allowed: set[str]) -> list[str]:
    """Drop from an OCI ``process``'s capabilities what ``allowed`` lacks; return the dropped."""
    capabilities = process.get("capabilities") if isinstance(process, dict) else None
    if not isinstance(capabilities, dict):
        return []
    dropped: set[str] = set()
    for kind, names in capabilities.items():
        if isinstance(names, list):
            dropped |= {n for n in names if n not in allowed}
            capabilities[kind] = [n for n in names if n in allowed]
    return sorted(dropped)


def _option(argv: list[str], *names: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg in names and index + 1 < len(argv):
            return argv[index + 1]
        for name in names:
            if arg.startswith(f"{name}="):
                return arg.split("=", 1)[1]
    return None


def process_file(argv: list[str]) -> Path | None:
    """The ``--process`` file of an ``exec`` invocation, else ``None``."""
    if "exec" not in argv:
        return None
    found = _option(argv, "--process", "-p")
    return Path(found) if found else None


def bundle_of(argv: list[str]) -> Path | None:
    """The bundle directory of a ``create``/``run`` invocation, else ``None``."""
    if "create" not in argv and "run" not in argv:
        return None
    found = _option(argv, "--bundle", "-b")
    return Path(found) if found else Path.cwd()


def _rewrite(path: Path, in_config: bool) -> None:
    document = json.loads(path.read_text())
    process = document.get("process") if in_config else document
    if restrict_capabilities(process, bounding_set()):
        path.write_text(json.dumps(document))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    bundle = bundle_of(args)
    if bundle is not None and (bundle / "config.json").is_file():
        _rewrite(bundle / "config.json", in_config=True)
    process = process_file(args)
    if process is not None and process.is_file():
        _rewrite(process, in_config=False)
    os.execv(RUNC, [RUNC, *args])


if __name__ == "__main__":
    main()
