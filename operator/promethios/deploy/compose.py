"""``promethios package --format compose``: an agent outside the cluster, under governance.

For a GovernedAgent with ``spec.runtime: External`` the operator issues the API key, the
governance config (its ConfigMap: ``config.json`` and the ingest API's CA bundle) and
status, but runs nothing. This bundle runs the agent beside its governance sidecar with
Docker Compose, wired as the pod would be::

    compose.yaml          the sidecar (the operator's image, ``promethios sidecar``) and the
                          agent, which shares the sidecar's network namespace, so the model
                          proxy and the reporting API are on 127.0.0.1 for it, as in a pod
    config/config.json    the operator's config.json; only the key and credential file
                          paths (Compose secrets) and, if asked, the ingest URL differ
    config/ca.crt         the CA bundle the sidecar verifies the ingest API's TLS with
    spool/                where violations wait for delivery, across restarts
    secrets/              the ingest API key and the provider credential, as files
                          (``.gitignore``: never committed)
    README.md

The sidecar reports to the cluster's ingest API over TLS (``ingest.url``, the operator's
``--external-ingest-url``) and verifies it against ``config/ca.crt`` only. Pure but
:func:`~.kustomize.write`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from ..api.agent import Agent
from ..api.sidecarconfig import CONFIG_KEY, CONFIG_MOUNT, SIDECAR_METRICS_PORT
from ..builders.sidecar import CA_BUNDLE_KEY, DEFAULT_SIDECAR_IMAGE
from ..builders.workload import SIDECAR_CONTAINER, SIDECAR_UID, agent_env
from .templating import render_template

#: Where Compose mounts file secrets in a container.
SECRETS_DIR = "/run/secrets"
API_KEY_SECRET = "promethios-api-key"
PROVIDER_SECRET = "provider-credential"
#: Where violations wait for delivery, kept across restarts (a directory the sidecar's uid
#: owns: a named volume would be root's).
SPOOL_DIR = "spool"


@dataclass(frozen=True)
class ComposeInputs:
    """What the bundle is made of: the agent, its ConfigMap's data, and choices."""

    agent: Agent
    config_json: str
    ca_bundle: str | None = None
    sidecar_image: str | None = None
    ingest_url: str | None = None
    #: The agent's ingest API key, written to ``secrets/`` (mode 0600) when given.
    api_key: str | None = None


def sidecar_config(inputs: ComposeInputs) -> dict[str, Any]:
    """The operator's config.json with the secret file paths of Compose."""
    config: dict[str, Any] = json.loads(inputs.config_json)
    config["ingest"]["apiKeyFile"] = f"{SECRETS_DIR}/{API_KEY_SECRET}"
    if config["provider"].get("credentialFile"):
        config["provider"]["credentialFile"] = f"{SECRETS_DIR}/{PROVIDER_SECRET}"
    if inputs.ingest_url:
        config["ingest"]["url"] = inputs.ingest_url
    if config["ingest"].get("caFile") and not inputs.ca_bundle:
        raise ValueError("the config names a CA bundle (ingest.caFile) but the ConfigMap has none")
    return config


def compose_file(inputs: ComposeInputs, config: Mapping[str, Any]) -> dict[str, Any]:
    """The Compose application: sidecar + agent in one network namespace."""
    agent, spec = inputs.agent, inputs.agent.spec
    has_credential = bool(config["provider"].get("credentialFile"))
    secrets = [API_KEY_SECRET, *([PROVIDER_SECRET] if has_credential else [])]
    probe = (
        "import urllib.request; urllib.request.urlopen("
        f"'http://127.0.0.1:{SIDECAR_METRICS_PORT}/readyz', timeout=2)"
    )
    sidecar: dict[str, Any] = {
        "image": inputs.sidecar_image or spec.sidecar.image or DEFAULT_SIDECAR_IMAGE,
        "command": ["sidecar", "--config", f"{CONFIG_MOUNT}/{CONFIG_KEY}"],
        "user": f"{SIDECAR_UID}:{SIDECAR_UID}",
        "read_only": True,
        "tmpfs": ["/tmp"],
        "volumes": [f"./config:{CONFIG_MOUNT}:ro", f"./{SPOOL_DIR}:{config['spoolDir']}"],
        "secrets": secrets,
        # The agent shares this namespace: its port is published here.
        "ports": [
            f"{spec.port}:{spec.port}",
            f"127.0.0.1:{SIDECAR_METRICS_PORT}:{SIDECAR_METRICS_PORT}",
        ],
        "healthcheck": {
            "test": ["CMD", "python", "-c", probe],
            "interval": "5s",
            "timeout": "3s",
            "retries": 12,
        },
        "stop_grace_period": f"{spec.sidecar.drain_seconds + 5}s",
        "restart": "unless-stopped",
    }
    agent_service: dict[str, Any] = {
        "image": spec.image,
        "network_mode": f"service:{SIDECAR_CONTAINER}",
        "depends_on": {SIDECAR_CONTAINER: {"condition": "service_healthy"}},
        "environment": {item["name"]: item["value"] for item in agent_env(agent)},
        "restart": "unless-stopped",
    }
    if spec.command:
        agent_service["entrypoint"] = list(spec.command)
    if spec.args:
        agent_service["command"] = list(spec.args)
    return {
        "name": agent.name,
        "services": {SIDECAR_CONTAINER: sidecar, "agent": agent_service},
        "secrets": {
            API_KEY_SECRET: {"file": f"./secrets/{API_KEY_SECRET}"},
            **(
                {PROVIDER_SECRET: {"file": f"./secrets/{PROVIDER_SECRET}"}}
                if has_credential
                else {}
            ),
        },
    }


def files(inputs: ComposeInputs) -> dict[str, str]:
    """Every file of the bundle, by path relative to its directory."""
    config = sidecar_config(inputs)
    compose = compose_file(inputs, config)
    out = {
        "compose.yaml": yaml.safe_dump(compose, sort_keys=False),
        f"config/{CONFIG_KEY}": json.dumps(config, indent=2, sort_keys=True) + "\n",
        "secrets/.gitignore": "# The key and the credential never get committed.\n*\n!.gitignore\n",
        f"{SPOOL_DIR}/.gitignore": "# Undelivered violations, kept.\n*\n!.gitignore\n",
        ".gitignore": "secrets/*\n!secrets/.gitignore\nspool/*\n!spool/.gitignore\n",
    }
    if inputs.ca_bundle:
        out[f"config/{CA_BUNDLE_KEY}"] = inputs.ca_bundle
    if inputs.api_key:
        out[f"secrets/{API_KEY_SECRET}"] = inputs.api_key
    out["README.md"] = render_template(
        "compose/README.md.j2",
        agent=inputs.agent,
        config=config,
        compose=compose,
        has_key=bool(inputs.api_key),
        has_credential=PROVIDER_SECRET in compose["secrets"],
        api_key_secret=API_KEY_SECRET,
        provider_secret=PROVIDER_SECRET,
        sidecar=SIDECAR_CONTAINER,
        uid=SIDECAR_UID,
    )
    return out


#: Files holding secrets: written with mode 0600.
SECRET_FILES = (f"secrets/{API_KEY_SECRET}", f"secrets/{PROVIDER_SECRET}")
