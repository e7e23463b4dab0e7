"""Local development tooling for the Promethios Operator (not shipped in the image).

- :mod:`.localcluster`  the embedded control plane: etcd, kube-apiserver, controller-manager,
                        scheduler and kwok fake nodes, started from the ``make testenv`` binaries
- :mod:`.demo`          ``make run``: the control plane, the operator and a live governed agent

Installed beside ``promethios-operator`` by ``make venv`` (``pip install -e localdev``); it
adds the ``promethios cluster`` and ``promethios demo`` subcommands through the
``promethios.subcommands`` entry-point group. It may import :mod:`promethios`; the
operator package never imports it.
"""
