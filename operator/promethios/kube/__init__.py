"""The client layer: the only code in the project that talks to the Kubernetes API server.

Everything above it (controller, ingest) calls functions here with plain dicts and
typed models; nothing above imports ``kubernetes`` directly.
"""
