"""``python -m promethios.localcluster``: same as ``promethios cluster``."""

from promethios.localcluster.cli import run_cli

raise SystemExit(run_cli())
