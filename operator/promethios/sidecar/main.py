"""``promethios sidecar``: run the governance sidecar until SIGTERM/SIGINT, then drain.

On the first signal the sidecar keeps delivering its spooled violations for up
to ``drainSeconds``, stops, and writes a summary of what is left to its
termination message (see :mod:`.termination`); a second signal stops it at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from promethios.api.sidecarconfig import CONFIG_KEY, CONFIG_MOUNT

from .app import Sidecar

DEFAULT_CONFIG = f"{CONFIG_MOUNT}/{CONFIG_KEY}"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The sidecar's command line."""
    parser = argparse.ArgumentParser(prog="promethios sidecar", description=__doc__)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="SidecarConfig JSON file")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    return parser.parse_args(argv)


async def run(config_path: str) -> None:
    """Start the sidecar; on SIGTERM/SIGINT drain and stop (a second signal: stop now)."""
    sidecar = Sidecar(config_path)
    received = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, received.set)
    await sidecar.start()
    try:
        await received.wait()
        received.clear()
        await sidecar.shutdown(hurry=received)
    finally:
        await sidecar.stop()


def main(argv: list[str]) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(run(args.config))
    except (OSError, ValueError) as error:
        logging.getLogger(__name__).error("sidecar failed to start: %s", error)
        return 1
    return 0
