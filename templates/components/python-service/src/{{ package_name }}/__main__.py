"""`python -m <package>`: serve the API on HOST:PORT (`make run` and the container image)."""

from __future__ import annotations

import sys

import uvicorn

from .settings import SettingsError, load_settings, require_api_keys


def main() -> None:
    try:
        # Checked here too so a bad configuration is one clear line, not a traceback.
        settings = require_api_keys(load_settings())
    except SettingsError as exc:
        sys.exit(str(exc))
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
