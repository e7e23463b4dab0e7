"""Loading and watching the sidecar's mounted files: config, ingest key, provider credential.

Kubernetes updates mounted ConfigMaps and Secrets in place (an atomic symlink
swap), so the sidecar polls each file's identity (inode, size, mtime) every few
seconds and reloads what changed; no restart is needed. A config that fails to
parse is refused and the previous one kept. The ingest key is also re-read on
demand when the ingest API answers 401 (the rotation may have happened between
two polls). Listener host and ports are read once at start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from promethios.api.sidecarconfig import SidecarConfig

log = logging.getLogger(__name__)

FileStamp = tuple[int, int, int]


def stamp(path: str | None) -> FileStamp | None:
    """What identifies a file's current content cheaply, or None if it is missing."""
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def load_config(path: str | Path) -> SidecarConfig:
    """Parse the config file; raises ``OSError`` or ``ValidationError``."""
    return SidecarConfig.model_validate_json(Path(path).read_bytes())


def read_secret(path: str | None) -> str | None:
    """A mounted secret file's content, stripped; None if unset or unreadable."""
    if not path:
        return None
    try:
        value = Path(path).read_text().strip()
    except OSError as error:
        log.warning("cannot read %s: %s", path, error)
        return None
    return value or None


@dataclass
class Snapshot:
    """The current configuration and secrets, replaced as a whole on reload."""

    config: SidecarConfig
    api_key: str | None
    provider_credential: str | None


class ConfigStore:
    """Holds the current :class:`Snapshot`; ``poll()`` reloads whatever changed."""

    def __init__(
        self,
        config_path: str | Path,
        on_change: Callable[[Snapshot, Snapshot], None] | None = None,
    ) -> None:
        self.config_path = str(config_path)
        self._on_change = on_change
        config = load_config(self.config_path)
        self.current = Snapshot(
            config,
            read_secret(config.ingest.api_key_file),
            read_secret(config.provider.credential_file),
        )
        self._stamps = self._stamps_of(config)
        self.reload_errors = 0

    def _stamps_of(self, config: SidecarConfig) -> tuple[FileStamp | None, ...]:
        return (
            stamp(self.config_path),
            stamp(config.ingest.api_key_file),
            stamp(config.provider.credential_file),
        )

    @property
    def config(self) -> SidecarConfig:
        """The current config."""
        return self.current.config

    def poll(self) -> bool:
        """Reload the files whose identity changed; True if anything was reloaded."""
        old = self.current
        stamps = self._stamps_of(old.config)
        if stamps == self._stamps:
            return False
        config = old.config
        if stamps[0] != self._stamps[0]:
            try:
                config = load_config(self.config_path)
            except (OSError, ValidationError, ValueError) as error:
                self.reload_errors += 1
                log.error("keeping the previous config: %s is invalid: %s", self.config_path, error)
        new = Snapshot(
            config,
            read_secret(config.ingest.api_key_file),
            read_secret(config.provider.credential_file),
        )
        self._stamps = self._stamps_of(config)
        self.current = new
        if self._on_change is not None:
            self._on_change(old, new)
        log.info("reloaded sidecar configuration and secrets")
        return True

    def reread_api_key(self) -> bool:
        """Re-read the ingest key now (after a 401); True if it changed."""
        key = read_secret(self.current.config.ingest.api_key_file)
        if key == self.current.api_key:
            return False
        self.current = Snapshot(self.current.config, key, self.current.provider_credential)
        return True
