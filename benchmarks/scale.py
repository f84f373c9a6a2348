"""Full and incremental runs at scale, side by side with Splink on Spark and on DuckDB.

    .venv/bin/python benchmarks/scale.py --records 100000
    .venv/bin/python benchmarks/scale.py --records 100000 1000000 --workdir /tmp/idr-scale
    .venv/bin/python benchmarks/scale.py --records 100000 --sources delta --changes 0.01 0.001
    .venv/bin/python benchmarks/scale.py --records 100000 --sources delta --backend jvm

For each size: generate that many records (``idr generate``'s code, three sources, with
truth), then, each in its own process so that peak memory is its own:

- **ours, full**: ``idr run --mode full`` with ``conf/benchmarks/generated.yml`` and its model;
- **Splink on Spark**: the same standardized records (the model's inputs, read from our
  ``source_records``), the same model, comparisons and blocking rules (identifier rules
  first), then what Splink's docs show: ``predict(threshold_match_probability=<review
  threshold>)`` and ``cluster_pairwise_predictions_at_threshold(<link threshold>)``, clusters
  written to Parquet;
- **Splink on DuckDB**: the same, the model rebuilt for DuckDB's SQL dialect;
- **ours, incremental**: a change batch (``--changes`` of CRM and support records updated,
  deleted or added, new orders) written over the sources, then ``idr run``. Splink has no
  incremental mode: absorbing a change is a full run again, so the incremental run is
  compared with the full runs above (1% different data). The run is made twice in its
  process, first on a copy of the warehouse: the first pays the JVM's warm-up as a
  spark-submit job does (the row ``ours-incremental 1.0%``), the second is what a session
  already running pays, a notebook, a stream or a busy cluster (``..., warm session``). Several
  ``--changes`` shares each get their batch and run, from the sources and warehouse the full
  run left.

``--sources csv`` (default) writes the sources as CSV snapshots, which change capture hashes
whole every run; ``--sources delta`` writes them as Delta tables with the change data feed on
and applies the change batch as one MERGE per table, so an incremental run reads only the
changes.

``--backend jvm`` runs ours on delta-spark (``make jars``; tables with deletion vectors, so a
MERGE marks changed rows deleted instead of rewriting their files) instead of the embedded
delta-rs; the Splink runs are the same either way.

The same work on both sides: Splink gets our standardized records with the values our
``max_group_size`` masking nulls already nulled, and the config's ``cannot_link`` constraints
are dropped for our runs (Splink's clustering has none); ``--with-constraints`` keeps them for
ours, and the table then says that only our runs apply them.

Printed per size: seconds per stage (session start-up apart), candidate pairs, pairs scored
per second, peak memory (resident set of the process and its JVM, sampled every 0.1 s),
B-cubed F1 against the truth, and each time as a ratio of ours; then the Spark jobs each of
our stages ran, the source records changed, the rows the MERGEs wrote and the rows the Delta
engine rewrote to apply them (rows of the data files the run's commits added); then the rows each
stage read from each table and source (``scans.py``: Spark's scan metrics, and a Delta source's
change-feed rows). The machine is shared and noisy: compare ratios within one run, not seconds
across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "conf" / "benchmarks" / "generated.yml"
RECORDS_PER_PERSON = 1.935  # the generator's average, so --records reads as records
STAGES = ["ingest", "standardize", "score", "cluster", "identify", "golden", "write"]
SYSTEMS = ["ours-full", "splink-spark", "splink-duckdb", "ours-incremental"]


# ---------------------------------------------------------------------------------- children


def _config(work: Path):
    """The benchmark config with its sources in ``work/data`` and warehouse ``work/lakehouse``."""

    from resolution.config import CannotLinkConfig, load_config

    config = load_config(CONFIG)
    if os.environ.get("IDR_SCALE_CONSTRAINTS") != "1":  # Splink clusters without constraints
        config = dataclasses.replace(config, cannot_link=CannotLinkConfig())
    if (work / "delta-sources").exists():  # --sources delta: Delta tables read by their change feed
        sources = tuple(
            dataclasses.replace(s, format="delta", change_tracking="delta_cdf",
                                location=str(work / "data" / Path(s.location).stem))
            for s in config.sources
        )
    else:
        sources = tuple(
            dataclasses.replace(s, location=str(work / "data" / Path(s.location).name)) for s in config.sources
        )
    backend = os.environ.get("IDR_SCALE_BACKEND", "embedded")
    return dataclasses.replace(
        config,
        storage=dataclasses.replace(config.storage, warehouse=str(work / "lakehouse"), backend=backend),
        sources=sources,
        matching=dataclasses.replace(config.matching, model=str(REPO / config.matching.model)),
    )


def child_ours(work: Path, mode: str) -> dict:
    from scans import rows_read, widen_plan_strings

    from resolution.matching import mask_oversized_identifiers
    from resolution.pipeline import run_pipeline
    from resolution.scoring import model_inputs
    from resolution.session import get_spark_session

    config = _config(work)
    started = time.perf_counter()
    spark = get_spark_session("idr-scale", backend=config.storage.backend)
    startup = time.perf_counter() - started
    widen_plan_strings(spark)

    def reads(summary, warehouse: Path) -> dict:
        """Rows each stage read from each table and source. A Delta source's change feed is
        read by delta-rs into Arrow (no file scan): its rows are counted here from the
        versions the run read after the last one (saved by the full run)."""
        tables = {str(folder): folder.name for folder in warehouse.iterdir() if folder.is_dir()}
        tables.update({s.location: f"source {s.name}" for s in config.sources})
        by_stage = rows_read(spark, summary.run_id, tables)
        versions = work / "source-versions.json"
        if mode == "full":
            versions.write_text(json.dumps(summary.source_versions))
        elif (work / "delta-sources").exists():
            from deltalake import DeltaTable

            before = json.loads(versions.read_text())
            for s in config.sources:
                start, end = int(before[s.name]) + 1, int(summary.source_versions[s.name])
                rows = 0 if start > end else DeltaTable(s.location).load_cdf(
                    starting_version=start, ending_version=end).read_all().num_rows
                by_stage.setdefault("ingest", {})[f"source {s.name} (change feed)"] = rows
        return by_stage

    warm = None
    if mode == "incremental":
        # The same run first on a copy of the warehouse, in this process: it pays the JVM's
        # warm-up (class loading, JIT, Python workers), as a spark-submit job does. The timed
        # run after it is what a session already running pays (a notebook, a stream, a cluster).
        cold = work / "lakehouse-cold"
        shutil.rmtree(cold, ignore_errors=True)
        shutil.copytree(work / "lakehouse", cold)
        before = table_versions(cold)
        started = time.perf_counter()
        first = run_pipeline(spark, dataclasses.replace(config, storage=dataclasses.replace(
            config.storage, warehouse=str(cold))), mode=mode, report=lambda line: None)
        warm = {"seconds": time.perf_counter() - started, "stages": first.stage_seconds, "jobs": first.stage_jobs,
                "reads": reads(first, cold), "rows_rewritten": rows_rewritten(cold, before)}
        shutil.rmtree(cold)
    before = table_versions(work / "lakehouse")
    started = time.perf_counter()
    summary = run_pipeline(spark, config, mode=mode, report=lambda line: None)
    seconds = time.perf_counter() - started
    rewritten = rows_rewritten(work / "lakehouse", before)
    if mode == "full":  # the baselines' input: the same standardized records (not timed)
        from resolution.store import open_store

        store = open_store(spark, config)
        # the full run's partition, kept for evaluation before the incremental run changes it
        store.read("resolved_membership").select("record_key", "entity_id").write.mode("overwrite").parquet(
            str(work / "membership-full.parquet"))
        # masked as our scoring sees them: a junk value shared by many records links nobody
        masked = mask_oversized_identifiers(store.read("source_records"), rules=config.identifiers)
        inputs = model_inputs(masked, config)
        inputs.write.mode("overwrite").parquet(str(work / "model_inputs.parquet"))
    result = {
        "startup": startup, "seconds": seconds, "stages": summary.stage_seconds,
        "records": summary.records_in, "status": summary.status, "jobs": summary.stage_jobs,
        "rows_written": sum(summary.rows_written.values()), "rows_rewritten": rewritten,
        "rows_changed": summary.records_new + summary.records_updated + summary.records_deleted,
        "reads": reads(summary, work / "lakehouse"),
    }
    if warm is not None:  # the first run was the cold one: report it as the run, the second as warm
        result = {**result, "seconds": warm["seconds"], "stages": warm["stages"], "jobs": warm["jobs"],
                  "reads": warm["reads"], "rows_rewritten": warm["rows_rewritten"],
                  "warm": {"seconds": seconds, "stages": summary.stage_seconds, "jobs": summary.stage_jobs}}
    return result


def table_versions(warehouse: Path) -> dict[str, int]:
    """Each Delta table's last commit version, from its log (either backend's tables)."""
    if not warehouse.exists():
        return {}
    return {folder.name: max((int(f.stem) for f in (folder / "_delta_log").glob("*.json")), default=-1)
            for folder in warehouse.iterdir() if (folder / "_delta_log").is_dir()}


def rows_rewritten(warehouse: Path, before: dict[str, int]) -> int:
    """Rows in the data files the commits after ``before`` added to the warehouse's tables.

    A copy-on-write MERGE (delta-rs) rewrites every file holding a changed row, unchanged rows
    and all; with deletion vectors (delta-spark) it writes only the changed rows and marks the
    old ones deleted, re-adding the old file with its deletion vector: such an ``add`` writes
    no rows and is not counted.
    """
    total = 0
    for folder in warehouse.iterdir():
        log = folder / "_delta_log"
        if not log.is_dir():
            continue
        for commit in log.glob("*.json"):
            if int(commit.stem) <= before.get(folder.name, -1):
                continue
            for line in commit.read_text().splitlines():
                add = json.loads(line).get("add") if line.strip() else None
                if add and not add.get("deletionVector") and add.get("stats"):
                    total += int(json.loads(add["stats"]).get("numRecords", 0))
    return total


def child_splink(work: Path, backend: str) -> dict:
    from splink import Linker

    from resolution.scoring import load_model, model_for_dialect, with_candidate_rules

    config = _config(work)
    model = load_model(config.matching.model, config)
    inputs = str(work / "model_inputs.parquet")
    started = time.perf_counter()
    if backend == "spark":
        from splink import SparkAPI

        from resolution.session import get_spark_session

        spark = get_spark_session("splink-spark")
        db_api = SparkAPI(spark_session=spark)
        table = db_api.register(spark.read.parquet(inputs))
    else:
        import duckdb
        from splink import DuckDBAPI

        model = model_for_dialect(model, config, "duckdb")
        db_api = DuckDBAPI(connection=duckdb.connect())
        table = db_api.register(db_api._con.read_parquet(inputs + "/*.parquet"))  # noqa: SLF001
    startup = time.perf_counter() - started
    linker = Linker(table, with_candidate_rules(model, config, backend))
    started = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=config.matching.review_threshold)
    predict = time.perf_counter() - started
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=config.matching.link_threshold
    )
    output = work / f"clusters-{backend}.parquet"
    shutil.rmtree(output, ignore_errors=True)
    if backend == "spark":
        clusters.as_spark_dataframe().write.parquet(str(output))
    else:
        output.mkdir()
        db_api._con.sql(f"copy (select * from {clusters.physical_name}) to '{output}/part-0.parquet'")  # noqa: SLF001
    seconds = time.perf_counter() - started
    result = {"startup": startup, "seconds": seconds, "stages": {"predict": predict, "cluster": seconds - predict}}
    if backend == "duckdb":  # after the timing: every candidate pair, scored and counted
        everything = linker.inference.predict()
        result["pairs"] = db_api._con.sql(f"select count(*) from {everything.physical_name}").fetchall()[0][0]  # noqa: SLF001
    return result


def child_evaluate(work: Path) -> dict:
    """B-cubed F1 of each system's partition against the truth of the data it resolved."""
    from pyspark.sql import functions as F

    from resolution.evaluation import evaluate_partition
    from resolution.session import get_spark_session
    from resolution.store import open_store

    config = _config(work)
    spark = get_spark_session("idr-scale-evaluate", backend=config.storage.backend)

    def truth(path: Path):
        return spark.read.option("header", True).csv(str(path))

    def parquet(path: Path, entity: str):
        return spark.read.parquet(str(path)).select(
            F.col("record_key").cast("string"), F.col(entity).cast("string").alias("entity_id"))

    results = {}
    initial = truth(work / "truth-initial.csv")
    for system, path, entity in (("ours-full", work / "membership-full.parquet", "entity_id"),
                                 ("splink-spark", work / "clusters-spark.parquet", "cluster_id"),
                                 ("splink-duckdb", work / "clusters-duckdb.parquet", "cluster_id")):
        if path.exists() and not (work / "changes-applied").exists():
            results[system] = evaluate_partition(parquet(path, entity), initial).bcubed_f1
    if (work / "changes-applied").exists():  # the incremental run that just ended
        frame = open_store(spark, config).read("resolved_membership").select("record_key", "entity_id")
        results["ours-incremental"] = evaluate_partition(frame, truth(work / "data" / "truth.csv")).bcubed_f1
    return results


# ------------------------------------------------------------------------------------ parent


def _tree_rss(process) -> int:
    import psutil

    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a process that ended meanwhile
            total += p.memory_info().rss
    return total


def run_child(work: Path, system: str) -> dict:
    """Run one system in a fresh process; its result and the peak resident memory of its tree."""
    import psutil

    command = [sys.executable, __file__, "--child", system, "--workdir", str(work)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        process = psutil.Process(child.pid)
        while not done.is_set():
            try:
                peak = max(peak, _tree_rss(process))
            except psutil.Error:
                break
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"{system} failed (exit {child.returncode}):\n{err[-4000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_mib"] = peak / 2**20
    return result


def generate(work: Path, records: int, changes: list[float], *, delta: bool) -> dict:
    """The sources for ``records`` records and, kept aside in ``data-changed-<share>``, a change
    batch for each share of ``changes`` (``delta``: the sources as Delta tables with the change
    data feed on)."""
    from resolution.generate import (
        KEY_COLUMNS,
        SOURCE_FILES,
        TRUTH_FILE,
        change_batch,
        generate_sources,
    )

    people = round(records / RECORDS_PER_PERSON)
    started = time.perf_counter()
    tables = generate_sources(people, seed=11)
    batches = {share: change_batch(tables, fraction=share, seed=12) for share in changes}
    for folder, state in (("data", tables), *((_changed(share), batch) for share, batch in batches.items())):
        (work / folder).mkdir(parents=True, exist_ok=True)
        for name, table in state.items():
            table.to_csv(work / folder / SOURCE_FILES.get(name, TRUTH_FILE), index=False)
    shutil.copy(work / "data" / TRUTH_FILE, work / "truth-initial.csv")
    if delta:
        (work / "delta-sources").touch()
        for name, file in SOURCE_FILES.items():
            write_delta_source(work / "data", file, key=KEY_COLUMNS[name], csv_folder=work / "data")
    return {
        "people": people,
        "records": sum(len(t) for n, t in tables.items() if n != "truth"),
        "changed_records": {share: sum(len(t) for n, t in batch.items() if n != "truth")
                            for share, batch in batches.items()},
        "seconds": time.perf_counter() - started,
    }


def write_delta_source(data: Path, file: str, *, key: str, csv_folder: Path) -> None:
    """Make the Delta table ``data/<file stem>`` hold the CSV ``csv_folder/file`` (strings, empty
    as null): created, or changed by one MERGE (see :mod:`delta_sources`)."""
    import pandas as pd
    from delta_sources import write_delta_source as write

    table = pd.read_csv(csv_folder / file, dtype=str, keep_default_na=False).replace("", None)
    write(data / Path(file).stem, table, key=key)


def _changed(share: float) -> str:
    return f"data-changed-{share:g}"


def _incremental(share: float) -> str:
    return f"ours-incremental {share:.1%}"


def _restore(work: Path, name: str) -> None:
    """``work/name`` becomes a copy of ``work/name-initial`` (taken by the first call)."""
    kept = work / f"{name}-initial"
    if not kept.exists():
        shutil.copytree(work / name, kept)
        return
    shutil.rmtree(work / name)
    shutil.copytree(kept, work / name)


def apply_change_batch(work: Path, share: float) -> None:
    """The sources and warehouse as the full run left them, then the change batch of ``share``
    over the sources: CSV files copied over, or Delta tables MERGEd."""
    from resolution.generate import KEY_COLUMNS, SOURCE_FILES, TRUTH_FILE

    _restore(work, "data")
    _restore(work, "lakehouse")
    changed = work / _changed(share)
    if not (work / "delta-sources").exists():
        shutil.rmtree(work / "data")
        shutil.copytree(changed, work / "data")
        return
    shutil.copy(changed / TRUTH_FILE, work / "data" / TRUTH_FILE)
    for name, file in SOURCE_FILES.items():
        write_delta_source(work / "data", file, key=KEY_COLUMNS[name], csv_folder=changed)


def benchmark(work: Path, records: int, changes: list[float], systems: list[str], *, delta: bool) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = generate(work, records, changes, delta=delta)
    print(f"\n{data['records']:,} records ({data['people']:,} people) generated in {data['seconds']:.1f}s",
          flush=True)
    results: dict[str, dict] = {}

    def run(system: str, label: str) -> None:
        results[label] = run_child(work, system)
        print(f"  {label}: {results[label]['seconds']:.1f}s, peak {results[label]['peak_mib']:,.0f} MiB", flush=True)

    for system in (s for s in systems if s != "ours-incremental"):
        run(system, system)
    quality = run_child(work, "evaluate")
    for system in results:
        results[system]["bcubed_f1"] = quality.get(system)
    if "ours-incremental" in systems and "ours-full" in results:
        (work / "changes-applied").touch()
        for share in changes:
            # each change batch over the sources and warehouse the full run left (which kept
            # its partition for evaluation)
            apply_change_batch(work, share)
            run("ours-incremental", _incremental(share))
            results[_incremental(share)]["bcubed_f1"] = run_child(work, "evaluate").get("ours-incremental")
    return {"data": data, "results": results}


def print_table(size: dict) -> None:
    """One markdown table: the systems' seconds by stage, ratios to ours, pairs/s, memory."""
    data, results = size["data"], size["results"]
    ours = results.get("ours-full", {})
    pairs = results.get("splink-duckdb", {}).get("pairs")  # the same rules over the same records
    print(f"\n### {data['records']:,} records ({data['people']:,} people); candidate pairs "
          f"{'unknown' if pairs is None else f'{pairs:,}'}\n")
    print("| system | " + " | ".join(f"{s} s" for s in STAGES) + " | total s | vs ours full | start-up s "
          "| pairs/s (score) | peak MiB | B-cubed F1 |")
    print("|---" * (len(STAGES) + 7) + "|")
    for system, result in results.items():
        stage = dict(result["stages"])
        if "predict" in stage:  # Splink: predict is its score stage
            stage["score"] = stage.pop("predict")
        full_run = not system.startswith("ours-incremental")  # an incremental run scores only changed pairs
        per_second = f"{pairs / stage['score']:,.0f}" if pairs and full_run and stage.get("score") else "-"
        cells = [f"{stage[s]:.1f}" if s in stage else "" for s in STAGES]
        ratio = result["seconds"] / ours["seconds"] if ours else float("nan")
        f1 = result.get("bcubed_f1")
        print(f"| {system} | " + " | ".join(cells) + f" | {result['seconds']:.1f} | {ratio:.2f} "
              f"| {result['startup']:.1f} | {per_second} | {result['peak_mib']:,.0f} "
              f"| {'' if f1 is None else f'{f1:.4f}'} |")
        if "warm" in result:
            warm = result["warm"]
            cells = [f"{warm['stages'][s]:.1f}" if s in warm["stages"] else "" for s in STAGES]
            print(f"| {system}, warm session | " + " | ".join(cells) + f" | {warm['seconds']:.1f} "
                  f"| {warm['seconds'] / ours['seconds'] if ours else float('nan'):.2f} | | | | |")
    print("\nSpark jobs per stage (as the run log counts them), source records changed, the rows the"
          " run's MERGEs inserted, updated or deleted over all tables, and the rows the Delta engine"
          " rewrote to apply them:\n")
    print("| system | " + " | ".join(STAGES) + " | total | records changed | rows written | rows rewritten |")
    print("|---" * (len(STAGES) + 5) + "|")
    for system, result in results.items():
        if "jobs" not in result:
            continue
        jobs = result["jobs"]
        print(f"| {system} | " + " | ".join(str(jobs.get(s, "")) for s in STAGES)
              + f" | {sum(jobs.values())} | {result['rows_changed']:,} | {result['rows_written']:,} "
              f"| {result['rows_rewritten']:,} |")
    print("\nRows each stage read, by table (Spark's scan metrics; a cached frame read again is not"
          " counted; benchmarks/scans.py):\n")
    print("| system | stage | rows read |")
    print("|---|---|---|")
    for system, result in results.items():
        for stage in STAGES:
            tables = result.get("reads", {}).get(stage)
            if tables:
                cells = "; ".join(f"{table} {rows:,}" for table, rows in sorted(tables.items(), key=lambda t: -t[1]))
                print(f"| {system} | {stage} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[100_000])
    parser.add_argument("--changes", type=float, nargs="+", default=[0.01],
                        help="share of records changed (incremental); several: an incremental run for each, "
                             "each from the full run's warehouse")
    parser.add_argument("--sources", choices=("csv", "delta"), default="csv",
                        help="csv: snapshots, hashed whole each run; delta: Delta tables read by their change feed")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=SYSTEMS)
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a new temp folder)")
    parser.add_argument("--backend", choices=("embedded", "jvm"), default="embedded",
                        help="our runs' Delta engine: delta-rs (embedded) or delta-spark (jvm, `make jars`)")
    parser.add_argument("--with-constraints", action="store_true",
                        help="keep the config's cannot_link for our runs (Splink has none)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.with_constraints:
        os.environ["IDR_SCALE_CONSTRAINTS"] = "1"  # read by the child processes
    if not args.child:  # a child reads the parent's choice from its environment
        os.environ["IDR_SCALE_BACKEND"] = args.backend
    if args.child:
        work = Path(args.workdir)
        os.chdir(REPO)
        run = {
            "ours-full": lambda: child_ours(work, "full"),
            "ours-incremental": lambda: child_ours(work, "incremental"),
            "splink-spark": lambda: child_splink(work, "spark"),
            "splink-duckdb": lambda: child_splink(work, "duckdb"),
            "evaluate": lambda: child_evaluate(work),
        }[args.child]
        print(json.dumps(run()))
        return
    base = Path(args.workdir or tempfile.mkdtemp(prefix="idr-scale-"))
    sizes = [benchmark(base / f"{records}", records, args.changes, args.systems, delta=args.sources == "delta")
             for records in args.records]
    constraints = ("our runs apply cannot_link, Splink's cannot" if args.with_constraints
                   else "no cannot_link on either side")
    print(f"\nscale benchmark, {os.cpu_count()} cores, {args.backend} backend for ours; "
          "times exclude session start-up; "
          f"ratios are each system's total over ours (full); same masked inputs; {constraints}")
    for size in sizes:
        print_table(size)


if __name__ == "__main__":
    main()
