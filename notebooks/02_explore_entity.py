# Databricks notebook source
# MAGIC %md
# MAGIC # Explore an entity
# MAGIC Its records, the links that hold it together with the evidence for each (per comparison), the links that were
# MAGIC cut or left for review, and its history. Set `entity_id` (default: the largest entity), or `lookup` to an
# MAGIC email, phone or other identifier value to find the entity.

# COMMAND ----------

# MAGIC %pip install --quiet ..

# COMMAND ----------

dbutils.widgets.text("config", "conf/example.yml", "Pipeline config (YAML)")
dbutils.widgets.text("variables", "", "Config variables (name=value, comma-separated)")
dbutils.widgets.text("entity_id", "", "Entity id (empty: the largest)")
dbutils.widgets.text("lookup", "", "...or an identifier value (email, E.164 phone, id)")

# COMMAND ----------

from pyspark.sql import functions as F

from resolution.notebooks import open_pipeline

pipeline = open_pipeline(dbutils.widgets.get("config"), dbutils.widgets.get("variables"))
pipeline.use_tables_in_sql()
membership = pipeline.table("resolved_membership")

entity_id = dbutils.widgets.get("entity_id").strip()
lookup = dbutils.widgets.get("lookup").strip()
if not entity_id and lookup:
    found = spark.table("entity_lookup").where(F.col("value") == lookup).select("entity_id").distinct().collect()
    if not found:
        raise ValueError(f"no live record holds {lookup!r} (emails are lower case, phones E.164 like +447911123401)")
    entity_id = found[0]["entity_id"]
if not entity_id:
    largest = membership.groupBy("entity_id").count().orderBy(F.desc("count"), "entity_id").first()
    entity_id = largest["entity_id"]
members = membership.where(F.col("entity_id") == entity_id)
keys = [row["record_key"] for row in members.select("record_key").collect()]
if not keys:
    raise ValueError(f"no entity {entity_id!r} (a retired id? see entity_lineage)")
print(f"entity {entity_id}: {len(keys)} records")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Golden profile and records
# MAGIC The profile's values come from survivorship (source priority, recency or frequency, per attribute). The
# MAGIC primary record is the anchor whose id the entity carries.

# COMMAND ----------

display(pipeline.table("golden_profiles").where(F.col("entity_id") == entity_id))
records = pipeline.table("source_records").where(F.col("record_key").isin(keys))
display(
    records.join(members.select("record_key", "is_primary"), "record_key")
    .drop("row_hash", "run_id", "updated_at")
    .orderBy(F.desc("is_primary"), "record_key")
)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Why these records are one person
# MAGIC Every link between its records: the identifier rule that found it (or `model`, or `accepted` by a reviewer),
# MAGIC the match probability and weight, and the comparison level each attribute reached.

# COMMAND ----------

edges = pipeline.table("match_edges").where(F.col("record_key_l").isin(keys) | F.col("record_key_r").isin(keys))
inside = edges.where(F.col("record_key_l").isin(keys) & F.col("record_key_r").isin(keys))
display(inside.select("record_key_l", "record_key_r", "rule", "status", "match_probability", "match_weight")
        .orderBy(F.desc("match_weight")))
evidence = inside.select("record_key_l", "record_key_r", "rule", F.explode("comparison_levels").alias("comparison", "level"))
display(evidence.groupBy("record_key_l", "record_key_r", "rule").pivot("comparison").agg(F.first("level"))
        .orderBy("record_key_l", "record_key_r"))

# COMMAND ----------

import math

import matplotlib.pyplot as plt

# The entity as a graph: records on a circle, links coloured by the rule that made them.
edge_rows = inside.select("record_key_l", "record_key_r", "rule").collect()
position = {key: (math.cos(2 * math.pi * i / len(keys)), math.sin(2 * math.pi * i / len(keys)))
            for i, key in enumerate(sorted(keys))}
rules = sorted({row["rule"] for row in edge_rows})
colours = {rule: plt.cm.tab10(i) for i, rule in enumerate(rules)}
fig, ax = plt.subplots(figsize=(6, 6))
for row in edge_rows:
    (x1, y1), (x2, y2) = position[row["record_key_l"]], position[row["record_key_r"]]
    ax.plot([x1, x2], [y1, y2], color=colours[row["rule"]], linewidth=2, label=row["rule"])
for key, (x, y) in position.items():
    ax.scatter([x], [y], s=300, color="white", edgecolor="black", zorder=3)
    ax.annotate(key, (x, y), textcoords="offset points", xytext=(0, 12), ha="center")
handles, labels = ax.get_legend_handles_labels()
ax.legend(dict(zip(labels, handles)).values(), dict(zip(labels, handles)).keys(), loc="lower right")
ax.set_title(f"entity {entity_id}: {len(keys)} records, {len(edge_rows)} links")
ax.margins(0.25)
ax.axis("off")
display(fig)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Links not followed
# MAGIC Pairs with one record inside and one outside: review-band pairs (a reviewer decides them in the review
# MAGIC notebook) and links cut by a cannot-link constraint or a reviewer's rejection.

# COMMAND ----------

display(pipeline.table("review_queue").where(F.col("record_key_l").isin(keys) | F.col("record_key_r").isin(keys)))
display(pipeline.table("cut_edges").where(F.col("record_key_l").isin(keys) | F.col("record_key_r").isin(keys)))

# COMMAND ----------

# MAGIC %md
# MAGIC ## History
# MAGIC When each record joined, and the merges and splits the id went through (`entity_lineage`: MERGED, RETIRED,
# MAGIC SPLIT). Delta time travel (`DESCRIBE HISTORY resolved_membership`) holds every earlier state.

# COMMAND ----------

display(spark.table("entity_history").where(
    (F.col("entity_id") == entity_id) | F.col("related").isin(entity_id)
).orderBy("occurred_at", "event", "related"))
