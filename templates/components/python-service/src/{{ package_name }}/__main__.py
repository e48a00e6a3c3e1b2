"""`python -m <package>`: serve the API on HOST:PORT (`make run` and the container image)."""

from __future__ import annotations

import sys

import uvicorn

from .metrics import API_METRICS_PORT, serve_metrics
from .settings import SettingsError, load_settings, require_api_keys


def main() -> None:
    try:
        # Checked here too so a bad configuration is one clear line, not a traceback.
        settings = require_api_keys(load_settings())
    except SettingsError as exc:
        sys.exit(str(exc))
    port = settings.metrics_port
    url = serve_metrics(settings.host, API_METRICS_PORT if port is None else port)
    if url is not None:  # before uvicorn configures logging
        sys.stderr.write(f"metrics: {url}\n")
    uvicorn.run(
        f"{__package__}.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
