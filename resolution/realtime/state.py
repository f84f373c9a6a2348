"""The published identity graph in memory: read with delta-rs, indexed for one-record lookups.

Indexes are sorted arrays searched by bisection (``numpy.searchsorted``): building one over a
million values takes a second and costs two arrays, where a dict of lists would cost a Python
object per value.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from resolution import schemas as S
from resolution.config import Config
from resolution.review import latest_decisions_of
from resolution.rules import key_text
from resolution.scoring import NICKNAMES_SUFFIX

SEPARATOR = "\x1f"  # between the values of a multi-column blocking key


class StateError(RuntimeError):
    """The published tables cannot be read (missing, unreachable, not a warehouse of paths)."""


def composite_key(values) -> str | None:
    """The key of a multi-column rule: None when any value is missing (no block)."""
    texts = [key_text(v) for v in values]
    return None if any(t is None for t in texts) else SEPARATOR.join(texts)


class ValueIndex:
    """Row numbers by value, over a column of texts (null: not indexed)."""

    def __init__(self, values: pa.Array | pa.ChunkedArray):
        values = pc.cast(values, pa.string())
        present = np.flatnonzero(pc.is_valid(values).to_numpy(zero_copy_only=False))
        texts = pc.take(values, pa.array(present)).to_numpy(zero_copy_only=False).astype(str)
        order = np.argsort(texts, kind="stable")
        self.rows = present[order]
        self.values = texts[order]

    def lookup(self, value: str | None) -> np.ndarray:
        if value is None or not len(self.values):
            return np.array([], dtype=np.int64)
        low = np.searchsorted(self.values, value, side="left")
        high = np.searchsorted(self.values, value, side="right")
        return self.rows[low:high]


def composite_column(table: pa.Table, rule: tuple[str, ...]) -> pa.ChunkedArray:
    """The blocking key of every row (null where any of the rule's values is missing)."""
    parts = [pc.cast(table.column(name), pa.string()) for name in rule]
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, SEPARATOR, null_handling="emit_null")


@cache
def _nicknames() -> dict[str, list[str]]:
    from nicknames import NickNamer

    return {name: sorted({name, *formal}) for name, formal in NickNamer().canonical_lookup.items()}


def nickname_group(name: str | None) -> list[str] | None:
    """The nickname groups of a first name, as :func:`resolution.scoring.model_inputs` gives them."""
    if name is None:
        return None
    return _nicknames().get(name, [name])


def table_path(config: Config, table: str) -> str:
    if config.storage.warehouse is None:
        raise StateError(
            "idr serve reads the published tables with delta-rs, by path: set storage.warehouse "
            "(a folder or an s3://, abfss://, gs:// URI), not a catalog schema"
        )
    return f"{config.storage.warehouse.rstrip('/')}/{table}"


def table_versions(config: Config) -> dict[str, int]:
    """The current version of each table the state is built from (cheap: reads the log only).

    ``review_decisions`` is there only once a reviewer decided a pair (no table: no decisions).
    """
    versions = {}
    for table in (S.SOURCE_RECORDS, S.RESOLVED_MEMBERSHIP, S.GOLDEN_PROFILES, S.REVIEW_DECISIONS):
        try:
            versions[table] = DeltaTable(table_path(config, table)).version()
        except Exception as error:  # TableNotFoundError, an unreachable object store, ...
            if table == S.REVIEW_DECISIONS and isinstance(error, TableNotFoundError):
                continue  # no reviewer decided a pair yet
            raise StateError(f"cannot read {table_path(config, table)}: {error}") from error
    return versions


@dataclass(frozen=True)
class ReviewDecisions:
    """Reviewers' decisions by record key: the records each one was accepted or rejected with."""

    accepted: Mapping[str, frozenset[str]] = field(default_factory=dict)
    rejected: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, latest: Mapping[tuple[str, str], str]) -> ReviewDecisions:
        """Index :func:`resolution.review.latest_decisions_of` by record key, both ways."""
        partners: dict[str, dict[str, set[str]]] = {S.ACCEPT: {}, S.REJECT: {}}
        for (left, right), decision in latest.items():
            partners[decision].setdefault(left, set()).add(right)
            partners[decision].setdefault(right, set()).add(left)
        frozen = {d: {key: frozenset(keys) for key, keys in by_key.items()} for d, by_key in partners.items()}
        return cls(accepted=frozen[S.ACCEPT], rejected=frozen[S.REJECT])

    def accepted_with(self, key: str) -> frozenset[str]:
        return self.accepted.get(key, frozenset())

    def rejected_with(self, key: str) -> frozenset[str]:
        return self.rejected.get(key, frozenset())


def load_decisions(config: Config, version: int | None) -> ReviewDecisions:
    """The latest decision per pair at ``version`` of ``review_decisions`` (None: no table yet)."""
    if version is None:
        return ReviewDecisions()
    table = DeltaTable(table_path(config, S.REVIEW_DECISIONS), version=version)
    rows = table.to_pyarrow_table(columns=[S.RECORD_KEY_L, S.RECORD_KEY_R, S.DECISION, S.DECIDED_AT]).to_pylist()
    return ReviewDecisions.of(latest_decisions_of(rows))


@dataclass
class PublishedState:
    """Live records with their entity, indexes for the config's rules, golden profiles."""

    config: Config
    versions: dict[str, int]
    records: pa.Table  # model inputs + source, source_id, priority, timestamp, entity_id, is_primary
    key_row: dict[str, int]
    identifier_index: dict[str, ValueIndex]
    blocking_index: dict[tuple[str, ...], ValueIndex]
    entity_index: ValueIndex
    golden: dict[str, dict]
    model_schema: pa.Schema  # record_key and the model's input columns, typed
    decisions: ReviewDecisions = field(default_factory=ReviewDecisions)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Python objects per column: taking a few hundred rows is then a numpy fancy index,
        # not an Arrow-to-Python conversion per value (the state costs more memory for it).
        # (A state copied with new decisions keeps its columns.)
        if not self.columns:
            self.columns = {name: _objects(self.records.column(name)) for name in self.records.column_names}

    @property
    def size(self) -> int:
        return self.records.num_rows

    def rows(self, indices) -> list[dict]:
        """The records at ``indices`` as dicts."""
        indices = np.asarray(indices, dtype=np.int64)
        if not len(indices):
            return []
        names = list(self.columns)
        picked = [self.columns[name][indices] for name in names]
        return [dict(zip(names, values, strict=True)) for values in zip(*picked, strict=True)]


def _objects(column: pa.ChunkedArray) -> np.ndarray:
    """A column as a numpy array of Python values (dates stay ``date``, lists stay lists)."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column.to_numpy(zero_copy_only=False)
    return np.fromiter(column.to_pylist(), dtype=object, count=len(column))


def model_columns(config: Config) -> list[str]:
    """Attributes the model, the identifier rules and the blocking rules read."""
    needed = dict.fromkeys(config.matching.comparisons)
    for rule in config.matching.blocking_rules:
        needed.update(dict.fromkeys(rule))
    for identifier in config.identifiers:
        needed[identifier.attribute] = None
    needed.update(dict.fromkeys(config.cannot_link.attributes))
    return list(needed)


def load_state(config: Config) -> PublishedState:
    """Read the current versions of source_records, resolved_membership, golden_profiles and
    review_decisions (when a reviewer decided a pair)."""
    versions = table_versions(config)
    attributes = model_columns(config)
    records = DeltaTable(table_path(config, S.SOURCE_RECORDS), version=versions[S.SOURCE_RECORDS]).to_pyarrow_table(
        columns=[S.RECORD_KEY, S.SOURCE, S.SOURCE_ID, S.SOURCE_PRIORITY, S.SOURCE_TIMESTAMP, *attributes]
    )
    membership = DeltaTable(
        table_path(config, S.RESOLVED_MEMBERSHIP), version=versions[S.RESOLVED_MEMBERSHIP]
    ).to_pyarrow_table(columns=[S.RECORD_KEY, S.ENTITY_ID, S.IS_PRIMARY])
    records = records.join(membership, S.RECORD_KEY, join_type="inner").combine_chunks()
    for attribute, kind in config.matching.comparisons.items():
        if kind == "given_name":
            groups = [nickname_group(v) for v in records.column(attribute).to_pylist()]
            records = records.append_column(attribute + NICKNAMES_SUFFIX, pa.array(groups, pa.list_(pa.string())))
    golden_table = DeltaTable(table_path(config, S.GOLDEN_PROFILES), version=versions[S.GOLDEN_PROFILES])
    golden = {row[S.ENTITY_ID]: row for row in golden_table.to_pyarrow_table().to_pylist()}
    keys = records.column(S.RECORD_KEY).to_pylist()
    return PublishedState(
        config=config,
        versions=versions,
        records=records,
        key_row={key: index for index, key in enumerate(keys)},
        identifier_index={
            rule.attribute: ValueIndex(records.column(rule.attribute)) for rule in config.identifiers
        },
        blocking_index={
            tuple(rule): ValueIndex(composite_column(records, tuple(rule))) for rule in config.matching.blocking_rules
        },
        entity_index=ValueIndex(records.column(S.ENTITY_ID)),
        golden=golden,
        model_schema=records.select(
            [S.RECORD_KEY, *config.matching.comparisons]
            + [a + NICKNAMES_SUFFIX for a, kind in config.matching.comparisons.items() if kind == "given_name"]
        ).schema,
        decisions=load_decisions(config, versions.get(S.REVIEW_DECISIONS)),
    )


def _only_decisions_moved(versions: dict[str, int], loaded: dict[str, int]) -> bool:
    others = {table: version for table, version in versions.items() if table != S.REVIEW_DECISIONS}
    return versions != loaded and others == {t: v for t, v in loaded.items() if t != S.REVIEW_DECISIONS}


class StateHolder:
    """The current state, swapped whole when a newer table version is published."""

    def __init__(self, config: Config):
        self.config = config
        self.state: PublishedState | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Load the tables if their versions moved; True when a new state was swapped in."""
        with self._lock:
            try:
                versions = table_versions(self.config)
                if self.state is not None and versions == self.state.versions:
                    self.error = None
                    return False
                if self.state is not None and _only_decisions_moved(versions, self.state.versions):
                    # a reviewer decided: the records and their indexes stay, only decisions reload
                    decisions = load_decisions(self.config, versions.get(S.REVIEW_DECISIONS))
                    self.state = replace(self.state, versions=versions, decisions=decisions,
                                         loaded_at=datetime.now(timezone.utc))
                else:
                    self.state = load_state(self.config)
                self.error = None
                return True
            except Exception as error:
                self.error = f"{type(error).__name__}: {error}"
                return False
