"""Writing a bundle's files to disk (the only file I/O of the deploy package)."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path


def write(
    directory: Path,
    content: Mapping[str, str],
    force: bool = False,
    private: Collection[str] = (),
) -> list[Path]:
    """Write ``content`` (relative path -> text) under ``directory``.

    Refuses to overwrite an existing file unless ``force``; the paths in ``private`` are
    created with mode 0600 (never readable by others, not even for a moment).
    """
    targets = [directory / relative for relative in content]
    existing = [path for path in targets if path.exists()]
    if existing and not force:
        raise FileExistsError(f"{existing[0]} exists (use --force to overwrite)")
    for relative, path in zip(content, targets, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        if relative in private:
            path.unlink(missing_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(content[relative])
        else:
            path.write_text(content[relative])
    return targets
