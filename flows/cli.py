"""`setfit-pipeline` console script (the full CLI arrives with the deployments work)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="setfit-pipeline",
        description="SetFit few-shot text classification as a Prefect pipeline. "
        "Commands: train, predict, server, deploy, worker, artifacts (coming with the deployments work).",
    )
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
