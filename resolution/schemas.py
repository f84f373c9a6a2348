"""Output table names, column names and schemas: the public contract of DESIGN.md."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# Table names (public contract).
SOURCE_RECORDS = "source_records"
MATCH_EDGES = "match_edges"
RESOLVED_MEMBERSHIP = "resolved_membership"
GOLDEN_PROFILES = "golden_profiles"
REVIEW_QUEUE = "review_queue"
ENTITY_LINEAGE = "entity_lineage"
RUNS = "runs"
DRY_RUN_CHANGES = "dry_run_changes"
REJECTED_RECORDS = "rejected_records"
REVIEW_DECISIONS = "review_decisions"
CUT_EDGES = "cut_edges"
QUALITY_CHECKS = "quality_checks"
OUTPUT_TABLES = (
    SOURCE_RECORDS, MATCH_EDGES, RESOLVED_MEMBERSHIP, GOLDEN_PROFILES, REVIEW_QUEUE, ENTITY_LINEAGE,
    RUNS, DRY_RUN_CHANGES, REJECTED_RECORDS, REVIEW_DECISIONS, CUT_EDGES, QUALITY_CHECKS,
)

# Column names shared across steps.
RECORD_KEY = "record_key"
SOURCE = "source"
SOURCE_ID = "source_id"
SOURCE_PRIORITY = "source_priority"
SOURCE_TIMESTAMP = "source_timestamp"
VALUE_ISSUES = "value_issues"
DISPLAY_VALUES = "display_values"  # attribute -> the value as the source wrote it (trimmed)
DISPLAY_KINDS = ("name", "address", "text")  # kinds whose match form is not fit to show
ROW_HASH = "row_hash"
ENTITY_ID = "entity_id"
IS_PRIMARY = "is_primary"
RUN_ID = "run_id"
UPDATED_AT = "updated_at"
RECORD_KEY_L = "record_key_l"
RECORD_KEY_R = "record_key_r"
RULE = "rule"
MODEL_RULE = "model"
MATCH_PROBABILITY = "match_probability"
MATCH_WEIGHT = "match_weight"
COMPARISON_LEVELS = "comparison_levels"
STATUS = "status"  # runs, review_queue, quality_checks
EDGE_STATUS = STATUS  # match_edges: LINK | REVIEW
LINK = "link"
REVIEW = "review"
RECORD_COUNT = "record_count"  # entity_lineage, golden_profiles
DETAIL = "detail"  # cut_edges, quality_checks

# Columns of one output table each.
DECISION = "decision"  # review_decisions
DECIDED_AT = "decided_at"
CUT_BY = "cut_by"  # cut_edges: the constraint that cut the link
EVENT_KEY = "event_key"  # entity_lineage
OTHER_ENTITY_ID = "other_entity_id"
EVENT = "event"
OCCURRED_AT = "occurred_at"
SOURCE_KEY = "source_key"  # rejected_records
REASON = "reason"
RAW_ROW = "raw_row"
REJECTED_AT = "rejected_at"
MODE = "mode"  # runs
STARTED_AT = "started_at"
FINISHED_AT = "finished_at"
OWNER = "owner"
BACKENDS = "backends"
SOURCE_VERSIONS = "source_versions"
CURRENT_ENTITY_ID = "current_entity_id"  # dry_run_changes
PROPOSED_ENTITY_ID = "proposed_entity_id"
CHANGE_TYPE = "change_type"
COMPUTED_AT = "computed_at"
PRIMARY_RECORD_KEY = "primary_record_key"  # golden_profiles
SOURCES = "sources"
FIRST_SEEN = "first_seen"
LAST_SEEN = "last_seen"

# entity_lineage.event: an entity absorbed others (MERGED), was absorbed or vanished (RETIRED),
# or a part of it split off under its own id (SPLIT).
MERGED, RETIRED, SPLIT = "MERGED", "RETIRED", "SPLIT"

ATTRIBUTE_TYPES: dict[str, DataType] = {"date": DateType()}


def attribute_type(kind: str) -> DataType:
    """Spark type of a standardized attribute of this kind (dates are dates, the rest strings)."""
    return ATTRIBUTE_TYPES.get(kind, StringType())


def _fields(*specs: tuple[str, DataType, bool]) -> list[StructField]:
    return [StructField(name, data_type, nullable) for name, data_type, nullable in specs]


def source_records_schema(attribute_kinds: dict[str, str]) -> StructType:
    """One row per live source record, with its standardized attributes."""
    return StructType(
        _fields(
            (RECORD_KEY, StringType(), False),
            (SOURCE, StringType(), False),
            (SOURCE_ID, StringType(), False),
            (SOURCE_PRIORITY, IntegerType(), False),
            (SOURCE_TIMESTAMP, TimestampType(), True),
        )
        + [StructField(name, attribute_type(kind), True) for name, kind in attribute_kinds.items()]
        + _fields(
            (VALUE_ISSUES, ArrayType(StringType()), False),
            (DISPLAY_VALUES, MapType(StringType(), StringType()), True),
            (ROW_HASH, StringType(), False),
            (RUN_ID, StringType(), False),
            (UPDATED_AT, TimestampType(), False),
        )
    )


SCORED_SCHEMA = StructType(
    _fields(
        (RECORD_KEY_L, StringType(), False),
        (RECORD_KEY_R, StringType(), False),
        (RULE, StringType(), False),
        (MATCH_PROBABILITY, DoubleType(), True),
        (MATCH_WEIGHT, DoubleType(), True),
        (COMPARISON_LEVELS, MapType(StringType(), StringType()), True),
    )
)

MATCH_EDGES_SCHEMA = StructType(
    _fields(
        (RECORD_KEY_L, StringType(), False),
        (RECORD_KEY_R, StringType(), False),
        (RULE, StringType(), False),
        (EDGE_STATUS, StringType(), False),
        (MATCH_PROBABILITY, DoubleType(), True),
        (MATCH_WEIGHT, DoubleType(), True),
        (COMPARISON_LEVELS, MapType(StringType(), StringType()), True),
        (RUN_ID, StringType(), False),
        (UPDATED_AT, TimestampType(), False),
    )
)

RESOLVED_MEMBERSHIP_SCHEMA = StructType(
    _fields(
        (RECORD_KEY, StringType(), False),
        (SOURCE, StringType(), False),
        (SOURCE_ID, StringType(), False),
        (ENTITY_ID, StringType(), False),
        (IS_PRIMARY, BooleanType(), False),
        (RUN_ID, StringType(), False),
        (UPDATED_AT, TimestampType(), False),
    )
)

# A reviewer's decision on a pair (record_key_l < record_key_r); the latest per pair counts.
ACCEPT, REJECT = "accept", "reject"
ACCEPTED_RULE = "accepted"  # match_edges.rule of a link a reviewer accepted
REVIEW_DECISIONS_SCHEMA = StructType(
    _fields(
        (RECORD_KEY_L, StringType(), False),
        (RECORD_KEY_R, StringType(), False),
        (DECISION, StringType(), False),
        ("decided_by", StringType(), True),
        (DECIDED_AT, TimestampType(), False),
        ("note", StringType(), True),
    )
)

# A link (in match_edges) whose records were kept apart by a cannot-link constraint.
CUT_EDGES_SCHEMA = StructType(
    _fields(
        (RECORD_KEY_L, StringType(), False),
        (RECORD_KEY_R, StringType(), False),
        (CUT_BY, StringType(), False),
        (DETAIL, StringType(), False),
        (RUN_ID, StringType(), False),
        (UPDATED_AT, TimestampType(), False),
    )
)

# One data quality check's outcome after a job (resolution.quality).
QUALITY_CHECKS_SCHEMA = StructType(
    _fields(
        (RUN_ID, StringType(), False),  # the run whose tables were checked
        ("check_name", StringType(), False),
        (STATUS, StringType(), False),  # PASS | FAIL
        ("observed", StringType(), False),
        ("expected", StringType(), False),
        (DETAIL, StringType(), True),
        ("checked_at", TimestampType(), False),
    )
)

REVIEW_QUEUE_SCHEMA = StructType(
    _fields(
        (RECORD_KEY_L, StringType(), False),
        (RECORD_KEY_R, StringType(), False),
        (MATCH_PROBABILITY, DoubleType(), True),
        (MATCH_WEIGHT, DoubleType(), True),
        (COMPARISON_LEVELS, MapType(StringType(), StringType()), True),
        (STATUS, StringType(), False),
        (RUN_ID, StringType(), False),
        (UPDATED_AT, TimestampType(), False),
    )
)

ENTITY_LINEAGE_SCHEMA = StructType(
    _fields(
        (EVENT_KEY, StringType(), False),
        (RUN_ID, StringType(), False),
        (ENTITY_ID, StringType(), False),
        (OTHER_ENTITY_ID, StringType(), True),
        (EVENT, StringType(), False),
        (RECORD_COUNT, LongType(), True),
        (OCCURRED_AT, TimestampType(), False),
    )
)

REJECTED_RECORDS_SCHEMA = StructType(
    _fields(
        (SOURCE, StringType(), False),
        (SOURCE_KEY, StringType(), True),
        (REASON, StringType(), False),
        (RAW_ROW, StringType(), False),
        (RUN_ID, StringType(), False),
        (REJECTED_AT, TimestampType(), False),
    )
)

RUNS_SCHEMA = StructType(
    _fields(
        (RUN_ID, StringType(), False),
        (MODE, StringType(), False),
        (STATUS, StringType(), False),
        (STARTED_AT, TimestampType(), False),
        (FINISHED_AT, TimestampType(), True),
        (OWNER, StringType(), True),
        (BACKENDS, StringType(), True),
        (SOURCE_VERSIONS, MapType(StringType(), StringType()), True),
        ("records_read", MapType(StringType(), LongType()), True),
        ("records_in", LongType(), True),
        ("records_new", LongType(), True),
        ("records_updated", LongType(), True),
        ("records_deleted", LongType(), True),
        ("records_rejected", LongType(), True),
        (VALUE_ISSUES, MapType(StringType(), LongType()), True),
        ("edges_by_rule", MapType(StringType(), LongType()), True),
        ("review_pairs", LongType(), True),
        ("entities", LongType(), True),
        ("entities_created", LongType(), True),
        ("entities_merged", LongType(), True),
        ("entities_split", LongType(), True),
        ("largest_entity", LongType(), True),
        ("stage_seconds", MapType(StringType(), DoubleType()), True),
        ("rows_written", MapType(StringType(), LongType()), True),
        ("error", StringType(), True),
    )
)


DRY_RUN_CHANGES_SCHEMA = StructType(
    _fields(
        (RECORD_KEY, StringType(), False),
        (CURRENT_ENTITY_ID, StringType(), True),
        (PROPOSED_ENTITY_ID, StringType(), True),
        (CHANGE_TYPE, StringType(), False),
        (RUN_ID, StringType(), False),
        (COMPUTED_AT, TimestampType(), False),
    )
)


def golden_profiles_schema(attribute_kinds: dict[str, str], arrays: tuple[str, ...]) -> StructType:
    """One row per entity: surviving attributes, arrays of all emails/phones, provenance."""
    return StructType(
        _fields((ENTITY_ID, StringType(), False), (PRIMARY_RECORD_KEY, StringType(), False))
        + [StructField(name, attribute_type(kind), True) for name, kind in attribute_kinds.items()]
        + [StructField(f"{name}s", ArrayType(StringType()), False) for name in arrays]
        + _fields(
            (RECORD_COUNT, LongType(), False),
            (SOURCES, ArrayType(StringType()), False),
            (FIRST_SEEN, TimestampType(), True),
            (LAST_SEEN, TimestampType(), True),
            (RUN_ID, StringType(), False),
            (UPDATED_AT, TimestampType(), False),
        )
    )
