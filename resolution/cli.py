"""The ``idr`` command: ``idr run``, ``idr train``, ``idr generate``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from resolution.config import ConfigError, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idr", description="Identity resolution for the lakehouse.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="resolve the configured sources into entities")
    run.add_argument("--config", required=True, help="pipeline YAML, e.g. conf/example.yml")
    run.add_argument("--run-id", help="run id to record (default: timestamp + random suffix)")
    run.add_argument(
        "--mode",
        choices=("auto", "full", "incremental"),
        default="auto",
        help="auto (default): incremental once a run has succeeded, else full",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="compute everything, write only dry_run_changes, print what would change",
    )

    train = commands.add_parser("train", help="estimate the Splink model and save it as JSON")
    train.add_argument("--config", required=True, help="pipeline YAML whose sources train the model")
    train.add_argument("--output", help="model JSON path (default: matching.model of the config)")

    show = commands.add_parser("show", help="print an output table (to look at results quickly)")
    show.add_argument("--config", required=True, help="pipeline YAML naming the warehouse")
    show.add_argument("--table", default="resolved_membership", help="output table name")
    show.add_argument("--limit", type=int, default=20, help="rows to print")

    generate = commands.add_parser("generate", help="write synthetic multi-source people with truth")
    generate.add_argument("--people", type=int, default=2000, help="number of distinct people")
    generate.add_argument("--seed", type=int, default=7, help="random seed (same seed, same output)")
    generate.add_argument("--output", required=True, help="folder for the CSV files and truth.csv")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``idr`` console script and of ``jobs/``; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "generate":
        from resolution.generate import write_sources

        counts = write_sources(args.people, args.output, seed=args.seed)
        print(f"wrote {args.output}: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2

    from resolution.session import get_spark_session

    spark = get_spark_session(checkpoint_dir=config.storage.checkpoint_dir)
    if args.command == "train":
        from resolution.training import train

        path = train(spark, config, output_path=args.output)
        print(f"model saved to {path} (charts beside it)")
        return 0

    if args.command == "show":
        from resolution.pipeline import show_table

        show_table(spark, config, table=args.table, limit=args.limit)
        return 0

    from resolution.pipeline import PipelineBusyError, describe_error, run_pipeline

    try:
        summary = run_pipeline(
            spark, config, mode=args.mode, dry_run=args.dry_run, run_id=args.run_id
        )
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    except PipelineBusyError as error:
        print(f"run refused: {error}", file=sys.stderr)
        return 3
    except Exception as error:  # the run is recorded as FAILED in the runs table
        print(f"run failed: {describe_error(error)}", file=sys.stderr)
        return 1
    return 0 if summary.status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
