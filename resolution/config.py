"""Pipeline configuration: YAML validated on load into frozen dataclasses.

Every problem is raised as one :class:`ConfigError` naming the file and the key, e.g.
``conf/example.yml: sources[crm].change_tracking: must be one of snapshot, delta_cdf, audit``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, NoReturn, get_args

import yaml

# Each enumeration is written once, as a Literal type; its tuple (the values a config may
# give, in the order error messages list them) is derived from it.
ChangeTracking = Literal["snapshot", "delta_cdf", "audit"]
SourceFormat = Literal["delta", "parquet", "csv", "table"]
AttributeKind = Literal["email", "phone", "name", "date", "address", "postcode", "id", "text"]
ComparisonKind = Literal["name", "given_name", "email", "phone", "date", "postcode", "address", "code", "exact"]
PhoneValidation = Literal["possible", "valid"]
SurvivorshipRule = Literal["source_priority", "most_recent", "most_frequent"]
StorageBackend = Literal["auto", "embedded", "jvm"]

CHANGE_TRACKING_MODES: tuple[ChangeTracking, ...] = get_args(ChangeTracking)
SOURCE_FORMATS: tuple[SourceFormat, ...] = get_args(SourceFormat)
ATTRIBUTE_KINDS: tuple[AttributeKind, ...] = get_args(AttributeKind)
COMPARISON_KINDS: tuple[ComparisonKind, ...] = get_args(ComparisonKind)
PHONE_VALIDATIONS: tuple[PhoneValidation, ...] = get_args(PhoneValidation)
SURVIVORSHIP_RULES: tuple[SurvivorshipRule, ...] = get_args(SurvivorshipRule)
STORAGE_BACKENDS: tuple[StorageBackend, ...] = get_args(StorageBackend)

# Standard attributes whose kind is known from their name; any other name defaults to "id".
DEFAULT_ATTRIBUTE_KINDS: dict[str, AttributeKind] = {
    "email": "email",
    "phone": "phone",
    "first_name": "name",
    "last_name": "name",
    "middle_name": "name",
    "full_name": "name",
    "dob": "date",
    "date_of_birth": "date",
    "address": "address",
    "city": "text",
    "postcode": "postcode",
    "zip": "postcode",
}

DEFAULT_DATE_FORMATS = (
    "yyyy-MM-dd'T'HH:mm:ss[.SSSSSS][XXX]",
    "yyyy-MM-dd HH:mm:ss[.SSSSSS]",
    "yyyy-MM-dd HH:mm",
    "yyyy-MM-dd",
    "yyyy/MM/dd",
    "dd/MM/yyyy",
    "dd.MM.yyyy",
    "yyyyMMdd",
)


# differences a cannot_link attribute can tolerate (resolution.rules.values_differ)
TOLERANCES = ("one_edit", "transposition", "day_month_swap")


class ConfigError(ValueError):
    """A configuration file is invalid; the message names the file and the key."""

    def __init__(self, file: str, key: str, problem: str):
        self.file, self.key, self.problem = file, key, problem
        super().__init__(f"{file}: {key}: {problem}")


@dataclass(frozen=True)
class SourceConfig:
    """One source system: where it is, how its changes are tracked, how columns map."""

    name: str
    # keyword-only, so that a default may precede the required fields below it (the order of
    # the fields, and so of the repr, stays as it was)
    format: SourceFormat = field(default="delta", kw_only=True)
    location: str  # a path (delta/parquet/csv) or a catalog table name (table, delta)
    key: str
    # standard attribute -> source column, or the columns a composite attribute joins (an
    # address from street number, street name and unit)
    columns: dict[str, str | tuple[str, ...]]
    priority: int = 100
    timestamp: str | None = None
    change_tracking: ChangeTracking = "snapshot"
    operation_column: str | None = None
    operation_time_column: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    date_formats: tuple[str, ...] = DEFAULT_DATE_FORMATS

    def columns_of(self, attribute: str) -> tuple[str, ...]:
        """The source columns ``attribute`` is read from (several for a composite attribute)."""
        mapped = self.columns[attribute]
        return (mapped,) if isinstance(mapped, str) else mapped

    @property
    def mapped_columns(self) -> list[str]:
        """Every source column an attribute reads, once each, in mapping order."""
        return list(dict.fromkeys(c for attribute in self.columns for c in self.columns_of(attribute)))

    @property
    def is_path(self) -> bool:
        """True when ``location`` is a folder or file rather than a catalog table name."""
        return self.format != "table" and ("/" in self.location or self.location.startswith("."))


@dataclass(frozen=True)
class IdentifierRule:
    """A deterministic rule: records sharing a (non-junk) value of ``attribute`` are linked."""

    name: str
    attribute: str
    exclude: tuple[str, ...] = ()
    max_group_size: int = 50


@dataclass(frozen=True)
class TrainingConfig:
    """How ``idr train`` estimates the Splink model."""

    max_pairs: float = 1e6
    seed: int = 42
    em_blocking_rules: tuple[tuple[str, ...], ...] = ()
    probability_two_random_records_match: float | None = None
    # rules that find most true pairs and few false ones, for estimating the prior (default: the
    # identifier rules), and the share of true pairs they are believed to find
    prior_rules: tuple[tuple[str, ...], ...] = ()
    prior_recall: float = 0.8


@dataclass(frozen=True)
class MatchingConfig:
    """The probabilistic model and how its scores become links and review pairs.

    Without a ``matching`` section there is no model (``model`` None): the identifier rules
    alone link records (rules-only resolution) and nothing goes to review.
    """

    model: str | None = None
    comparisons: dict[str, ComparisonKind] = field(default_factory=dict)
    blocking_rules: tuple[tuple[str, ...], ...] = ()
    link_threshold: float = 0.95
    review_threshold: float = 0.6
    # ``link_threshold: auto``: the threshold the model proposes (saved beside it by idr train),
    # read on load into ``link_threshold``; False when the model has no proposal yet
    link_threshold_auto: bool = False
    link_threshold_proposed: bool = False
    max_entity_size: int = 1000
    max_embedded_graph_edges: int = 50_000_000
    training: TrainingConfig = TrainingConfig()


@dataclass(frozen=True)
class SurvivorshipConfig:
    """Which value survives into the golden profile, per attribute."""

    default: SurvivorshipRule = "source_priority"
    attributes: dict[str, SurvivorshipRule] = field(default_factory=dict)
    arrays: tuple[str, ...] = ("email", "phone")

    def rule_for(self, attribute: str) -> SurvivorshipRule:
        """The survivorship rule of ``attribute`` (its own or the default)."""
        return self.attributes.get(attribute, self.default)


@dataclass(frozen=True)
class CannotLinkConfig:
    """Records that must not end in one entity, whatever links them.

    ``attributes``: two records with different non-null values of one of these (a birth date,
    a national id) are different people. ``unique_sources``: duplicate-free sources (a
    customer master, a census), which contribute at most one record to an entity.
    """

    attributes: tuple[str, ...] = ()
    unique_sources: tuple[str, ...] = ()
    # per attribute, the differences that are no evidence of two people (a typo): values
    # ``one_edit`` apart, ``transposition`` of two adjacent characters, ``day_month_swap``
    tolerate: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.attributes or self.unique_sources)


@dataclass(frozen=True)
class QualityConfig:
    """Data quality checks run after each job (``idr check``); a violation fails the job.

    ``max_entity_size``: no entity may hold more records (default: ``matching.max_entity_size``).
    ``freshness``: per source, the oldest its newest record may be (source timestamp), e.g.
    ``{crm: 15m}``; ``default`` applies to every source with a timestamp.
    """

    enabled: bool = True
    max_entity_size: int | None = None
    freshness: dict[str, timedelta] = field(default_factory=dict)
    # over-merging without truth: attributes of which one person has one value (default: the
    # cannot_link attributes and those compared as dates or codes), and the share of entities of
    # two or more records that may hold two of them
    strong_attributes: tuple[str, ...] | None = None
    max_conflicting_share: float = 0.02

    def freshness_of(self, source: str) -> timedelta | None:
        """The freshness limit of ``source`` (its own or the default), or None."""
        return self.freshness.get(source, self.freshness.get("default"))


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d`` as a timedelta; anything else raises ValueError."""
    match = _DURATION.fullmatch(str(text))
    if match is None:
        raise ValueError(f"not a duration like 15m, 2h or 1d: {text!r}")
    return timedelta(**{_DURATION_UNITS[match.group(2)]: float(match.group(1))})


@dataclass(frozen=True)
class ServeConfig:
    """``idr serve``: the real-time resolve service.

    ``inbox_source``: a source of this config (``format: delta``, a ``path``, ``change_tracking:
    delta_cdf``, a ``timestamp`` column) that the service appends accepted records to and the
    next run ingests. ``timeout_seconds``: the longest a caller waits for the inbox commit (then
    503). ``refresh_seconds``: how often the service looks for newer table versions.
    ``compact_every_commits``: the inbox's small files are compacted and its log checkpointed
    this often, or each commit grows slower with the table's file count and log.
    ``inbox_log_retention``: the inbox's ``delta.logRetentionDuration``; older log entries are
    removed at the maintenance after a checkpoint. A commit lists the log (on a local disk,
    18 ms with 3,737 entries, 8 ms with 24), so a busy service wants it short; a run that
    finds its change feed gone compares the whole inbox instead.
    """

    inbox_source: str | None = None
    timeout_seconds: float = 2.0
    refresh_seconds: float = 30.0
    max_payload_bytes: int = 16_384
    compact_every_commits: int = 20
    inbox_log_retention: str = "interval 1 day"


@dataclass(frozen=True)
class StorageConfig:
    """Where output tables live: a local warehouse folder or a catalog + schema."""

    warehouse: str | None = None
    catalog: str | None = None
    schema: str | None = None
    backend: StorageBackend = "auto"
    checkpoint_dir: str | None = None
    # Tables delta-spark creates get deletion vectors: a MERGE that changes 1% of a table marks
    # those rows deleted instead of rewriting their files. delta-rs cannot read such tables, so
    # a warehouse that must stay writable by the embedded backend sets this false.
    deletion_vectors: bool = True


@dataclass(frozen=True)
class Config:
    """The whole pipeline configuration."""

    path: str
    sources: tuple[SourceConfig, ...]
    identifiers: tuple[IdentifierRule, ...]
    matching: MatchingConfig
    survivorship: SurvivorshipConfig
    storage: StorageConfig
    attribute_kinds: dict[str, AttributeKind]
    phone_region: str = "US"
    # ``possible``: a number of a possible length for its region keeps its E.164 form (issue
    # ``phone:unverified`` when the numbering plan does not know it: new ranges, 555 numbers);
    # ``valid``: only numbers the plan knows are kept.
    phone_validation: PhoneValidation = "possible"
    cannot_link: CannotLinkConfig = CannotLinkConfig()
    quality: QualityConfig = QualityConfig()
    serve: ServeConfig = ServeConfig()

    @property
    def attributes(self) -> list[str]:
        """Every standard attribute mapped by at least one source, in a stable order."""
        return list(self.attribute_kinds)

    def source(self, name: str) -> SourceConfig:
        """The source called ``name``."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)


def default_of(cls: type, name: str) -> Any:
    """The default of field ``name`` of the config dataclass ``cls``.

    The parser takes every default from here, so a default is written once, on its field.
    A field built by a ``default_factory`` (a dict) gives a fresh value each call.
    """
    for item in dataclasses.fields(cls):
        if item.name == name:
            if item.default is not dataclasses.MISSING:
                return item.default
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
            raise TypeError(f"{cls.__name__}.{name} has no default")
    raise TypeError(f"{cls.__name__} has no field {name!r}")


class _Section:
    """Reads one mapping of the YAML, remembering its key path for error messages.

    ``fields_of`` is the dataclass the section builds: :meth:`optional` takes a missing
    key's default from the field of the same name.
    """

    def __init__(self, file: str, key: str, data: Any, fields_of: type | None = None):
        self.file, self.key, self.fields_of = file, key, fields_of
        if not isinstance(data, dict):
            self.fail(f"must be a mapping, got {type(data).__name__}")
        self.data = data

    def path(self, key: str) -> str:
        return f"{self.key}.{key}" if self.key else key

    def fail(self, problem: str, key: str | None = None) -> NoReturn:
        raise ConfigError(self.file, self.path(key) if key else self.key, problem)

    def check_keys(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            self.fail(f"unknown key (allowed: {', '.join(sorted(allowed))})", unknown[0])

    def child(self, key: str, fields_of: type | None = None, *, required: bool = True) -> _Section | None:
        if key not in self.data:
            if required:
                self.fail("missing required key", key)
            return None
        return _Section(self.file, self.path(key), self.data[key], fields_of)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., choices=None):
        if key not in self.data or self.data[key] is None:
            if default is ...:
                self.fail("missing required key", key)
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if float in kinds and isinstance(value, str):
            # PyYAML reads 1.0e6 (no sign in the exponent) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            self.fail(f"must be {names}, got {type(value).__name__} {value!r}", key)
        if choices is not None and value not in choices:
            self.fail(f"must be one of {', '.join(choices)}, got {value!r}", key)
        return value

    def optional(self, key: str, kind: type | tuple[type, ...], *, choices=None):
        """The value of ``key``, or (missing or null) the default of its field."""
        return self.get(key, kind, default_of(self.fields_of, key), choices=choices)

    def string_map(self, key: str, *, required: bool = True) -> dict[str, str]:
        value = self.get(key, dict) if required else self.optional(key, dict)
        for name, item in value.items():
            if not isinstance(item, str):
                self.fail(f"value of {name!r} must be a string, got {item!r}", key)
        return {str(name): item for name, item in value.items()}

    def column_map(self, key: str) -> dict[str, str | tuple[str, ...]]:
        """attribute -> a column name, or a list of two or more (a composite attribute)."""
        mapping: dict[str, str | tuple[str, ...]] = {}
        for name, item in self.get(key, dict).items():
            if isinstance(item, list) and item and all(isinstance(c, str) and c for c in item):
                if len(set(item)) != len(item):
                    self.fail(f"{name!r} lists a column twice: {item!r}", key)
                mapping[str(name)] = item[0] if len(item) == 1 else tuple(item)
            elif isinstance(item, str):
                mapping[str(name)] = item
            else:
                self.fail(f"value of {name!r} must be a column name or a list of column names "
                          f"(joined into one value), got {item!r}", key)
        return mapping

    def rules(self, key: str) -> tuple[tuple[str, ...], ...]:
        """A list of blocking rules, each a column name or a list of column names."""
        rules = []
        for index, rule in enumerate(self.optional(key, list)):
            columns = (rule,) if isinstance(rule, str) else rule
            if not isinstance(columns, list | tuple) or not all(isinstance(c, str) for c in columns):
                self.fail("each rule must be a column name or a list of column names", f"{key}[{index}]")
            rules.append(tuple(columns))
        return tuple(rules)


def _parse_source(file: str, index: int, data: Any) -> SourceConfig:
    raw_name = data.get("name") if isinstance(data, dict) else None
    section = _Section(file, f"sources[{raw_name or index}]", data, SourceConfig)
    section.check_keys(
        {"name", "format", "path", "table", "key", "columns", "priority", "timestamp",
         "change_tracking", "operation_column", "operation_time_column", "options",
         "date_formats"}
    )
    name = section.get("name", str)
    fmt = section.optional("format", str, choices=SOURCE_FORMATS)
    path, table = section.get("path", str, None), section.get("table", str, None)
    if (path is None) == (table is None):
        section.fail("give exactly one of 'path' or 'table'")
    if fmt == "table" and table is None:
        section.fail("format 'table' reads a catalog table: give 'table', not 'path'", "format")
    if table is not None and fmt not in ("table", "delta"):
        section.fail(f"format {fmt!r} reads files: give 'path'", "table")
    columns = section.column_map("columns")
    if not columns:
        section.fail("map at least one source column to a standard attribute", "columns")
    tracking = section.optional("change_tracking", str, choices=CHANGE_TRACKING_MODES)
    op_column = section.optional("operation_column", str)
    op_time = section.optional("operation_time_column", str)
    if tracking == "audit" and (op_column is None or op_time is None):
        section.fail("audit sources need operation_column and operation_time_column", "change_tracking")
    if tracking == "delta_cdf" and fmt not in ("delta", "table"):
        section.fail("delta_cdf needs a Delta source (format delta or table)", "change_tracking")
    formats = section.optional("date_formats", list)
    return SourceConfig(
        name=name,
        format=fmt,
        location=table if table is not None else path,
        key=section.get("key", str),
        columns=columns,
        priority=section.optional("priority", int),
        timestamp=section.optional("timestamp", str),
        change_tracking=tracking,
        operation_column=op_column,
        operation_time_column=op_time,
        options={k: str(v) for k, v in section.optional("options", dict).items()},
        date_formats=tuple(str(f) for f in formats),
    )


def _parse_identifier(file: str, index: int, data: Any, attributes: set[str]) -> IdentifierRule:
    section = _Section(file, f"identifiers[{index}]", data, IdentifierRule)
    section.check_keys({"name", "attribute", "exclude", "max_group_size"})
    attribute = section.get("attribute", str)
    if attribute not in attributes:
        section.fail(f"no source maps attribute {attribute!r}", "attribute")
    exclude = section.optional("exclude", list)
    if not all(isinstance(pattern, str) for pattern in exclude):
        section.fail("patterns must be strings (quote numbers like '0000000000')", "exclude")
    max_group = section.optional("max_group_size", int)
    if max_group < 2:
        section.fail("must be at least 2", "max_group_size")
    return IdentifierRule(
        name=section.get("name", str, attribute),  # a rule is named after its attribute by default
        attribute=attribute,
        exclude=tuple(exclude),
        max_group_size=max_group,
    )


def _parse_training(section: _Section | None) -> TrainingConfig:
    if section is None:
        return TrainingConfig()
    section.check_keys(
        {"max_pairs", "seed", "em_blocking_rules", "probability_two_random_records_match",
         "prior_rules", "prior_recall"}
    )
    training = TrainingConfig(
        max_pairs=section.optional("max_pairs", float),
        seed=section.optional("seed", int),
        em_blocking_rules=section.rules("em_blocking_rules"),
        probability_two_random_records_match=section.optional("probability_two_random_records_match", float),
        prior_rules=section.rules("prior_rules"),
        prior_recall=section.optional("prior_recall", float),
    )
    if not 0 < training.prior_recall <= 1:
        section.fail("must be in (0, 1]", "prior_recall")
    return training


def _parse_matching(section: _Section | None, attributes: set[str]) -> MatchingConfig:
    if section is None:
        return MatchingConfig()
    section.check_keys(
        {"model", "comparisons", "blocking_rules", "link_threshold", "review_threshold",
         "max_entity_size", "max_embedded_graph_edges", "training"}
    )
    comparisons = section.string_map("comparisons")
    for attribute, kind in comparisons.items():
        if attribute not in attributes:
            section.fail(f"no source maps attribute {attribute!r}", f"comparisons.{attribute}")
        if kind not in COMPARISON_KINDS:
            section.fail(f"must be one of {', '.join(COMPARISON_KINDS)}, got {kind!r}",
                         f"comparisons.{attribute}")
    blocking = section.rules("blocking_rules")
    for index, rule in enumerate(blocking):
        for column in rule:
            if column not in attributes:
                section.fail(f"no source maps attribute {column!r}", f"blocking_rules[{index}]")
    given = section.data.get("link_threshold")
    if isinstance(given, str) and given != "auto":
        section.fail(f"must be float (a probability) or auto, got {given!r}", "link_threshold")
    auto = given == "auto"
    link = default_of(MatchingConfig, "link_threshold") if auto else section.optional("link_threshold", float)
    review = section.optional("review_threshold", float)
    proposed = False
    if auto and section.data.get("model") is not None:
        from resolution.threshold import load_proposal

        proposal = load_proposal(str(section.data["model"]))
        if proposal is not None:
            link, proposed = proposal.threshold, True
            review = min(review, link)  # the proposal may fall below the review threshold: no review band
    if not 0.0 < review <= link <= 1.0:
        section.fail("need 0 < review_threshold <= link_threshold <= 1", "review_threshold")
    training = _parse_training(section.child("training", TrainingConfig, required=False))
    return MatchingConfig(
        model=section.get("model", str),  # required once there is a matching section
        comparisons=comparisons,
        blocking_rules=blocking,
        link_threshold=link,
        review_threshold=review,
        link_threshold_auto=auto,
        link_threshold_proposed=proposed,
        max_entity_size=section.optional("max_entity_size", int),
        max_embedded_graph_edges=section.optional("max_embedded_graph_edges", int),
        training=training,
    )


def _parse_survivorship(section: _Section | None, attributes: set[str]) -> SurvivorshipConfig:
    if section is None:
        return SurvivorshipConfig()
    section.check_keys({"default", "attributes", "arrays"})
    rules = section.string_map("attributes", required=False)
    for attribute, rule in rules.items():
        if attribute not in attributes:
            section.fail(f"no source maps attribute {attribute!r}", f"attributes.{attribute}")
        if rule not in SURVIVORSHIP_RULES:
            section.fail(f"must be one of {', '.join(SURVIVORSHIP_RULES)}", f"attributes.{attribute}")
    arrays = section.optional("arrays", list)
    return SurvivorshipConfig(
        default=section.optional("default", str, choices=SURVIVORSHIP_RULES),
        attributes=rules,
        arrays=tuple(a for a in arrays if a in attributes),
    )


def _parse_cannot_link(section: _Section | None, attributes: set[str], sources: list[str]) -> CannotLinkConfig:
    if section is None:
        return CannotLinkConfig()
    section.check_keys({"attributes", "unique_sources", "tolerate"})
    names = section.optional("attributes", list)
    for index, name in enumerate(names):
        if name not in attributes:
            section.fail(f"no source maps attribute {name!r}", f"attributes[{index}]")
    unique = section.optional("unique_sources", list)
    for index, name in enumerate(unique):
        if name not in sources:
            section.fail(f"no source is called {name!r} (sources: {', '.join(sources)})", f"unique_sources[{index}]")
    tolerate: dict[str, tuple[str, ...]] = {}
    for name, kinds in section.optional("tolerate", dict).items():
        if name not in names:
            section.fail(f"{name!r} is not among cannot_link.attributes", f"tolerate.{name}")
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not isinstance(kinds, list) or not kinds or any(kind not in TOLERANCES for kind in kinds):
            section.fail(f"must be one or more of {', '.join(TOLERANCES)}, got {kinds!r}", f"tolerate.{name}")
        tolerate[str(name)] = tuple(dict.fromkeys(kinds))
    return CannotLinkConfig(attributes=tuple(names), unique_sources=tuple(unique), tolerate=tolerate)


def _parse_quality(section: _Section | None, sources: tuple[SourceConfig, ...]) -> QualityConfig:
    if section is None:
        return QualityConfig()
    section.check_keys({"enabled", "max_entity_size", "freshness", "strong_attributes", "max_conflicting_share"})
    max_size = section.optional("max_entity_size", int)
    if max_size is not None and max_size < 1:
        section.fail("must be at least 1", "max_entity_size")
    freshness = {}
    timestamped = {source.name: source.timestamp for source in sources}
    for name, text in section.optional("freshness", dict).items():
        if name != "default" and name not in timestamped:
            section.fail(f"no source is called {name!r} (or use 'default')", f"freshness.{name}")
        if name != "default" and timestamped[name] is None:
            section.fail(f"source {name!r} has no timestamp column to measure freshness", f"freshness.{name}")
        try:
            freshness[str(name)] = parse_duration(text)
        except ValueError as error:
            section.fail(str(error), f"freshness.{name}")
    strong = section.get("strong_attributes", list, None)
    mapped = {attribute for source in sources for attribute in source.columns}
    for index, name in enumerate(strong or ()):
        if name not in mapped:
            section.fail(f"no source maps attribute {name!r}", f"strong_attributes[{index}]")
    share = section.optional("max_conflicting_share", float)
    if not 0 <= share <= 1:
        section.fail("must be in [0, 1]", "max_conflicting_share")
    return QualityConfig(enabled=section.optional("enabled", bool), max_entity_size=max_size, freshness=freshness,
                         strong_attributes=None if strong is None else tuple(strong), max_conflicting_share=share)


INBOX_COLUMNS = ("channel", "channel_id")  # the request's source and source_id, beside its key


def _check_inbox_source(section: _Section, name: str, sources: tuple[SourceConfig, ...]) -> None:
    found = [source for source in sources if source.name == name]
    if not found:
        section.fail(f"no source is called {name!r}", "inbox_source")
    inbox = found[0]
    if inbox.format != "delta" or not inbox.is_path or inbox.change_tracking != "delta_cdf":
        section.fail(
            f"source {name!r} must be format: delta, a path and change_tracking: delta_cdf "
            "(the service appends to it, the next run reads its change feed)",
            "inbox_source",
        )
    if inbox.timestamp is None:
        section.fail(f"source {name!r} needs a timestamp column (when the record was received)", "inbox_source")
    taken = sorted({inbox.key, inbox.timestamp, *INBOX_COLUMNS} & set(inbox.mapped_columns))
    if taken:
        section.fail(f"source {name!r} maps column {taken[0]!r}, which the inbox uses itself", "inbox_source")
    composite = [attribute for attribute, mapped in inbox.columns.items() if not isinstance(mapped, str)]
    if composite:
        section.fail(f"source {name!r} builds {composite[0]!r} from several columns; the inbox stores each "
                     "attribute as the service receives it: map it to one column", "inbox_source")


def _parse_serve(section: _Section | None, sources: tuple[SourceConfig, ...]) -> ServeConfig:
    if section is None:
        return ServeConfig()
    section.check_keys({"inbox_source", "timeout_seconds", "refresh_seconds", "max_payload_bytes",
                        "compact_every_commits", "inbox_log_retention"})
    name = section.optional("inbox_source", str)
    if name is not None:
        _check_inbox_source(section, name, sources)
    timeout = section.optional("timeout_seconds", float)
    refresh = section.optional("refresh_seconds", float)
    if timeout <= 0 or refresh <= 0:
        section.fail("timeout_seconds and refresh_seconds must be positive")
    retention = section.optional("inbox_log_retention", str).strip().lower()
    if not re.fullmatch(r"interval \d+ (second|minute|hour|day|week)s?", retention):
        section.fail(f"must read like 'interval 1 day' (a Delta interval), got {retention!r}", "inbox_log_retention")
    return ServeConfig(
        inbox_source=name,
        timeout_seconds=timeout,
        refresh_seconds=refresh,
        max_payload_bytes=section.optional("max_payload_bytes", int),
        compact_every_commits=max(1, section.optional("compact_every_commits", int)),
        inbox_log_retention=retention,
    )


def _parse_storage(section: _Section) -> StorageConfig:
    section.check_keys(
        {"warehouse", "catalog", "schema", "backend", "checkpoint_dir", "deletion_vectors"}
    )
    warehouse = section.optional("warehouse", str)
    catalog = section.optional("catalog", str)
    schema = section.optional("schema", str)
    if warehouse is None and schema is None:
        section.fail("give a local 'warehouse' folder or a 'schema' (with optional 'catalog')")
    if warehouse is not None and schema is not None:
        section.fail("give either 'warehouse' or 'catalog'/'schema', not both")
    return StorageConfig(
        warehouse=os.path.expandvars(warehouse) if warehouse else None,
        catalog=catalog,
        schema=schema,
        backend=section.optional("backend", str, choices=STORAGE_BACKENDS),
        checkpoint_dir=section.optional("checkpoint_dir", str),
        deletion_vectors=section.optional("deletion_vectors", bool),
    )


def _parse_sources(root: _Section) -> tuple[SourceConfig, ...]:
    raw_sources = root.data.get("sources")
    if not isinstance(raw_sources, list) or not raw_sources:
        root.fail("must be a non-empty list of sources", "sources")
    sources = tuple(_parse_source(root.file, i, item) for i, item in enumerate(raw_sources))
    names = [source.name for source in sources]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        root.fail("source names must be unique", f"sources[{duplicates[0]}]")
    return sources


def _attribute_kinds(section: _Section | None, sources: tuple[SourceConfig, ...]) -> dict[str, AttributeKind]:
    """The kind of every mapped attribute: declared in ``attributes``, known by name, or ``id``."""
    declared = {}
    if section is not None:
        for name, kind in section.data.items():
            if kind not in ATTRIBUTE_KINDS:
                section.fail(f"must be one of {', '.join(ATTRIBUTE_KINDS)}", str(name))
            declared[str(name)] = kind
    kinds: dict[str, AttributeKind] = {}
    for source in sources:
        for attribute in source.columns:
            kinds.setdefault(attribute, declared.get(attribute, DEFAULT_ATTRIBUTE_KINDS.get(attribute, "id")))
    return kinds


def _parse_identifiers(root: _Section, attributes: set[str]) -> tuple[IdentifierRule, ...]:
    raw_identifiers = root.data.get("identifiers", [])
    if not isinstance(raw_identifiers, list):
        root.fail("must be a list of identifier rules", "identifiers")
    identifiers = tuple(
        _parse_identifier(root.file, i, item, attributes) for i, item in enumerate(raw_identifiers)
    )
    if not identifiers and "matching" not in root.data:
        root.fail(
            "nothing links records: add identifier rules (rules-only resolution) or a matching section (a model)",
            "identifiers",
        )
    return identifiers


def _parse_phone(root: _Section) -> tuple[str, PhoneValidation]:
    """``phone_region`` (upper-cased) and ``phone_validation``; unlike other keys, null is refused."""
    region = root.data.get("phone_region", default_of(Config, "phone_region"))
    if not isinstance(region, str) or len(region) != 2:
        root.fail("must be a two-letter region code such as GB or US", "phone_region")
    validation = root.data.get("phone_validation", default_of(Config, "phone_validation"))
    if validation not in PHONE_VALIDATIONS:
        root.fail(f"must be one of {', '.join(PHONE_VALIDATIONS)}, got {validation!r}", "phone_validation")
    return region.upper(), validation


def parse_config(data: Any, *, file: str = "<config>") -> Config:
    """Validate a parsed YAML document and build the :class:`Config`."""
    root = _Section(file, "config", data, Config)
    root.key = ""  # top-level keys are named bare: ``storage``, not ``config.storage``
    root.check_keys({"sources", "identifiers", "matching", "survivorship", "storage", "attributes",
                     "phone_region", "phone_validation", "cannot_link", "quality", "serve"})
    sources = _parse_sources(root)
    attribute_kinds = _attribute_kinds(root.child("attributes", required=False), sources)
    attributes = set(attribute_kinds)
    identifiers = _parse_identifiers(root, attributes)
    phone_region, phone_validation = _parse_phone(root)
    return Config(
        path=file,
        sources=sources,
        identifiers=identifiers,
        matching=_parse_matching(root.child("matching", MatchingConfig, required=False), attributes),
        survivorship=_parse_survivorship(root.child("survivorship", SurvivorshipConfig, required=False), attributes),
        storage=_parse_storage(root.child("storage", StorageConfig)),
        attribute_kinds=attribute_kinds,
        phone_region=phone_region,
        phone_validation=phone_validation,
        cannot_link=_parse_cannot_link(
            root.child("cannot_link", CannotLinkConfig, required=False), attributes, [s.name for s in sources]
        ),
        quality=_parse_quality(root.child("quality", QualityConfig, required=False), sources),
        serve=_parse_serve(root.child("serve", ServeConfig, required=False), sources),
    )


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute_variables(data: Any, variables: dict[str, str], *, file: str, key: str = "") -> Any:
    """``data`` with every ``${name}`` in a string replaced by ``variables[name]``.

    One config then serves several environments: ``storage: {catalog: ${catalog}}`` with
    ``idr run --var catalog=main`` (the Databricks bundle passes its target's variables so).
    A name missing from ``variables`` is looked up in the environment; missing there too, it
    is an error naming the key.
    """
    if isinstance(data, dict):
        return {
            name: substitute_variables(value, variables, file=file, key=f"{key}.{name}" if key else str(name))
            for name, value in data.items()
        }
    if isinstance(data, list):
        return [
            substitute_variables(value, variables, file=file, key=f"{key}[{index}]")
            for index, value in enumerate(data)
        ]
    if not isinstance(data, str):
        return data

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return variables[name]
        if name in os.environ:
            return os.environ[name]
        raise ConfigError(file, key, f"variable ${{{name}}} is not set (pass --var {name}=VALUE)")

    return _VARIABLE.sub(value_of, data)


def parse_variables(pairs: list[str] | None) -> dict[str, str]:
    """``NAME=VALUE`` strings (``--var``) as a mapping; a malformed one raises ValueError."""
    variables = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"expected NAME=VALUE, got {pair!r}")
        variables[name] = value
    return variables


def load_config(path: str | os.PathLike[str], variables: dict[str, str] | None = None) -> Config:
    """Read and validate a YAML config file, substituting ``${name}`` (see :func:`substitute_variables`)."""
    file = str(path)
    try:
        with open(file, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(file, "file", "not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(file, "file", f"not valid YAML: {error}") from None
    return parse_config(substitute_variables(data, variables or {}, file=file), file=file)
