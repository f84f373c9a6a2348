"""``idr init``: a commented starter pipeline YAML guessed from a sample of each source.

The first rows of each source are read without Spark (pyarrow for CSV and Parquet, delta-rs
for Delta), so the command answers in a second or two. Per source it guesses the key, the
timestamp and which columns hold emails, phones, names, birth dates, postcodes, addresses and
identity ids, and gives columns of the same meaning the same standard attribute in every
source (``buyer_email`` and ``requester_email`` are both ``email``). Values are judged with the
Python rendering of the batch standardization (:mod:`resolution.rules`), so "values
parse as dates" means the run will parse them too. The YAML is built as text (its comments say
why each guess was made), validated with :func:`resolution.config.load_config`, then written.

Comments carry counts, never sampled values: a starter config tends to be committed, and
customer emails do not belong in a repository.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from resolution.config import (
    DEFAULT_ATTRIBUTE_KINDS,
    DEFAULT_DATE_FORMATS,
    load_config,
    parse_config,
)
from resolution.rules import key_text, matches_any, parse_date_value, standardize_email_value

SAMPLE_ROWS = 1000
MAX_GROUP_SIZE = 20
# The junk lists of conf/example.yml (tests/test_starter.py keeps them equal): shared or
# placeholder mailboxes, and phones matched on their raw digits as well as their E.164 form.
EMAIL_EXCLUDES = ("noreply@%", "no-reply@%", "donotreply@%", "test@example.com")
PHONE_EXCLUDES = ("0000000000", "1234567890", "+440000000000")
# dd/MM/yyyy is a default format and wins first: a source whose slash dates only parse month
# first gets this list instead.
MONTH_FIRST_DATE_FORMATS = ("MM/dd/yyyy", *(f for f in DEFAULT_DATE_FORMATS if f != "dd/MM/yyyy"))

COMMENT_COLUMN = 34  # where trailing comments start, as in conf/example.yml


class StarterError(ValueError):
    """A source cannot be sampled or the output cannot be written; the message names which."""


# --- column names ---------------------------------------------------------------------------

_EMAIL_WORDS = {"email", "mail", "emailaddress", "emails"}
_PHONE_WORDS = {"phone", "mobile", "tel", "telephone", "cell", "cellphone", "msisdn", "landline", "telno"}
_BIRTH_WORDS = {"dob", "birth", "birthday", "birthdate", "born", "bday", "dateofbirth"}
_FIRST_WORDS = {"first", "given", "fname", "forename", "forenames", "firstname", "givenname"}
_MIDDLE_WORDS = {"middle", "mname", "middlename"}
_LAST_WORDS = {"last", "surname", "family", "lname", "lastname", "familyname"}
_FULL_NAME_WORDS = {"name", "fullname", "displayname", "contactname", "customername", "personname"}
_NOT_PERSON_WORDS = {
    "company", "business", "org", "organisation", "organization", "product", "item", "file", "user",
    "username", "host", "store", "shop", "brand", "street", "city", "country", "campaign", "account",
    "bank", "domain", "event", "team", "group", "plan", "category", "job", "title", "pet", "school",
    "employer", "list", "table", "column", "source", "town",
}
_POSTCODE_WORDS = {"postcode", "postal", "zip", "zipcode", "postalcode"}
_ADDRESS_WORDS = {"address", "addr", "street", "line1", "addressline", "addressline1", "address1", "line2",
                  "addressline2", "address2", "house", "houseno", "housenumber", "building"}
_NOT_ADDRESS_WORDS = {"ip", "mac", "web", "url", "mail", "email", "wallet"}
_CITY_WORDS = {"city", "town"}
_ID_WORDS = {"id", "no", "num", "nr", "number", "ref", "reference", "key", "code", "uuid", "guid", "pk", "card"}
# identity ids shared across systems: the standard attribute each one maps to
_IDENTITY_WORDS = {
    "customer": "customer_id", "cust": "customer_id", "loyalty": "loyalty_id", "member": "member_id",
    "membership": "member_id", "account": "account_id", "acct": "account_id", "passport": "passport_id",
    "national": "national_id", "nino": "national_id", "ssn": "national_id", "tax": "tax_id",
    "licence": "licence_id", "license": "licence_id", "patient": "patient_id",
}
# words of a column that identifies a row of its own source (a record id, not a person id)
_RECORD_WORDS = {
    "contact", "order", "ticket", "record", "row", "transaction", "txn", "event", "case", "request",
    "message", "lead", "visit", "booking", "invoice", "application", "submission", "entry", "line",
    "subscription", "subscriber", "signup", "registration", "sale", "purchase", "enquiry", "inquiry",
    "claim", "interaction", "call", "session",
}
_TIME_WORDS = {
    "created", "updated", "modified", "timestamp", "ts", "time", "date", "datetime", "at", "on",
    "inserted", "changed", "loaded", "received", "registered", "opened", "placed", "submitted",
    "joined", "when", "signup",
}
_CREATED_WORDS = {"created", "inserted", "registered", "opened", "received", "placed", "submitted", "joined", "signup"}
_UPDATED_WORDS = {"updated", "modified", "changed", "loaded"}


def column_words(column: str) -> tuple[str, ...]:
    """The lower-case words of a column name: ``buyerFirst`` and ``buyer_first`` -> buyer, first."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", column)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return tuple(word for word in re.split(r"[^a-z0-9]+", spaced.lower()) if word)


def _named(words: tuple[str, ...], vocabulary: set[str]) -> bool:
    """A word of the name, or the whole name run together (``FirstName`` -> firstname)."""
    return bool(set(words) & vocabulary) or "".join(words) in vocabulary


def _is_id_named(words: tuple[str, ...]) -> bool:
    return bool(set(words) & _ID_WORDS)


# --- values ---------------------------------------------------------------------------------

_NAME_VALUE = re.compile(r"[^\W\d_]+(?:[ '\-’.]+[^\W\d_]+)*\.?")
_PHONE_VALUE = re.compile(r"\+?[\d\s\-().]+")


def looks_like_email(value: str) -> bool:
    """Shaped like an email the way the run standardizes emails (trimmed, lower-cased)."""
    return standardize_email_value(value) is not None


def looks_like_phone(value: str) -> bool:
    """Digits, ``+``, spaces, dashes, dots or brackets, with 7 to 15 digits (E.164's longest)."""
    digits = sum(char.isdigit() for char in value)
    return _PHONE_VALUE.fullmatch(value.strip()) is not None and 7 <= digits <= 15


def looks_like_name(value: str) -> bool:
    """Letters (any script), with spaces, hyphens, apostrophes or dots between words."""
    return _NAME_VALUE.fullmatch(value.strip()) is not None and len(value.split()) <= 5


def parses_as_date(value: str, formats: Sequence[str] = DEFAULT_DATE_FORMATS) -> bool:
    """True when the run would parse the value as a date or timestamp with ``formats``."""
    if parse_date_value(value, formats) is not None:
        return True
    try:  # the zone part ([XXX]) of the first default format, which the Python rendering leaves out
        datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value or " " in value.strip()


def _share(values: Sequence[str], test: Callable[[str], bool]) -> tuple[int, float]:
    hits = sum(1 for value in values if test(value))
    return hits, hits / len(values) if values else 0.0


# --- a source's sample ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """The first rows of a source as text (what Spark's CSV reader gives), and how to read it.

    ``types``: ``string``, ``date`` (a date or timestamp column), ``number`` or ``other``
    (nested or binary: never mapped). ``change_data_feed``: a Delta table with
    ``delta.enableChangeDataFeed`` on. ``options``: reader options the source needs (a CSV
    separator other than a comma).
    """

    format: str
    columns: tuple[str, ...]
    values: dict[str, list[str | None]]
    types: dict[str, str]
    rows: int
    change_data_feed: bool = False
    options: dict[str, str] = field(default_factory=dict)

    def present(self, column: str) -> list[str]:
        """The column's non-empty values, trimmed."""
        return [value.strip() for value in self.values[column] if value is not None and value.strip()]


def _arrow_type(arrow_type) -> str:
    import pyarrow as pa

    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "number"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return "string"
    return "other"


def _as_text(value: object) -> str | None:
    """A sampled value as the run would read it as text (dates ISO); nested values: None."""
    if isinstance(value, bytes | dict | list):
        return None
    return key_text(value)


def _sample_of(table, *, fmt: str, change_data_feed: bool = False, options=None) -> Sample:
    types = {name: _arrow_type(table.schema.field(name).type) for name in table.column_names}
    values = {
        name: [_as_text(value) if types[name] != "other" else None for value in table.column(name).to_pylist()]
        for name in table.column_names
    }
    return Sample(fmt, tuple(table.column_names), values, types, table.num_rows, change_data_feed, options or {})


def _sniff_separator(path: Path) -> str:
    """The header line's most frequent of ``, ; | tab``: Spark's CSV reader needs ``sep`` for the others."""
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        header = handle.readline()
    counts = {sep: header.count(sep) for sep in (",", ";", "|", "\t")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] > counts[","] else ","


def _read_csv(path: Path, rows: int) -> Sample:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise ValueError("the folder holds no .csv files")
    separator = _sniff_separator(files[0])
    with open(files[0], encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle, delimiter=separator), None)
    if not header:
        raise ValueError("the file is empty (Spark reads the first line as the column names)")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise ValueError(f"column {duplicates[0]!r} appears more than once in the header")
    reader = pacsv.open_csv(
        files[0],
        parse_options=pacsv.ParseOptions(delimiter=separator),
        # every column as text, empty as null: what the run's CSV reader gives
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=True
        ),
    )
    batches, count = [], 0
    for batch in reader:
        batches.append(batch)
        count += batch.num_rows
        if count >= rows:
            break
    table = pa.Table.from_batches(batches, schema=reader.schema).slice(0, rows)
    options = {} if separator == "," else {"sep": separator}
    return _sample_of(table, fmt="csv", options=options)


def _read_parquet(path: Path, rows: int) -> Sample:
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(path), format="parquet", partitioning="hive")
    if path.is_dir() and not dataset.files:
        raise ValueError("the folder holds no Parquet files")
    return _sample_of(dataset.head(rows), fmt="parquet")


def _read_delta(path: Path, rows: int) -> Sample:
    from deltalake import DeltaTable

    from resolution.store.base import CHANGE_DATA_FEED_PROPERTY

    table = DeltaTable(str(path))
    feed = table.metadata().configuration.get(CHANGE_DATA_FEED_PROPERTY, "false").lower() == "true"
    return _sample_of(table.to_pyarrow_dataset().head(rows), fmt="delta", change_data_feed=feed)


def source_format(path: Path) -> str:
    """``delta`` (a folder with ``_delta_log``), ``parquet`` or ``csv``, from the path alone."""
    if path.is_dir():
        if (path / "_delta_log").is_dir():
            return "delta"
        if any(path.glob("*.csv")) and not any(path.rglob("*.parquet")):
            return "csv"
        return "parquet"
    if path.suffix.lower() == ".csv":
        return "csv"
    if path.suffix.lower() in (".parquet", ".pq"):
        return "parquet"
    with open(path, "rb") as handle:
        return "parquet" if handle.read(4) == b"PAR1" else "csv"


def read_sample(name: str, location: str, *, rows: int = SAMPLE_ROWS) -> Sample:
    """The first ``rows`` rows of a source (CSV file or folder, Parquet file or folder, Delta
    folder), without Spark. A path that is missing or cannot be read raises StarterError."""
    path = Path(location)
    if not path.exists():
        raise StarterError(f"source {name!r}: {location} does not exist")
    fmt = "a source"
    try:
        fmt = source_format(path)
        reader = {"csv": _read_csv, "parquet": _read_parquet, "delta": _read_delta}[fmt]
        sample = reader(path, rows)
    except Exception as error:  # pyarrow, delta-rs and the OS each raise their own types
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StarterError(f"source {name!r}: cannot read {location} as {fmt}: {message}") from error
    if not sample.columns:
        raise StarterError(f"source {name!r}: {location} has no columns")
    return sample


# --- what a column is -----------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnGuess:
    """What one column holds: the standard attribute and kind it maps to (None: not mapped),
    why, and how sure (2: its name and its values agree, 1: one of them)."""

    column: str
    attribute: str | None
    kind: str | None
    reason: str
    strength: int = 1
    parts: tuple[str, ...] = ()  # a composite attribute: the columns joined into one value


def classify_column(column: str, values: Sequence[str | None], *, column_type: str = "string") -> ColumnGuess:
    """Guess the standard attribute of one column from its name and its sampled values.

    Values decide where they can (emails, dates, names); the name decides between attributes
    whose values look alike (first or last name, a phone or an id). A column whose name says
    one thing and whose values say another is left unmapped, with the reason.
    """
    evidence = _Evidence(column, values, column_type)
    for detect in _DETECTORS:
        guess = detect(evidence)
        if guess is not None:
            return guess
    return ColumnGuess(column, None, None, "no attribute recognised")


class _Evidence:
    """A column's name words and sampled values; each value test's share is computed once."""

    def __init__(self, column: str, values: Sequence[str | None], column_type: str):
        self.column = column
        self.column_type = column_type
        self.words = column_words(column)
        self.present = [value.strip() for value in values if value is not None and value.strip()]
        self.total = len(self.present)
        self._shares: dict[Callable[[str], bool], tuple[int, float]] = {}

    def share(self, test: Callable[[str], bool]) -> tuple[int, float]:
        """(hits, share) of the present values that pass ``test``."""
        if test not in self._shares:
            self._shares[test] = _share(self.present, test)
        return self._shares[test]

    def counted(self, hits: int) -> str:
        return f"{hits} of {self.total} sampled values"

    def named(self, vocabulary: set[str]) -> bool:
        return _named(self.words, vocabulary)

    def id_named(self) -> bool:
        return _is_id_named(self.words)

    def birth_named(self) -> bool:
        return self.named(_BIRTH_WORDS) or ("date" in self.words and "birth" in "".join(self.words))

    def name_like(self) -> bool:
        """No values, or most of them shaped like names."""
        return not self.present or self.share(looks_like_name)[1] >= 0.8


# Each detector returns a guess (mapped or not: the search stops) or None (ask the next one).
# Their order is the precedence: a column named like an email whose values are phones is judged
# by the email detector, never the phone one.


def _guess_from_type(evidence: _Evidence) -> ColumnGuess | None:
    if evidence.column_type == "other":
        return ColumnGuess(evidence.column, None, None, "nested or binary values")
    if evidence.column_type == "date":
        if evidence.birth_named():
            return ColumnGuess(evidence.column, "dob", "date", "a date column named like a date of birth", 2)
        return ColumnGuess(evidence.column, None, None, "a date/timestamp column, not a birth date")
    return None


def _guess_email(evidence: _Evidence) -> ColumnGuess | None:
    emails, email_share = evidence.share(looks_like_email)
    if email_share >= 0.8:
        strength = 2 if evidence.named(_EMAIL_WORDS) else 1
        return ColumnGuess(evidence.column, "email", "email", f"values look like emails ({evidence.counted(emails)})", strength)
    if evidence.named(_EMAIL_WORDS) or "email" in "".join(evidence.words):
        if not evidence.present or email_share >= 0.5:
            why = f"named like an email ({evidence.counted(emails)} look like one)" if evidence.present else "named like an email"
            return ColumnGuess(evidence.column, "email", "email", why)
        return ColumnGuess(evidence.column, None, None, f"named like an email, but only {evidence.counted(emails)} look like one")
    return None


def _guess_birth_date(evidence: _Evidence) -> ColumnGuess | None:
    if not evidence.birth_named():
        return None
    dates, date_share = evidence.share(parses_as_date)
    us_dates, us_share = _share(evidence.present, lambda value: parses_as_date(value, MONTH_FIRST_DATE_FORMATS))
    if not evidence.present:
        return ColumnGuess(evidence.column, "dob", "date", "named like a date of birth (no values sampled)")
    if date_share >= 0.8 or us_share >= 0.8:
        why = f"named like a date of birth; {evidence.counted(max(dates, us_dates))} parse as dates"
        if date_share >= 0.8 and any(re.fullmatch(r"\d{2}/\d{2}/\d{4}", value) for value in evidence.present):
            why += " (read day first: dd/MM/yyyy)"
        return ColumnGuess(evidence.column, "dob", "date", why, 2)
    return ColumnGuess(evidence.column, None, None, f"named like a date of birth, but only {evidence.counted(dates)} parse as dates")


def _guess_phone_by_name(evidence: _Evidence) -> ColumnGuess | None:
    if not (evidence.named(_PHONE_WORDS) or "phone" in "".join(evidence.words)):
        return None
    phones, phone_share = evidence.share(looks_like_phone)
    if not evidence.present or phone_share >= 0.5:
        why = f"named like a phone; {evidence.counted(phones)} look like phone numbers" if evidence.present else "named like a phone"
        return ColumnGuess(evidence.column, "phone", "phone", why, 2 if evidence.present else 1)
    return ColumnGuess(evidence.column, None, None, f"named like a phone, but only {evidence.counted(phones)} look like one")


def _guess_postcode(evidence: _Evidence) -> ColumnGuess | None:
    if evidence.named(_POSTCODE_WORDS) or ("post" in evidence.words and "code" in evidence.words):
        return ColumnGuess(evidence.column, "postcode", "postcode", "named like a postcode", 1)
    return None


def _guess_person_name(evidence: _Evidence) -> ColumnGuess | None:
    names = evidence.share(looks_like_name)[0]
    for vocabulary, attribute, label in (
        (_FIRST_WORDS, "first_name", "a first name"),
        (_MIDDLE_WORDS, "middle_name", "a middle name"),
        (_LAST_WORDS, "last_name", "a last name"),
    ):
        if evidence.named(vocabulary) and not evidence.id_named():
            if evidence.name_like():
                why = f"named like {label}; {evidence.counted(names)} look like names" if evidence.present else f"named like {label}"
                return ColumnGuess(evidence.column, attribute, "name", why, 2 if evidence.present else 1)
            return ColumnGuess(evidence.column, None, None, f"named like {label}, but only {evidence.counted(names)} look like names")
    if not (evidence.named(_FULL_NAME_WORDS) and not set(evidence.words) & _NOT_PERSON_WORDS and not evidence.id_named()):
        return None
    if not (evidence.present and evidence.name_like()):
        return None
    multiword, multi_share = _share(evidence.present, lambda value: len(value.split()) >= 2)
    if multi_share >= 0.5:
        return ColumnGuess(
            evidence.column, "full_name", "name",
            f"named like a name; {evidence.counted(multiword)} are two or more words (a full name)", 2,
        )
    return ColumnGuess(evidence.column, None, None, "named like a name, but the values are single words: "
                       "map it as first_name or last_name by hand")


def _guess_address_or_city(evidence: _Evidence) -> ColumnGuess | None:
    if evidence.named(_ADDRESS_WORDS) and not set(evidence.words) & _NOT_ADDRESS_WORDS:
        return ColumnGuess(evidence.column, "address", "address", "named like an address")
    if evidence.named(_CITY_WORDS) and evidence.name_like():
        return ColumnGuess(evidence.column, "city", "text", "named like a city (kept in the golden profile, not matched)")
    return None


def _guess_identity_id(evidence: _Evidence) -> ColumnGuess | None:
    identity = [_IDENTITY_WORDS[word] for word in evidence.words if word in _IDENTITY_WORDS]
    if not (identity and (evidence.id_named() or len(evidence.words) == 1)):
        return None
    distinct = len(set(evidence.present))
    if evidence.total >= 20 and distinct <= 3:
        return ColumnGuess(evidence.column, None, None, f"named like an id, but only {distinct} distinct values: a category")
    return ColumnGuess(evidence.column, identity[0], "id", f"named like a {identity[0].removesuffix('_id')} id", 1)


def _guess_from_values(evidence: _Evidence) -> ColumnGuess | None:
    """A name that says nothing: dates are not mapped, formatted phone numbers are."""
    date_share = evidence.share(parses_as_date)[1]
    if evidence.present and not evidence.id_named() and date_share >= 0.8:
        return ColumnGuess(evidence.column, None, None, "dates, not a birth date")
    phones, phone_share = evidence.share(looks_like_phone)
    formatted = any(value.startswith(("+", "0")) or re.search(r"[\s\-()]", value) for value in evidence.present)
    if evidence.column_type == "string" and not evidence.id_named() and phone_share >= 0.8 and formatted and date_share < 0.5:
        return ColumnGuess(evidence.column, "phone", "phone", f"values look like phone numbers ({evidence.counted(phones)})")
    return None


_DETECTORS: tuple[Callable[[_Evidence], ColumnGuess | None], ...] = (
    _guess_from_type, _guess_email, _guess_birth_date, _guess_phone_by_name, _guess_postcode,
    _guess_person_name, _guess_address_or_city, _guess_identity_id, _guess_from_values,
)


# --- a source's key, timestamp and change tracking -------------------------------------------


@dataclass(frozen=True)
class Choice:
    """A guessed column and why; ``certain`` False adds a TODO to the YAML."""

    column: str
    reason: str
    certain: bool = True


def _problems(sample: Sample, column: str) -> tuple[int, int]:
    """(duplicated values, empty values) of a column in the sample."""
    present = sample.present(column)
    return len(present) - len(set(present)), sample.rows - len(present)


def guess_key(source: str, sample: Sample, guesses: dict[str, ColumnGuess]) -> Choice:
    """The column that identifies a row: id-named, unique and never empty in the sample.

    Among those, one named after the source's records (``order_id`` in ``orders``,
    ``ticket_ref``) wins over a person id (``customer_id``), which links records rather than
    naming them. With none unique, the best id-named column (else the first) is kept with a
    TODO: rows with a duplicate or empty key are rejected by the run.
    """
    own_words = set(column_words(source)) | {word.removesuffix("s") for word in column_words(source)}
    mapped_kinds = {"email", "phone", "name", "date", "postcode", "address", "text"}
    candidates = [
        column for column in sample.columns
        if (_is_id_named(column_words(column)) or column.lower() in ("id", "key", "pk", "uuid", "guid"))
        and guesses[column].kind not in mapped_kinds
    ]

    def record_named(column: str) -> bool:
        words = set(column_words(column))
        return bool(words & (_RECORD_WORDS | own_words)) or words <= {"id", "key", "pk", "uuid", "guid"}

    def rank(column: str):
        duplicates, empty = _problems(sample, column)
        unique = sample.rows > 0 and duplicates == 0 and empty == 0
        return (not unique, not record_named(column), guesses[column].kind == "id",
                duplicates + empty, sample.columns.index(column))

    if not candidates:
        return Choice(sample.columns[0], "TODO: no column is named like an id; the first column is a "
                      "placeholder: choose one that identifies a row", certain=False)
    best = min(candidates, key=rank)
    duplicates, empty = _problems(sample, best)
    if sample.rows and not duplicates and not empty:
        reason = f"unique and never empty in {sample.rows} sampled rows"
        if record_named(best):
            reason += ", named like a record id"
        passed = [c for c in candidates if c != best and record_named(c) and not record_named(best)]
        for column in passed[:1]:
            column_duplicates, column_empty = _problems(sample, column)
            reason += f" ({column} is not: {column_duplicates} duplicated, {column_empty} empty)"
        return Choice(best, reason)
    return Choice(best, f"TODO: not unique in {sample.rows} sampled rows ({duplicates} duplicated, "
                  f"{empty} empty values; no id-named column is): the run rejects rows with a duplicate "
                  "or empty key (rejected_records); choose the column that identifies a row", certain=False)


def guess_timestamp(sample: Sample, guesses: dict[str, ColumnGuess], *, formats=DEFAULT_DATE_FORMATS) -> Choice | None:
    """The source timestamp (anchor order and recency): a date/timestamp column, not a birth date.

    A creation time is preferred: the anchor of an entity (the oldest record, whose key is
    the entity id) then stays put when records are updated. An update time comes last.
    """
    found = []
    for position, column in enumerate(sample.columns):
        if guesses[column].attribute is not None:
            continue
        words = set(column_words(column))
        present = sample.present(column)
        typed = sample.types[column] == "date"
        hits, share = _share(present, lambda value: parses_as_date(value, formats))
        time_named = bool(words & _TIME_WORDS)
        if not (typed or (present and share >= 0.8 and (time_named or not _is_id_named(tuple(words))))):
            continue
        order = 0 if words & _CREATED_WORDS else 2 if words & _UPDATED_WORDS else 1 if time_named else 3
        found.append((order, position, column, typed, hits, len(present)))
    if not found:
        return None
    found.sort()
    _, _, column, typed, hits, total = found[0]
    reason = "a timestamp column" if typed else f"{hits} of {total} sampled values parse as timestamps"
    if not typed and hits < total:
        reason += f"; the run rejects rows whose value does not parse ({total - hits} sampled)"
    if found[0][0] == 0:
        reason += "; a creation time keeps entity ids stable"
    others = [entry[2] for entry in found[1:3]]
    if others:
        reason += f"; also: {', '.join(others)}"
    return Choice(column, reason)


def guess_phone_region(phones: Sequence[str]) -> tuple[str | None, str]:
    """The region most sampled phone numbers belong to, and why (None: no clue)."""
    import phonenumbers

    votes: Counter[str] = Counter()
    for raw in phones:
        digits = re.sub(r"\D", "", raw)
        text = raw.strip()
        if text.startswith(("+", "00")):
            try:
                number = phonenumbers.parse("+" + digits.removeprefix("00") if text.startswith("00") else text, None)
            except phonenumbers.NumberParseException:
                continue
            # the country code's main region: +44 7911 is GB, not the Guernsey range it falls in
            region = phonenumbers.region_code_for_country_code(number.country_code)
            if region and region != "ZZ":
                votes[region] += 1
        elif digits.startswith("07") and len(digits) == 11:
            votes["GB"] += 1
        elif (len(digits) == 10 and digits[0] not in "01") or (len(digits) == 11 and digits.startswith("1")):
            votes["US"] += 1
    if not votes:
        return None, "no phone number in the samples tells the region"
    region, count = votes.most_common(1)[0]
    return region, f"{count} of {sum(votes.values())} sampled phone numbers with a telling prefix are {region}"


# --- the whole guess ------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceGuess:
    """Everything guessed about one source, ready to render."""

    name: str
    location: str  # as it goes into the YAML
    sample: Sample
    priority: int
    key: Choice
    timestamp: Choice | None
    change_tracking: str
    tracking_reason: str
    mapped: dict[str, ColumnGuess]  # standard attribute -> its column's guess
    unmapped: tuple[ColumnGuess, ...]
    date_formats: tuple[str, ...] | None = None  # None: the defaults


def guess_source(name: str, location: str, sample: Sample, *, priority: int) -> SourceGuess:
    """Key, timestamp, change tracking and attribute mapping of one sampled source."""
    guesses = {
        column: classify_column(column, sample.values[column], column_type=sample.types[column])
        for column in sample.columns
    }
    month_first = any(  # slash dates that parse only month first: the source needs date_formats
        guess.kind == "date" and sample.types[column] == "string" and sample.present(column)
        and _share(sample.present(column), parses_as_date)[1] < 0.8
        for column, guess in guesses.items()
    )
    formats = MONTH_FIRST_DATE_FORMATS if month_first else None
    mapped: dict[str, ColumnGuess] = {}
    unmapped: list[ColumnGuess] = []
    # the surest column of an attribute wins it; the others are listed as not mapped
    ranked = sorted(guesses.values(), key=lambda g: (-g.strength, sample.columns.index(g.column)))
    address_parts = [g.column for g in guesses.values() if g.attribute == "address"]
    if len(address_parts) > 1:  # street number, street name, line 2...: one address, compared once
        parts = tuple(sorted(address_parts, key=sample.columns.index))
        ranked = [g for g in ranked if g.attribute != "address"] + [ColumnGuess(
            parts[0], "address", "address",
            f"{', '.join(parts)} are named like parts of an address: joined into one (compared as two, "
            "the model would count one address twice)", parts=parts)]
    for guess in ranked:
        if guess.attribute is None:
            continue
        if guess.attribute in mapped:
            unmapped.append(ColumnGuess(guess.column, None, None, f"also looks like {guess.attribute} "
                                        f"({guess.reason}); a source maps one column per attribute"))
        else:
            mapped[guess.attribute] = guess
    key = guess_key(name, sample, guesses)
    timestamp = guess_timestamp(sample, guesses, formats=formats or DEFAULT_DATE_FORMATS)
    roles = {key.column: "the key", **({timestamp.column: "the timestamp"} if timestamp else {})}
    for column in sample.columns:
        guess = guesses[column]
        if guess.attribute is not None:
            continue
        reason = roles.get(column) or guess.reason
        if column not in roles and _is_id_named(column_words(column)) and guess.kind is None:
            duplicates, empty = _problems(sample, column)
            reason = (f"named like an id, not the key ({duplicates} duplicated, {empty} empty in the sample)"
                      if duplicates or empty else "named like an id of no known identity kind (customer, loyalty, ...)")
        unmapped.append(ColumnGuess(column, None, None, reason))
    order = {attribute: sample.columns.index(guess.column) for attribute, guess in mapped.items()}
    mapped = dict(sorted(mapped.items(), key=lambda item: order[item[0]]))
    unmapped.sort(key=lambda guess: sample.columns.index(guess.column))
    if sample.format == "delta" and sample.change_data_feed:
        tracking, why = "delta_cdf", "the table has delta.enableChangeDataFeed = true: each run reads only its changes"
    elif sample.format == "delta":
        tracking, why = "snapshot", ("the change data feed is off: each run compares the whole table "
                                     "(set delta.enableChangeDataFeed = true, then delta_cdf)")
    else:
        tracking, why = "snapshot", f"a {sample.format} source: each run compares all of it with the last run"
    path = location if ("/" in location or location.startswith(".")) else f"./{location}"
    return SourceGuess(name, path, sample, priority, key, timestamp, tracking, why, mapped, tuple(unmapped), formats)


# --- rendering ------------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z_./~][A-Za-z0-9_./~\-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _scalar(value: str) -> str:
    """A YAML scalar for ``value``: plain when safe, else double-quoted (JSON escapes are YAML's)."""
    import json

    if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value, ensure_ascii=False)


def _line(text: str, comment: str | None = None, *, width: int = 110) -> str:
    """``text`` with a trailing comment at column 34, wrapped onto aligned comment lines."""
    import textwrap

    if not comment:
        return text
    comment = comment.replace("\n", " ")
    if len(text) > COMMENT_COLUMN + 6:  # a long line (a list): its comment goes above it
        indent = " " * (len(text) - len(text.lstrip()))
        parts = textwrap.wrap(comment, width=width - len(indent) - 2)
        return "\n".join([*(f"{indent}# {part}" for part in parts), text])
    head = text.ljust(COMMENT_COLUMN - 2) + "  "
    parts = textwrap.wrap(comment, width=max(40, width - len(head) - 2))
    indent = " " * COMMENT_COLUMN
    return "\n".join([f"{head}# {parts[0]}", *(f"{indent}# {part}" for part in parts[1:])])


def _flow_list(items: Sequence[str]) -> str:
    import json

    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def _junk_count(guesses: Sequence[SourceGuess], attribute: str, patterns: Sequence[str]) -> int:
    count = 0
    for guess in guesses:
        if attribute not in guess.mapped:
            continue
        for value in guess.sample.present(guess.mapped[attribute].column):
            if attribute == "email":
                count += matches_any(standardize_email_value(value), patterns)
            else:
                count += matches_any(value, patterns) or matches_any(re.sub(r"[^0-9]", "", value), patterns)
    return count


# identity numbers typed by hand on forms (compared by the model as codes, besides any rule)
TYPED_IDS = ("national_id", "tax_id", "passport_id", "licence_id")


@dataclass(frozen=True)
class Matching:
    """The model section a starter writes when names or dates are mapped."""

    model: str
    comparisons: dict[str, str]
    blocking_rules: tuple[tuple[str, ...], ...]
    em_blocking_rules: tuple[tuple[str, ...], ...]


def plan_matching(attributes: Sequence[str], *, model: str) -> Matching | None:
    """Comparisons, blocking and EM rules for the mapped attributes; None without names or dates.

    Each EM pass estimates the comparisons outside its rule, so the identifier pass (email or
    phone) and the name pass between them estimate every comparison.
    """
    have = set(attributes)
    kinds = {"first_name": "name", "middle_name": "name", "last_name": "name", "full_name": "name",
             "dob": "date", "email": "email", "phone": "phone", "postcode": "postcode", "address": "address"}
    if not have & {"first_name", "last_name", "full_name", "dob"}:
        return None
    comparisons = {attribute: kind for attribute, kind in kinds.items() if attribute in have}
    # numbers people type by hand (a national or tax id) carry copy errors: the model weighs
    # them, a typo included, where an identifier rule would link on the exact value alone
    typed = [attribute for attribute in TYPED_IDS if attribute in have]
    comparisons.update(dict.fromkeys(typed, "code"))
    blocking = [(attribute,) for attribute in typed]
    if "last_name" in have:
        blocking.append(("last_name",))
    if "first_name" in have and "dob" in have:
        blocking.append(("first_name", "dob"))
    if "full_name" in have:
        blocking.append(("full_name",))
    if "dob" in have and "postcode" in have:
        blocking.append(("dob", "postcode"))
    if not blocking:
        blocking.append(("dob",))
    names = tuple(a for a in ("first_name", "last_name") if a in have) or (
        ("full_name",) if "full_name" in have else ("dob",))
    em = [(identifier,) for identifier in ("email", "phone", *typed) if identifier in have][:1]
    em.append(names)
    return Matching(model, comparisons, tuple(blocking), tuple(em))


def render_config(
    guesses: Sequence[SourceGuess],
    *,
    output: str,
    warehouse: str,
    phone_region: str,
    region_reason: str,
    matching: Matching | None,
    matching_active: bool = False,
) -> str:
    """The starter YAML, every guess commented. ``matching_active`` writes the model section
    as YAML rather than commented out (only where a trained model exists or nothing else links)."""
    attributes = list(dict.fromkeys(a for guess in guesses for a in guess.mapped))
    kinds = {a: g.mapped[a].kind for g in guesses for a in g.mapped}
    lines = _storage_lines(output=output, warehouse=warehouse, phone_region=phone_region,
                           region_reason=region_reason)
    for guess in guesses:
        lines += _source_lines(guess)
    lines += _attribute_lines(attributes, kinds)
    lines += _identifier_lines(guesses, attributes, kinds)
    if matching is not None:
        lines += _model_lines(matching, output=output, active=matching_active)
    if "dob" in attributes:
        lines += [
            "# cannot_link:                    # records that must never share an entity (docs/configuration.md)",
            "#   attributes: [dob]             # different non-null birth dates: different people",
            "#   tolerate: {dob: [day_month_swap, one_edit]}   # ...unless one is the other mistyped",
            "",
        ]
    lines += _survivorship_lines(guesses, attributes)
    return "\n".join(lines) + "\n"


def _storage_lines(*, output: str, warehouse: str, phone_region: str, region_reason: str) -> list[str]:
    """The header, ``storage``, ``phone_region`` and the ``sources:`` key."""
    return [
        f"# Starter pipeline written by `idr init` from the first {SAMPLE_ROWS} rows (at most) of each source.",
        "# Every guess below says why it was made: check them, correct what is wrong, then run",
        f"#   idr run --config {output}",
        "# Paths are relative to the directory idr runs in. Every key: docs/configuration.md.",
        "",
        "storage:",
        _line(f"  warehouse: {_scalar(warehouse)}", "local folder of Delta tables (embedded default)"),
        "  # catalog: main                 # or: Unity Catalog / metastore tables catalog.schema.<table>",
        "  # schema: identity",
        _line("  backend: auto", "auto: delta-spark + GraphFrames when their JVM packages load,"),
        " " * COMMENT_COLUMN + "# else deltalake (delta-rs) + scipy; or: embedded | jvm",
        "",
        _line(f"phone_region: {phone_region}", f"default region of numbers without a country code: {region_reason}"),
        "",
        "sources:",
    ]


def _source_lines(guess: SourceGuess) -> list[str]:
    """One entry of ``sources``, then a blank line."""
    sample = guess.sample
    lines = [
        _line(f"  - name: {guess.name}", f"{sample.rows} rows sampled"),
        f"    format: {sample.format}",
        f"    path: {_scalar(guess.location)}",
        _line(f"    key: {_scalar(guess.key.column)}", guess.key.reason),
    ]
    if guess.timestamp is not None:
        lines.append(_line(f"    timestamp: {_scalar(guess.timestamp.column)}",
                           f"source timestamp (anchor and recency): {guess.timestamp.reason}"))
    else:
        lines.append("    # timestamp: none found (no column of dates): anchors fall back to source priority,")
        lines.append("    #   then record key, and freshness checks skip this source")
    lines.append(_line(f"    change_tracking: {guess.change_tracking}", guess.tracking_reason))
    lines.append(_line(f"    priority: {guess.priority}", "lower wins in survivorship and anchor ties (--source order)"))
    for option, value in sample.options.items():
        lines.append(_line(f"    options: {{{option}: {_scalar(value)}}}", "the header's separator"))
    if guess.date_formats is not None:
        lines.append(_line(f"    date_formats: {_flow_list(guess.date_formats)}",
                           "slash dates that parse only month first"))
    lines.append(_line("    columns:", "standard attribute: source column"))
    for attribute, column_guess in guess.mapped.items():
        mapped = _flow_list(column_guess.parts) if column_guess.parts else _scalar(column_guess.column)
        lines.append(_line(f"      {attribute}: {mapped}", column_guess.reason))
    if guess.unmapped:
        lines.append("    # not mapped:")
        for column_guess in guess.unmapped:
            lines.append(f"    #   {column_guess.column.replace(chr(10), ' ')}: {column_guess.reason}")
    lines.append("")
    return lines


def _attribute_lines(attributes: Sequence[str], kinds: dict[str, str | None]) -> list[str]:
    """``attributes``: only those whose kind is not the default for their name."""
    declared = [a for a in attributes if DEFAULT_ATTRIBUTE_KINDS.get(a) != kinds[a]]
    if not declared:
        return []
    return [
        _line("attributes:", "kind of each attribute (defaults by name; others are ids)"),
        *(f"  {attribute}: {kinds[attribute]}" for attribute in declared),
        "",
    ]


def _identifier_lines(
    guesses: Sequence[SourceGuess], attributes: Sequence[str], kinds: dict[str, str | None]
) -> list[str]:
    """``identifiers``: one deterministic rule per email, phone or id attribute."""
    rules = [a for a in attributes if kinds[a] in ("email", "phone", "id")]
    if not rules:
        return []
    lines = [_line("identifiers:", "deterministic rules: a shared value links two records")]
    for attribute in rules:
        mapped_by = ", ".join(f"{g.name}.{'+'.join(g.mapped[attribute].parts) or g.mapped[attribute].column}" for g in guesses if attribute in g.mapped)
        lines.append(f"  - name: {attribute}")
        lines.append(_line(f"    attribute: {attribute}", mapped_by))
        patterns = {"email": EMAIL_EXCLUDES, "phone": PHONE_EXCLUDES}.get(kinds[attribute])
        if patterns:
            junk = _junk_count(guesses, attribute, patterns)
            what = "shared or placeholder mailboxes" if kinds[attribute] == "email" else "placeholder numbers"
            lines.append(_line(f"    exclude: {_flow_list(patterns)}",
                               f"{what}; {junk} sampled values match" if junk else what))
        lines.append(_line(f"    max_group_size: {MAX_GROUP_SIZE}", "a value shared by more records is junk"))
        if attribute in TYPED_IDS:
            lines.append(f"    # typed by hand, a {attribute} carries copy errors (a relative's number, a slipped digit) that")
            lines.append("    # this rule links on as sure: once the model is trained (it compares it as a code), consider")
            lines.append("    # dropping the rule")
    lines.append("")
    return lines


def _model_lines(matching: Matching, *, output: str, active: bool) -> list[str]:
    """``matching``, live or commented out behind the steps that make it work, then a blank line."""
    block = _matching_lines(matching)
    if active:
        return [*block, ""]
    lines = _paragraph(
        "The model (Splink) links records that share no identifier, by names and dates. "
        f"`idr run` fails while its model file ({matching.model}) does not exist, so this "
        "section starts commented out and the identifier rules above resolve alone. To add the model:"
    )
    lines += [
        "#   1. uncomment the section below (remove one '# ' from each line);",
        f"#   2. idr train --config {output}",
        "#      (EM needs thousands of records: a sample of a few dozen is too small);",
        f"#   3. idr run --config {output} --mode full",
    ]
    lines += ["# " + line if line else "#" for line in block]
    lines.append("")
    return lines


def _survivorship_lines(guesses: Sequence[SourceGuess], attributes: Sequence[str]) -> list[str]:
    """``survivorship``: the newest email and phone win where sources have timestamps."""
    arrays = [a for a in ("email", "phone") if a in attributes]
    timestamps = any(guess.timestamp is not None for guess in guesses)
    lines = ["survivorship:", _line("  default: source_priority", "source_priority | most_recent | most_frequent")]
    if arrays and timestamps:
        lines.append(_line("  attributes:", "the newest email and phone win (people change them)"))
        lines += [f"    {attribute}: most_recent" for attribute in arrays]
    lines.append(_line(f"  arrays: [{', '.join(arrays)}]", "golden profile keeps all values, primary record's first"))
    return lines


def _paragraph(text: str, *, width: int = 100) -> list[str]:
    import textwrap

    return [f"# {line}" for line in textwrap.wrap(text, width=width - 2)]


def _matching_lines(matching: Matching) -> list[str]:
    lines = [
        "matching:",
        f"  model: {_scalar(matching.model)}",
        _line("  comparisons:", "attribute: name | given_name | email | phone | date | postcode |"),
        " " * COMMENT_COLUMN + "# address | code | exact (given_name: name + nicknames)",
    ]
    lines += [f"    {attribute}: {kind}" for attribute, kind in matching.comparisons.items()]
    lines.append(_line("  blocking_rules:", "candidate pairs for the model (beyond the identifier rules)"))
    lines += [f"    - [{', '.join(rule)}]" for rule in matching.blocking_rules]
    lines += [
        _line("  link_threshold: 0.95", "p >= this: linked (auto: the threshold idr train proposes, see docs)"),
        _line("  review_threshold: 0.5", "review_threshold <= p < link_threshold: review queue"),
        "  max_entity_size: 500",
        "  training:",
        "    max_pairs: 1.0e6",
        "    seed: 42",
        _line("    em_blocking_rules:", "each EM pass estimates the comparisons not in its rule"),
    ]
    lines += [f"      - [{', '.join(rule)}]" for rule in matching.em_blocking_rules]
    return lines


# --- the command ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StarterConfig:
    """What ``idr init`` wrote: the file, its text and the guesses behind it."""

    path: Path
    text: str
    sources: tuple[SourceGuess, ...]
    phone_region: str
    region_reason: str
    identifiers: tuple[str, ...]
    matching: Matching | None
    matching_active: bool

    def summary(self) -> list[str]:
        """A few lines for the terminal: what was guessed, and the next commands."""
        out = [f"wrote {self.path} (validated by the config loader)"]
        for guess in self.sources:
            timestamp = guess.timestamp.column if guess.timestamp else "none"
            mapping = ", ".join(f"{a}={'+'.join(g.parts) or g.column}" for a, g in guess.mapped.items()) or "nothing"
            todo = " (TODO: check the key)" if not guess.key.certain else ""
            out.append(f"  {guess.name} ({guess.sample.format}, {guess.sample.rows} rows sampled, "
                       f"{guess.change_tracking}): key {guess.key.column}{todo}, timestamp {timestamp}; {mapping}")
            roles = {guess.key.column, guess.timestamp.column if guess.timestamp else None}
            unmapped = [g.column for g in guess.unmapped if g.column not in roles]
            if unmapped:
                out.append("    not mapped: " + ", ".join(unmapped))
        out.append(f"  phone_region {self.phone_region} ({self.region_reason})")
        out.append("  identifier rules: " + (", ".join(self.identifiers) or "none"))
        if self.matching is None:
            out.append("  model: none (no names or dates mapped)")
        elif self.matching_active:
            out.append(f"  model: {self.matching.model}, to train before the first run: idr train --config {self.path}")
        else:
            out.append(f"  model: commented out (uncomment it, then idr train --config {self.path})")
        out.append("next:")
        if self.matching_active:
            out.append(f"  idr train --config {self.path}")
        out.append(f"  idr run --config {self.path}")
        out.append(f"  idr show --config {self.path} --table resolved_membership")
        return out


_SOURCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")


def parse_source_argument(text: str) -> tuple[str, str]:
    """``NAME=PATH`` (``--source``) as (name, path); a bare path is named after its file."""
    name, sep, path = text.partition("=")
    if not sep:
        path = text
        name = re.sub(r"[^a-z0-9]+", "_", Path(text.rstrip("/")).stem.lower()).strip("_") or "source"
        if not name[0].isalpha():
            name = f"source_{name}"
    if not path:
        raise StarterError(f"--source {text!r}: expected NAME=PATH, e.g. crm=data/sample/crm_contacts.csv")
    if not _SOURCE_NAME.fullmatch(name):
        raise StarterError(f"--source {text!r}: a source name is a letter then letters, digits, _ or -")
    return name, path


def write_starter_config(
    sources: Sequence[tuple[str, str]],
    output: str | os.PathLike[str],
    *,
    warehouse: str = "./lakehouse",
    phone_region: str | None = None,
    force: bool = False,
    sample_rows: int = SAMPLE_ROWS,
) -> StarterConfig:
    """Sample each ``(name, path)`` source, guess its config and write the commented YAML.

    Refuses (StarterError) a missing or unreadable source, a duplicate source name, sources
    with nothing to link on, and an existing ``output`` unless ``force``. The text is loaded
    with :func:`load_config` before it replaces ``output``; an error there is a bug here.
    """
    output_path = Path(output)
    _check_arguments(sources, output_path, phone_region=phone_region, force=force)
    guesses = tuple(
        guess_source(name, location, read_sample(name, location, rows=sample_rows), priority=priority)
        for priority, (name, location) in enumerate(sources, start=1)
    )
    attributes = list(dict.fromkeys(a for guess in guesses for a in guess.mapped))
    region, region_reason = _choose_phone_region(guesses, phone_region)
    kinds = {a: g.mapped[a].kind for g in guesses for a in g.mapped}
    identifiers = tuple(a for a in attributes if kinds[a] in ("email", "phone", "id"))
    model = (output_path.parent / "models" / f"{output_path.stem}_model.json").as_posix()
    matching = plan_matching(attributes, model=model)
    if not identifiers and matching is None:
        raise StarterError(
            "found no email, phone, identity id, name or birth-date column in "
            + ", ".join(f"{name} ({location})" for name, location in sources)
            + ": nothing would link records; map columns by hand (docs/configuration.md)"
        )
    # Without identifier rules the model is the only link: its section must be live (a run
    # then needs `idr train` first); with them it starts commented out, so `idr run` works now.
    active = not identifiers

    def render(with_matching: bool) -> str:
        return render_config(guesses, output=output_path.as_posix(), warehouse=warehouse, phone_region=region,
                             region_reason=region_reason, matching=matching, matching_active=with_matching)

    text = render(active)
    if matching is not None and not active:  # the section the user is told to uncomment must load too
        parse_config(yaml.safe_load(render(True)), file=f"{output_path} (matching uncommented)")
    _write_validated(output_path, text)
    return StarterConfig(output_path, text, guesses, region, region_reason, identifiers, matching, active)


def _check_arguments(
    sources: Sequence[tuple[str, str]], output_path: Path, *, phone_region: str | None, force: bool
) -> None:
    """Refuse, before any source is read, what ``idr init`` cannot write."""
    if output_path.is_dir():
        raise StarterError(f"{output_path} is a folder: give the YAML file to write")
    if output_path.exists() and not force:
        raise StarterError(f"{output_path} already exists: pass --force to overwrite it")
    if not sources:
        raise StarterError("give at least one --source NAME=PATH")
    names = [name for name, _ in sources]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise StarterError(f"source name {duplicates[0]!r} is given more than once")
    if phone_region is not None and not re.fullmatch(r"[A-Za-z]{2}", phone_region):
        raise StarterError(f"--phone-region {phone_region!r}: a two-letter region code such as GB or US")


def _choose_phone_region(guesses: Sequence[SourceGuess], phone_region: str | None) -> tuple[str, str]:
    """``phone_region`` and why: the one given, else guessed from the mapped phones, else US."""
    if phone_region is not None:
        return phone_region.upper(), "given with --phone-region"
    phones = [value for guess in guesses if "phone" in guess.mapped
              for value in guess.sample.present(guess.mapped["phone"].column)]
    region, region_reason = guess_phone_region(phones)
    if not phones:
        return "US", "no phone column mapped, so the default US (matters once one is)"
    if region is None:
        return "US", f"a guess ({region_reason}): pass --phone-region or edit it"
    return region, region_reason


def _write_validated(output_path: Path, text: str) -> None:
    """Write ``text`` beside ``output_path``, load it as a config, then move it into place."""
    try:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{output_path.name}.", suffix=".tmp", dir=output_path.parent)
    except OSError as error:
        raise StarterError(f"cannot write {output_path}: {error}") from error
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        load_config(temporary)  # a ConfigError here is a bug of this module: let it raise
        os.replace(temporary, output_path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
