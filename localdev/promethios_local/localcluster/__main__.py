"""``python -m promethios_local.localcluster``: same as ``promethios cluster``."""

from promethios_local.localcluster.cli import run_cli

raise SystemExit(run_cli())
