"""A small world of sources on disk that tests change batch by batch, and run pipelines over.

Two sources: ``crm`` (a CSV snapshot) and ``kyc`` (an audit CSV of INSERT/UPDATE/DELETE events).
Identifiers are drawn from small pools, so updates move records between groups and deletes
remove the records that bridge them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from resolution import schemas as S
from resolution.config import Config, parse_config

REPO = Path(__file__).resolve().parents[1]
# dissimilar strings, so the model's fuzzy email levels do not link different addresses
EMAILS = [
    "ann.lee@alpha.example",
    "bo.ray@beta.example",
    "cat.kim@gamma.example",
    "dan.fox@delta.example",
    "eve.moss@epsilon.example",
    "finn.ode@zeta.example",
]
PHONES = [f"+4479111234{i:02d}" for i in range(6)]
NAMES = [("ann", "lee"), ("bob", "ray"), ("cat", "kim"), ("dan", "fox")]
DOBS = ["", "1980-01-01", "1990-02-02"]
CRM_COLUMNS = ["id", "first", "last", "email", "phone", "created", "dob"]
KYC_COLUMNS = [*CRM_COLUMNS, "op", "op_time"]


@dataclass
class World:
    """The sources' current content; ``write`` puts it on disk for the next run."""

    folder: Path
    crm: dict[str, list[str]] = field(default_factory=dict)
    kyc_events: list[list[str]] = field(default_factory=list)
    clock: int = 0
    dobs: bool = False  # give records birth dates (by key), so cannot-link constraints bite
    dob_values: tuple[str, ...] = tuple(DOBS)  # the birth dates keys draw from ("" for none)

    def record(self, key: str, name: int, email: int | None, phone: int | None) -> list[str]:
        first, last = NAMES[name % len(NAMES)]
        return [
            key,
            first,
            last,
            EMAILS[email] if email is not None else "",
            PHONES[phone] if phone is not None else "",
            f"2024-01-{int(key.lstrip('ck')) % 28 + 1:02d}",
            self.dob_of(key) if self.dobs else "",
        ]

    def dob_of(self, key: str) -> str:
        """The birth date of the record ``key`` (``c3``, ``k2``: by its number)."""
        return self.dob_values[int(key.lstrip("ck")) % len(self.dob_values)]

    def upsert_crm(self, key: str, name: int, email: int | None, phone: int | None) -> None:
        self.crm[key] = self.record(key, name, email, phone)

    def delete_crm(self, key: str) -> None:
        self.crm.pop(key, None)

    def kyc_event(self, op: str, key: str, name: int, email, phone, *, minutes_ago: int = 0) -> None:
        """Append an audit event; ``minutes_ago`` > 0 makes it arrive late (out of order)."""
        self.clock += 10
        stamp = self.clock - minutes_ago
        self.kyc_events.append(
            [*self.record(key, name, email, phone), op, f"2024-06-01 {stamp // 60:02d}:{stamp % 60:02d}:00"]
        )

    def write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, columns, rows in (
            ("crm.csv", CRM_COLUMNS, list(self.crm.values())),
            ("kyc.csv", KYC_COLUMNS, self.kyc_events),
        ):
            with open(self.folder / name, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(columns)
                writer.writerows(rows)


COLUMNS = {"first_name": "first", "last_name": "last", "email": "email", "phone": "phone", "dob": "dob"}


def pipeline_document(
    sources: list[dict], warehouse: Path, *, backend: str = "embedded", model: bool = True
) -> dict:
    """A config document over ``sources`` with email/phone identifier rules and the example model
    (``model=False``: no ``matching`` section, the rules resolve alone).

    ``backend`` is explicit: the test session has Delta's JVM package, so ``auto`` would pick it.
    """
    document = {
        "phone_region": "GB",
        "storage": {"warehouse": str(warehouse), "backend": backend},
        "sources": sources,
        "identifiers": [
            {"name": "email", "attribute": "email", "max_group_size": 4},
            {"name": "phone", "attribute": "phone", "max_group_size": 4},
        ],
        "matching": {
            "model": str(REPO / "conf" / "models" / "example_model.json"),
            "comparisons": {"first_name": "name", "last_name": "name", "email": "email",
                            "phone": "phone", "dob": "date"},
            "blocking_rules": [["last_name"]],
        },
    }
    if not model:
        del document["matching"]
    return document


def pipeline_config(
    sources: list[dict], warehouse: Path, *, file: str, backend: str = "embedded"
) -> Config:
    """The parsed ``pipeline_document``."""
    return parse_config(pipeline_document(sources, warehouse, backend=backend), file=file)


def world_document(
    folder: Path, warehouse: Path, *, cannot_link: dict | None = None, backend: str = "embedded",
    model: bool = True, max_group_size: int = 4,
) -> dict:
    """The world's two sources: a CRM snapshot and a KYC audit table (and ``cannot_link``)."""
    document = pipeline_document(
        [
            {"name": "crm", "format": "csv", "path": str(folder / "crm.csv"), "key": "id",
             "timestamp": "created", "priority": 1, "columns": COLUMNS},
            {"name": "kyc", "format": "csv", "path": str(folder / "kyc.csv"), "key": "id",
             "timestamp": "created", "priority": 2, "columns": COLUMNS,
             "change_tracking": "audit", "operation_column": "op", "operation_time_column": "op_time"},
        ],
        warehouse,
        backend=backend,
        model=model,
    )
    for rule in document["identifiers"]:
        rule["max_group_size"] = max_group_size
    if cannot_link:
        document["cannot_link"] = cannot_link
    return document


def world_config(
    folder: Path, warehouse: Path, *, cannot_link: dict | None = None, backend: str = "embedded",
    model: bool = True, max_group_size: int = 4,
) -> Config:
    """The parsed ``world_document``."""
    document = world_document(folder, warehouse, cannot_link=cannot_link, backend=backend, model=model,
                              max_group_size=max_group_size)
    return parse_config(document, file="world.yml")


def store_of(spark, config: Config):
    """The store of ``config``'s warehouse, on the backend the config names."""
    from resolution.store import open_store

    return open_store(spark, config)


def partition(spark, config: Config) -> dict[str, frozenset[str]]:
    """entity_id -> its record keys, read from the committed membership table."""
    store = store_of(spark, config)
    groups: dict[str, set[str]] = {}
    for row in store.read(S.RESOLVED_MEMBERSHIP).collect():
        groups.setdefault(row[S.ENTITY_ID], set()).add(row[S.RECORD_KEY])
    return {entity: frozenset(keys) for entity, keys in groups.items()}


def primaries(spark, config: Config) -> dict[str, str]:
    """entity_id -> primary record key."""
    store = store_of(spark, config)
    rows = store.read(S.RESOLVED_MEMBERSHIP).filter("is_primary").collect()
    return {row[S.ENTITY_ID]: row[S.RECORD_KEY] for row in rows}


# A Delta source with its change data feed on, for delta_cdf capture and streaming tests.
BILLING_COLUMNS = ["id", "first", "last", "email", "phone", "created", "dob"]


def delta_rows(*rows: list):
    """Billing rows (``BILLING_COLUMNS`` order) as an Arrow table for ``write_deltalake``."""
    import pyarrow as pa

    return pa.table({name: [row[i] for row in rows] for i, name in enumerate(BILLING_COLUMNS)})


def billing_source(path: Path) -> dict:
    """Create the billing Delta table at ``path`` (version 0: b1-b2-b3 one person, b1 and b2
    by email, b1 and b3 by phone) and return its ``delta_cdf`` source entry."""
    from deltalake import write_deltalake

    write_deltalake(
        str(path),
        delta_rows(
            ["b1", "ann", "lee", EMAILS[0], PHONES[0], "2024-01-01", ""],
            ["b2", "bo", "ray", EMAILS[0], None, "2024-01-02", ""],
            ["b3", "cat", "kim", EMAILS[2], PHONES[0], "2024-01-03", ""],
        ),
        configuration={"delta.enableChangeDataFeed": "true"},
    )
    return {"name": "billing", "format": "delta", "path": str(path), "key": "id", "timestamp": "created",
            "change_tracking": "delta_cdf", "columns": COLUMNS}


def change_billing(path: Path) -> None:
    """Three commits: v1 b1 loses its phone (b3's bridge to b1), v2 deletes b2, v3 inserts b4
    with b3's email. The full-recompute partition after them is {b1}, {b3, b4}."""
    from deltalake import DeltaTable, write_deltalake

    table = DeltaTable(str(path))
    table.update(predicate="id = 'b1'", updates={"phone": "NULL"})
    table.delete("id = 'b2'")
    write_deltalake(str(path), delta_rows(["b4", "dan", "fox", EMAILS[2], None, "2024-01-04", ""]), mode="append")


def sample_pipeline_file(folder: Path, *, backend: str = "embedded", **sections) -> Path:
    """conf/example.yml (the sample data) written to ``folder`` with its warehouse left as the
    variable ``${warehouse}`` and absolute paths; ``sections`` replace top-level sections."""
    document = yaml.safe_load((REPO / "conf" / "example.yml").read_text())
    document["storage"]["warehouse"] = "${warehouse}"
    document["storage"]["backend"] = backend
    for source in document["sources"]:
        inbox = source["format"] == "delta"  # the service's inbox lives in the warehouse
        source["path"] = "${warehouse}/inbox" if inbox else str(REPO / source["path"])
    document["matching"]["model"] = str(REPO / document["matching"]["model"])
    document.update(sections)
    path = folder / "pipeline.yml"
    path.write_text(yaml.safe_dump(document))
    return path
