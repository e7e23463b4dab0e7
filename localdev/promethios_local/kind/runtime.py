"""The OCI runtime Docker runs containers with here: runc, minus the capabilities this
machine does not grant.

Docker 20.10 gives a ``--privileged`` container (every kind node is one) all capabilities
the kernel knows, and runc fails with ``unable to apply caps: operation not permitted``
when asked for one outside its own bounding set (here CAP_SYS_RESOURCE). On ``create`` and
``run`` this wrapper drops from the bundle's config.json every capability the wrapper's
own bounding set lacks, then hands over to runc with the arguments unchanged. Docker runs
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


def restrict_capabilities(config: dict[str, object], allowed: set[str]) -> list[str]:
    """Drop from ``config``'s process capabilities what ``allowed`` lacks; return the dropped."""
    process = config.get("process")
    capabilities = process.get("capabilities") if isinstance(process, dict) else None
    if not isinstance(capabilities, dict):
        return []
    dropped: set[str] = set()
    for kind, names in capabilities.items():
        if isinstance(names, list):
            dropped |= {n for n in names if n not in allowed}
            capabilities[kind] = [n for n in names if n in allowed]
    return sorted(dropped)


def bundle_of(argv: list[str]) -> Path | None:
    """The bundle directory of a ``create``/``run`` invocation, else ``None``."""
    if "create" not in argv and "run" not in argv:
        return None
    for index, arg in enumerate(argv):
        if arg in ("--bundle", "-b") and index + 1 < len(argv):
            return Path(argv[index + 1])
        if arg.startswith("--bundle="):
            return Path(arg.split("=", 1)[1])
    return Path.cwd()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    bundle = bundle_of(args)
    if bundle is not None and (bundle / "config.json").is_file():
        path = bundle / "config.json"
        config = json.loads(path.read_text())
        if restrict_capabilities(config, bounding_set()):
            path.write_text(json.dumps(config))
    os.execv(RUNC, [RUNC, *args])


if __name__ == "__main__":
    main()
