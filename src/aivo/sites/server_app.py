"""The coordinator's Flower ServerApp: a thin shell around `coordinator.run_federation`."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from aivo.errors import ConfigError
from aivo.sites.coordinator import FederationOptions

OPTIONS_KEY = "aivo-options"  # run config key: the FederationOptions, JSON in urlsafe base64


def encode_options(options: FederationOptions) -> str:
    return base64.urlsafe_b64encode(json.dumps(options.to_dict()).encode()).decode()


def decode_options(text: str) -> FederationOptions:
    try:
        values = json.loads(base64.urlsafe_b64decode(text.encode()))
    except (ValueError, UnicodeError) as exc:
        raise ConfigError(f"unreadable federation options in the run config: {exc}") from None
    return FederationOptions(**values)


def make_server_app(run: Callable[[Grid, Context], None]) -> ServerApp:
    """A ServerApp whose main is `run(grid, context)`."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run(grid, context)

    return app
