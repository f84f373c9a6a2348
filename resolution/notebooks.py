"""Run Databricks source-format notebooks (``notebooks/*.py``) locally, top to bottom.

The notebooks are written for Databricks: cells separated by ``# COMMAND ----------``,
Markdown and SQL cells as ``# MAGIC %md`` / ``# MAGIC %sql``, parameters as widgets
(``dbutils.widgets``), output through ``display``. Locally there is no notebook server, so this
module plays the part of one: Python cells run in one namespace holding ``spark`` (the local
session), ``dbutils`` (widgets only, filled from ``--param``) and ``display`` (prints a
DataFrame, saves a matplotlib figure as a PNG); SQL cells run through ``spark.sql`` and print
their result; Markdown cells are skipped. ``idr notebook notebooks/01_quick_start.py`` runs one.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

HEADER = "# Databricks notebook source"
SEPARATOR = re.compile(r"^# COMMAND -+\s*$", re.MULTILINE)
MAGIC = re.compile(r"^# MAGIC ?", re.MULTILINE)


class NotebookError(RuntimeError):
    """A cell failed; the message names the notebook, the cell and its first line."""


@dataclass(frozen=True)
class Cell:
    """One notebook cell: ``python``, ``sql``, ``md`` or another magic (``pip``, ``sh``: skipped)."""

    number: int
    kind: str
    source: str


def parse_notebook(text: str, *, name: str = "<notebook>") -> list[Cell]:
    """The cells of a Databricks source-format notebook."""
    if not text.startswith(HEADER):
        raise NotebookError(f"{name}: not a Databricks source notebook (first line must be {HEADER!r})")
    cells = []
    for number, chunk in enumerate(SEPARATOR.split(text[len(HEADER):]), start=1):
        source = chunk.strip("\n")
        if not source.strip():
            continue
        kind = "python"
        if source.lstrip().startswith("# MAGIC"):
            source = MAGIC.sub("", source).strip("\n")
            magic, _, rest = source.partition("\n")
            kind = magic.strip().lstrip("%").split()[0] if magic.strip().startswith("%") else "md"
            source = rest
        cells.append(Cell(number, kind, source))
    return cells


class Widgets:
    """``dbutils.widgets`` with values from the caller; a widget not given keeps its default."""

    def __init__(self, values: dict[str, str]):
        self.values = dict(values)
        self.defined: dict[str, str] = {}

    def text(self, name: str, default_value: str = "", label: str | None = None) -> None:
        self.defined[name] = self.values.get(name, default_value)

    def dropdown(self, name: str, default_value: str, choices: list[str], label: str | None = None) -> None:
        value = self.values.get(name, default_value)
        if value not in choices:
            raise ValueError(f"widget {name}: {value!r} is not one of {choices}")
        self.defined[name] = value

    def get(self, name: str) -> str:
        if name not in self.defined:
            raise ValueError(f"no widget named {name!r} (define it with dbutils.widgets.text first)")
        return self.defined[name]

    def removeAll(self) -> None:  # noqa: N802 - the Databricks API
        self.defined.clear()


@dataclass
class LocalDbutils:
    """The part of Databricks' ``dbutils`` the notebooks use."""

    widgets: Widgets


@dataclass
class NotebookRun:
    """What a local run produced: printed tables, saved figures, the final namespace."""

    path: Path
    figures: list[Path] = field(default_factory=list)
    displayed: int = 0
    namespace: dict[str, Any] = field(default_factory=dict)


def _displayer(run: NotebookRun, output_dir: Path, echo: Callable[[str], None]) -> Callable[..., None]:
    def display(obj: Any, *args: Any, **kwargs: Any) -> None:
        run.displayed += 1
        if isinstance(obj, DataFrame):
            echo(obj._jdf.showString(20, 60, False))
        elif hasattr(obj, "savefig"):  # a matplotlib figure
            output_dir.mkdir(parents=True, exist_ok=True)
            path = output_dir / f"{run.path.stem}-figure{len(run.figures) + 1}.png"
            obj.savefig(path, dpi=80, bbox_inches="tight")
            run.figures.append(path)
            echo(f"[figure saved to {path}]")
        else:
            echo(str(obj))

    return display


def run_notebook(
    path: str | os.PathLike[str],
    *,
    spark: SparkSession,
    params: dict[str, str] | None = None,
    output_dir: str | os.PathLike[str] = "reports/notebooks",
    echo: Callable[[str], None] = print,
) -> NotebookRun:
    """Run every cell of the notebook at ``path`` in order; the first failing cell raises."""
    import matplotlib

    matplotlib.use("Agg")  # no screen: figures are saved by display()
    path = Path(path)
    run = NotebookRun(path)
    widgets = Widgets(params or {})
    display = _displayer(run, Path(output_dir), echo)
    run.namespace.update(
        spark=spark,
        dbutils=LocalDbutils(widgets),
        display=display,
        displayHTML=echo,
        __name__="__main__",
    )
    for cell in parse_notebook(path.read_text(encoding="utf-8"), name=str(path)):
        first_line = next((line for line in cell.source.splitlines() if line.strip()), "")
        try:
            if cell.kind == "python":
                exec(compile(cell.source, f"{path}#cell{cell.number}", "exec"), run.namespace)  # noqa: S102
            elif cell.kind in ("pip", "sh", "run"):
                echo(f"[%{cell.kind} cell {cell.number} skipped: Databricks only]")
            elif cell.kind == "sql":
                for statement in (part.strip() for part in cell.source.split(";")):
                    if statement:
                        display(spark.sql(statement))
        except Exception as error:
            detail = "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()[0]
            raise NotebookError(f"{path} cell {cell.number} ({first_line.strip()[:60]}): {detail}") from error
    return run


@dataclass
class Pipeline:
    """What a notebook works with: the session, the config and its Delta store."""

    spark: SparkSession
    config: Any  # resolution.config.Config
    store: Any  # resolution.store.DeltaStore

    def table(self, name: str) -> DataFrame:
        """An output table's current rows."""
        return self.store.read(name)

    def use_tables_in_sql(self) -> list[str]:
        """Make the output tables (and the analyst views) usable by bare name in SQL cells.

        A catalog schema becomes the session's current schema; a local warehouse's Delta
        folders become temporary views (call again after a run to see its writes).
        """
        from resolution.views import create_views

        location = self.store.location
        if location.is_catalog:
            if location.catalog:
                self.spark.sql(f"USE CATALOG `{location.catalog}`")
            self.spark.sql(f"USE SCHEMA `{location.schema}`")
        return create_views(self.spark, self.store, self.config)


def open_pipeline(config_path: str, variables: str = "") -> Pipeline:
    """The pipeline of ``config_path``; ``variables``: ``name=value`` pairs, comma-separated.

    Uses the notebook's session (Databricks' ``spark``, or the local runner's), with Splink's
    functions registered and a checkpoint folder set.
    """
    from resolution.config import load_config, parse_variables
    from resolution.session import get_spark_session
    from resolution.store import open_store

    path = Path(config_path)
    if not path.is_absolute() and not path.exists() and (Path("..") / path).exists():
        path = Path("..") / path  # a notebook on Databricks runs in notebooks/, its config is in ../conf
    config = load_config(path, parse_variables([v.strip() for v in variables.split(",") if v.strip()]))
    spark = get_spark_session(
        checkpoint_dir=config.storage.checkpoint_dir, backend=config.storage.backend
    )
    return Pipeline(spark, config, open_store(spark, config))
