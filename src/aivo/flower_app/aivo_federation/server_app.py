"""The coordinator's ServerApp (run by the SuperLink as `flwr-serverapp`, in its environment)."""

from aivo.services.federation import deployed_server_app

app = deployed_server_app()
