"""SQL views for analysts over the output tables: customer 360, lookup by identifier, history.

``idr views --config F`` creates them: in the catalog schema next to the tables
(``CREATE OR REPLACE VIEW main.identity.customer_360``), or, for a local warehouse of Delta
folders that no metastore knows, as temporary views of the session (with one temporary view
per output table). ``idr views --print`` prints the SQL to paste into a SQL editor.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from resolution import schemas as S
from resolution.config import Config
from resolution.store import DeltaStore

VIEWS = ("customer_360", "entity_lookup", "entity_history")

_CUSTOMER_360 = """
SELECT g.*,
       c.records_by_source,
       coalesce(r.open_review_pairs, 0) AS open_review_pairs
FROM {golden_profiles} g
JOIN (
  SELECT entity_id, map_from_entries(array_sort(collect_list(struct(source, records)))) AS records_by_source
  FROM (SELECT entity_id, source, count(*) AS records FROM {resolved_membership} GROUP BY entity_id, source)
  GROUP BY entity_id
) c ON c.entity_id = g.entity_id
LEFT JOIN (
  SELECT m.entity_id, count(DISTINCT q.record_key_l, q.record_key_r) AS open_review_pairs
  FROM {review_queue} q
  JOIN {resolved_membership} m ON m.record_key IN (q.record_key_l, q.record_key_r)
  WHERE q.status = 'open'
  GROUP BY m.entity_id
) r ON r.entity_id = g.entity_id
"""

_HISTORY = """
SELECT l.entity_id, l.occurred_at, l.run_id, l.event, l.other_entity_id AS related, l.record_count
FROM {entity_lineage} l
UNION ALL
SELECT m.entity_id, m.updated_at AS occurred_at, m.run_id, 'RECORD_JOINED' AS event,
       m.record_key AS related, CAST(NULL AS BIGINT) AS record_count
FROM {resolved_membership} m
"""


def lookup_attributes(config: Config) -> list[str]:
    """The identifiers an entity can be looked up by: email, phone and the identifier rules'."""
    wanted = ["email", "phone", *(rule.attribute for rule in config.identifiers)]
    return [name for name in dict.fromkeys(wanted) if name in config.attribute_kinds]


def view_sql(config: Config, tables: dict[str, str]) -> dict[str, str]:
    """The SELECT of each view, over ``tables`` (output table name -> name to use in SQL)."""
    lookups = "\nUNION ALL\n".join(
        f"SELECT '{name}' AS identifier, CAST(s.{name} AS STRING) AS value, m.entity_id, s.record_key,\n"
        f"       s.source, s.source_id\n"
        f"FROM {tables[S.SOURCE_RECORDS]} s JOIN {tables[S.RESOLVED_MEMBERSHIP]} m ON m.record_key = s.record_key\n"
        f"WHERE s.{name} IS NOT NULL"
        for name in lookup_attributes(config)
    )
    return {
        "customer_360": _CUSTOMER_360.format(**tables).strip(),
        "entity_lookup": lookups,
        "entity_history": _HISTORY.format(**tables).strip(),
    }


def create_views(spark: SparkSession, store: DeltaStore, config: Config) -> list[str]:
    """Create the views (see the module docstring); returns their names as SQL can use them."""
    names = (S.GOLDEN_PROFILES, S.RESOLVED_MEMBERSHIP, S.REVIEW_QUEUE, S.ENTITY_LINEAGE, S.SOURCE_RECORDS)
    missing = [name for name in names if not store.exists(name)]
    if missing:
        raise FileNotFoundError(f"table(s) {', '.join(missing)} missing in {store.location.table_id(missing[0])}: run idr run first")
    if store.location.is_catalog:
        tables = {name: store.location.table_id(name) for name in names}
        created = []
        for view, select in view_sql(config, tables).items():
            qualified = store.location.table_id(view)
            spark.sql(f"CREATE OR REPLACE VIEW {qualified} AS\n{select}")
            created.append(qualified)
        return created
    register_tables(spark, store)
    for view, select in view_sql(config, {name: name for name in names}).items():
        spark.sql(f"CREATE OR REPLACE TEMP VIEW {view} AS\n{select}")
    return list(VIEWS)


def register_tables(spark: SparkSession, store: DeltaStore) -> list[str]:
    """A temporary view per existing output table, under the table's name (local warehouses)."""
    registered = []
    for name in S.OUTPUT_TABLES:
        if store.exists(name):
            store.read(name).createOrReplaceTempView(name)
            registered.append(name)
    return registered
