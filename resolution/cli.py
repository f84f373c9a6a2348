"""The ``idr`` command: ``run``, ``stream``, ``train``, ``show``, ``generate``, ``evaluate``, ``reject``."""

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

    stream = commands.add_parser(
        "stream", help="resolve a source's changes continuously (Structured Streaming micro-batches)"
    )
    stream.add_argument("--config", required=True, help="pipeline YAML, e.g. conf/example.yml")
    stream.add_argument("--source", required=True, help="the audit or delta_cdf source to stream")
    stream.add_argument(
        "--checkpoint", help="streaming checkpoint folder (default: <warehouse>/_streams/<source>)"
    )
    stream.add_argument("--trigger-seconds", type=float, default=10.0, help="micro-batch interval")
    stream.add_argument(
        "--available-now",
        action="store_true",
        help="process the changes available now, then stop (for schedulers)",
    )
    stream.add_argument(
        "--max-versions-per-trigger", type=int, help="cap the Delta versions one micro-batch reads"
    )
    stream.add_argument(
        "--lock-wait-seconds",
        type=float,
        default=3600.0,
        help="how long a micro-batch waits for another run holding the pipeline",
    )

    train = commands.add_parser("train", help="estimate the Splink model and save it as JSON")
    train.add_argument("--config", required=True, help="pipeline YAML whose sources train the model")
    train.add_argument("--output", help="model JSON path (default: matching.model of the config)")

    show = commands.add_parser("show", help="print an output table (to look at results quickly)")
    show.add_argument("--config", required=True, help="pipeline YAML naming the warehouse")
    show.add_argument("--table", default="resolved_membership", help="output table name")
    show.add_argument("--limit", type=int, default=20, help="rows to print")

    evaluate = commands.add_parser(
        "evaluate", help="score resolved_membership against ground truth (pairwise, B-cubed)"
    )
    evaluate.add_argument("--config", required=True, help="pipeline YAML naming the warehouse")
    evaluate.add_argument(
        "--truth", required=True, help="truth CSV, Parquet or Delta folder, or table (record key -> person id)"
    )
    evaluate.add_argument("--truth-key", default="record_key", help="truth column of record keys (source:id)")
    evaluate.add_argument("--truth-id", default="person_id", help="truth column of true person ids")
    evaluate.add_argument(
        "--output", default="reports/evaluation", help="folder for evaluation.json, .md and the chart"
    )
    evaluate.add_argument("--title", help="report title (default: the config file name)")

    reject = commands.add_parser(
        "reject", help="record that two records are different people; the next run keeps them apart"
    )
    reject.add_argument("--config", required=True, help="pipeline YAML, e.g. conf/example.yml")
    reject.add_argument(
        "--pair", nargs=2, action="append", required=True, metavar=("KEY_L", "KEY_R"),
        help="two record keys (source:source_id); repeat for more pairs",
    )
    reject.add_argument("--by", help="who decided (stored in review_decisions)")
    reject.add_argument("--note", help="why (stored in review_decisions)")

    generate = commands.add_parser("generate", help="write synthetic multi-source people with truth")
    generate.add_argument("--people", type=int, default=2000, help="number of distinct people")
    generate.add_argument("--seed", type=int, default=7, help="random seed (same seed, same output)")
    generate.add_argument("--output", required=True, help="folder for the CSV files and truth.csv")
    generate.add_argument(
        "--batches", type=int, default=0, help="write the state after this many change batches (default 0)"
    )
    generate.add_argument(
        "--change-fraction", type=float, default=0.01, help="share of records each change batch touches"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``idr`` console script and of ``jobs/``; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "generate":
        from resolution.generate import write_sources

        counts = write_sources(
            args.people, args.output, seed=args.seed, batches=args.batches, change_fraction=args.change_fraction
        )
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

    if args.command == "stream":
        return _stream(spark, config, args)

    if args.command == "evaluate":
        return _evaluate(spark, config, args)

    if args.command == "reject":
        return _reject(spark, config, args)

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


def _evaluate(spark, config, args) -> int:
    from pathlib import Path

    from resolution.evaluation import (
        EvaluationError,
        evaluate_warehouse,
        summary_markdown,
        write_report,
    )

    try:
        evaluation = evaluate_warehouse(
            spark, config, truth=args.truth, truth_key=args.truth_key, truth_id=args.truth_id
        )
    except EvaluationError as error:
        print(f"evaluation error: {error}", file=sys.stderr)
        return 2
    title = args.title or Path(config.path).name
    paths = write_report(evaluation, args.output, title=title)
    print(summary_markdown(evaluation, title=title), end="")
    print("report: " + ", ".join(str(path) for path in paths.values()))
    return 0


def _reject(spark, config, args) -> int:
    from resolution.pipeline import store_for
    from resolution.review import ReviewError, reject_pairs
    from resolution.session import detect_backends

    store = store_for(spark, config, detect_backends(spark, prefer=config.storage.backend))
    try:
        count = reject_pairs(spark, store, [tuple(pair) for pair in args.pair], decided_by=args.by, note=args.note)
    except ReviewError as error:
        print(f"review error: {error}", file=sys.stderr)
        return 2
    print(f"recorded {count} rejected pair(s) in review_decisions; the next run keeps them apart")
    return 0


def _stream(spark, config, args) -> int:
    from resolution.pipeline import describe_error
    from resolution.streaming import StreamOptions, default_checkpoint, start_stream

    try:
        options = StreamOptions(
            source=args.source,
            checkpoint=args.checkpoint or default_checkpoint(config, args.source),
            trigger_seconds=args.trigger_seconds,
            available_now=args.available_now,
            max_versions_per_trigger=args.max_versions_per_trigger,
            lock_wait_seconds=args.lock_wait_seconds,
        )
        query, handler = start_stream(spark, config, options)
        query.awaitTermination()
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stream stopped", file=sys.stderr)
        return 0
    except Exception as error:  # a failed micro-batch stops the query; its run is FAILED in runs
        print(f"stream failed: {describe_error(error)}", file=sys.stderr)
        return 1
    print(f"stream of {args.source} ended after {len(handler.batches)} micro-batches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
