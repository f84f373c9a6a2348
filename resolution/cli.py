"""The ``idr`` command: ``init``, ``run``, ``stream``, ``train``, ``show``, ``check``, ``views``,
``accept``, ``reject``, ``serve``, ``notebook``, ``generate``, ``evaluate``.

``idr init`` (no ``--config``: it writes one) samples the sources without Spark and writes a
commented starter pipeline YAML (:mod:`resolution.starter`).

Exit codes, for schedulers: 0 success; 1 the run failed (recorded FAILED in ``runs``); 2 bad
configuration or arguments; 3 another run holds the pipeline; 4 a data quality check failed.
Each command ends with one summary line (``idr run ... SUCCEEDED ...``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from resolution.config import ConfigError, load_config, parse_variables

EXIT_FAILED, EXIT_CONFIG, EXIT_BUSY, EXIT_QUALITY = 1, 2, 3, 4

# adds a subcommand that takes --config and --var: commands.add_parser with that parent
_AddCommand = Callable[..., argparse.ArgumentParser]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idr", description="Identity resolution for the lakehouse.")
    commands = parser.add_subparsers(dest="command", required=True)
    # every command that reads a config takes --config and --var
    configured = argparse.ArgumentParser(add_help=False)
    configured.add_argument("--config", required=True, help="pipeline YAML, e.g. conf/example.yml")
    configured.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE",
        help="value of ${NAME} in the config (repeatable), e.g. --var catalog=main",
    )

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[configured], **kwargs)

    # in this order: `idr --help` lists the commands as they are added
    _add_run_commands(command)
    _add_result_commands(command)
    _add_review_commands(command)
    _add_service_commands(command)
    _add_local_commands(commands)
    return parser


def _add_run_commands(command: _AddCommand) -> None:
    """``run``, ``stream`` and ``train``."""
    run = command("run", help="resolve the configured sources into entities")
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
    run.add_argument(
        "--skip-checks", action="store_true", help="do not run the data quality checks after the run"
    )

    stream = command(
        "stream", help="resolve a source's changes continuously (Structured Streaming micro-batches)"
    )
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

    train = command("train", help="estimate the Splink model and save it as JSON")
    train.add_argument("--output", help="model JSON path (default: matching.model of the config)")
    train.add_argument("--threshold-only", action="store_true",
                       help="do not train: propose the link threshold of the trained model on the current records")


def _add_result_commands(command: _AddCommand) -> None:
    """``show`` and ``evaluate``: look at what a run wrote."""
    show = command("show", help="print an output table (to look at results quickly)")
    show.add_argument("--table", default="resolved_membership", help="output table name")
    show.add_argument("--limit", type=int, default=20, help="rows to print")

    evaluate = command(
        "evaluate", help="score resolved_membership against ground truth (pairwise, B-cubed)"
    )
    evaluate.add_argument(
        "--truth", required=True, help="truth CSV, Parquet or Delta folder, or table (record key -> person id)"
    )
    evaluate.add_argument("--truth-key", default="record_key", help="truth column of record keys (source:id)")
    evaluate.add_argument("--truth-id", default="person_id", help="truth column of true person ids")
    evaluate.add_argument(
        "--output", default="reports/evaluation", help="folder for evaluation.json, .md and the chart"
    )
    evaluate.add_argument("--title", help="report title (default: the config file name)")


def _add_review_commands(command: _AddCommand) -> None:
    """``accept`` and ``reject``: a reviewer's decision on pairs of records."""
    for decision, meaning in (
        ("accept", "record that two records are the same person; the next run links them"),
        ("reject", "record that two records are different people; the next run keeps them apart"),
    ):
        decide = command(decision, help=meaning)
        decide.add_argument(
            "--pair", nargs=2, action="append", required=True, metavar=("KEY_L", "KEY_R"),
            help="two record keys (source:source_id); repeat for more pairs",
        )
        decide.add_argument("--by", help="who decided (stored in review_decisions)")
        decide.add_argument("--note", help="why (stored in review_decisions)")


def _add_service_commands(command: _AddCommand) -> None:
    """``serve``, ``check`` and ``views``: what runs beside and after the pipeline."""
    serve = command("serve", help="the real-time resolve service: POST /v1/resolve (OpenAPI at /docs)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")

    command("check", help="run the data quality checks on the output tables (exit 4 if one fails)")

    views = command("views", help="create the analyst SQL views (customer_360, entity_lookup, entity_history)")
    views.add_argument("--print", action="store_true", dest="print_sql", help="print their SQL, create nothing")


def _add_local_commands(commands: argparse._SubParsersAction) -> None:
    """``init``, ``notebook`` and ``generate``: no ``--config`` (``init`` writes one)."""
    init = commands.add_parser(
        "init", help="write a commented starter pipeline YAML guessed from samples of the sources"
    )
    init.add_argument(
        "--source", action="append", required=True, metavar="NAME=PATH",
        help="a source (repeatable, in priority order): CSV file, Parquet file or folder, Delta folder",
    )
    init.add_argument("--output", required=True, help="YAML to write, e.g. conf/my_pipeline.yml")
    init.add_argument("--warehouse", default="./lakehouse", help="storage.warehouse (default ./lakehouse)")
    init.add_argument("--phone-region", help="phone_region, e.g. GB (default: guessed from the phone numbers)")
    init.add_argument("--force", action="store_true", help="overwrite --output if it exists")

    notebook = commands.add_parser(
        "notebook", help="run a notebook of notebooks/ locally, top to bottom (Databricks source format)"
    )
    notebook.add_argument("path", help="e.g. notebooks/01_quick_start.py")
    notebook.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="widget value (repeatable), e.g. --param config=conf/example.yml",
    )
    notebook.add_argument("--output", default="reports/notebooks", help="folder for the charts it draws")

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
    generate.add_argument(
        "--mode", choices=("contacts", "households"), default="contacts",
        help="contacts: CRM, orders and support tickets with emails and phones; households: a census roster, "
             "a social-security file and tax forms, no contact identifiers (conf/benchmarks/households.yml)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``idr`` console script and of ``jobs/``; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    unconfigured = {"generate": _generate, "notebook": _notebook, "init": _init}
    if args.command in unconfigured:
        return unconfigured[args.command](args)
    try:
        config = load_config(args.config, parse_variables(args.var))
    except (ConfigError, ValueError) as error:
        print(f"config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    return _configured(config, args)


def _configured(config, args) -> int:
    """A command that reads the config: those that need no Spark first, then start Spark."""
    if args.command == "views" and args.print_sql:
        return _print_views(config)
    if args.command == "serve":  # no Spark: the service reads the tables with delta-rs
        return _serve(config, args)
    if args.command == "train" and config.matching.model is None:
        print(f"config error: {config.path}: matching: idr train needs a matching section (the model path, "
              "comparisons and blocking rules); without one the identifier rules resolve alone", file=sys.stderr)
        return EXIT_CONFIG
    spark = _start_spark(config)
    if spark is None:
        return EXIT_CONFIG
    handlers = {
        "train": _train, "show": _show, "stream": _stream, "evaluate": _evaluate, "accept": _decide,
        "reject": _decide, "check": _check, "views": _views,
    }
    return handlers.get(args.command, _run)(spark, config, args)


def _start_spark(config):
    """The session of a command that needs Spark; None (the error printed) if the backend cannot load."""
    from resolution.packages import MissingPackageError
    from resolution.session import get_spark_session

    try:
        return get_spark_session(
            checkpoint_dir=config.storage.checkpoint_dir, backend=config.storage.backend
        )
    except MissingPackageError as error:  # storage.backend: jvm before `make jars`
        print(f"config error: {config.path}: storage.backend: {error}", file=sys.stderr)
        return None


def _generate(args) -> int:
    from resolution.generate import write_sources
    from resolution.generate_households import write_households

    if args.mode == "households":
        if args.batches:
            print("--batches: the households mode writes one state only", file=sys.stderr)
            return EXIT_CONFIG
        counts = write_households(args.people, args.output, seed=args.seed)
        print(f"wrote {args.output}: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
        return 0
    counts = write_sources(
        args.people, args.output, seed=args.seed, batches=args.batches, change_fraction=args.change_fraction
    )
    print(f"wrote {args.output}: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    return 0


def _serve(config, args) -> int:
    from resolution.realtime.service import serve

    if config.serve.inbox_source is None:
        print(f"config error: {config.path}: serve.inbox_source: name the source the service appends to",
              file=sys.stderr)
        return EXIT_CONFIG
    serve(config, host=args.host, port=args.port)
    return 0


def _train(spark, config, args) -> int:
    from resolution.threshold import proposal_path
    from resolution.training import propose, train

    if args.threshold_only:
        proposal = propose(spark, config)
        if proposal is None:
            print("no candidate pair was scored: no link threshold to propose")
            return 1
        print(f"saved {proposal_path(config.matching.model)}")
        print("\n".join(proposal.lines(None if config.matching.link_threshold_auto else config.matching.link_threshold)))
        return 0
    path, report = train(spark, config, output_path=args.output)
    print(f"model saved to {path} (charts and {path.with_suffix('.report.txt').name} beside it)")
    print("\n".join(report.lines()))
    return 0


def _show(spark, config, args) -> int:
    from resolution.pipeline import show_table

    show_table(spark, config, table=args.table, limit=args.limit)
    return 0


def _run(spark, config, args) -> int:
    from resolution.pipeline import run_pipeline
    from resolution.run_log import PipelineBusyError, describe_error

    try:
        summary = run_pipeline(
            spark, config, mode=args.mode, dry_run=args.dry_run, run_id=args.run_id
        )
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except PipelineBusyError as error:
        print(f"run refused: {error}", file=sys.stderr)
        return EXIT_BUSY
    except Exception as error:  # the run is recorded as FAILED in the runs table
        print(f"run failed: {describe_error(error)}", file=sys.stderr)
        return EXIT_FAILED
    code = 0 if summary.status == "SUCCEEDED" else EXIT_FAILED
    if code == 0 and not args.dry_run and not args.skip_checks and config.quality.enabled:
        code = _check(spark, config, args, run_id=summary.run_id, quiet=True)
    print(summary.one_line())
    return code


def _init(args) -> int:
    from resolution.starter import StarterError, parse_source_argument, write_starter_config

    try:
        starter = write_starter_config(
            [parse_source_argument(text) for text in args.source], args.output,
            warehouse=args.warehouse, phone_region=args.phone_region, force=args.force,
        )
    except StarterError as error:
        print(f"init error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    print("\n".join(starter.summary()))
    return 0


def _notebook(args) -> int:
    from resolution.notebooks import NotebookError, run_notebook
    from resolution.session import get_spark_session

    try:
        params = parse_variables(args.param)
    except ValueError as error:
        print(f"notebook error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        run = run_notebook(args.path, spark=get_spark_session(), params=params, output_dir=args.output)
    except (NotebookError, FileNotFoundError) as error:
        print(f"notebook failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"notebook {args.path} ran to the end: {run.displayed} outputs, {len(run.figures)} charts in {args.output}")
    return 0


def _store(spark, config):
    from resolution.store import open_store

    return open_store(spark, config)


def _check(spark, config, args, *, run_id: str | None = None, quiet: bool = False) -> int:
    """Run the quality checks, record them, print them (failures only when ``quiet``)."""
    from resolution.quality import run_checks, summary_line, write_results
    from resolution.run_log import last_successful_run

    store = _store(spark, config)
    results = run_checks(store, config)
    if run_id is None:
        last = last_successful_run(store)
        run_id = last["run_id"] if last is not None else "none"
    if store.exists("source_records"):
        write_results(spark, store, results, run_id=run_id)
    for result in results:
        if not (quiet and result.passed):
            print(result.line())
    print(summary_line(results))
    return 0 if all(result.passed for result in results) else EXIT_QUALITY


def _views(spark, config, args) -> int:
    from resolution.views import create_views

    try:
        names = create_views(spark, _store(spark, config), config)
    except FileNotFoundError as error:
        print(f"views not created: {error}", file=sys.stderr)
        return EXIT_FAILED
    print("created views: " + ", ".join(names))
    return 0


def _print_views(config) -> int:
    from resolution import schemas as S
    from resolution.views import view_sql

    names = (S.GOLDEN_PROFILES, S.RESOLVED_MEMBERSHIP, S.REVIEW_QUEUE, S.ENTITY_LINEAGE, S.SOURCE_RECORDS)
    for view, select in view_sql(config, {name: name for name in names}).items():
        print(f"CREATE OR REPLACE VIEW {view} AS\n{select};\n")
    return 0


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


def _decide(spark, config, args) -> int:
    from resolution.review import ReviewError, decide_pairs

    try:
        count = decide_pairs(
            spark, _store(spark, config), [tuple(pair) for pair in args.pair], args.command,
            decided_by=args.by, note=args.note,
        )
    except ReviewError as error:
        print(f"review error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    effect = "links them" if args.command == "accept" else "keeps them apart"
    print(f"recorded {count} {args.command}ed pair(s) in review_decisions; the next run {effect}")
    return 0


def _stream(spark, config, args) -> int:
    from resolution.run_log import describe_error
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


def console() -> None:
    """The ``idr`` console script: a non-zero exit code is raised as ``SystemExit``.

    Databricks runs a wheel task's entry point as ``entry_point.load()()`` and ignores what it
    returns, so a failed run (or a failed quality check) must raise to fail the task.
    """
    code = main()
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    sys.exit(main())
