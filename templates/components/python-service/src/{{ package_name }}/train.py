"""Train the demo model and write the artifact: `python -m <package>.train [--out PATH]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .model import save_artifact, train_iris


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("artifacts/model.joblib"))
    args = parser.parse_args(argv)
    bundle = train_iris()
    digest = save_artifact(bundle, args.out)
    summary = {"artifact": str(args.out), "sha256": digest, "accuracy": bundle["accuracy"]}
    print(json.dumps(summary))  # noqa: T201


if __name__ == "__main__":
    main()
