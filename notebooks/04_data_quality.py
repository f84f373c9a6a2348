# Databricks notebook source
# MAGIC %md
# MAGIC # Data quality of the identity graph
# MAGIC Entity sizes, match weights, links by rule, run history, freshness, and the checks that fail a job
# MAGIC (`idr check`, run after every `idr run`).

# COMMAND ----------

# MAGIC %pip install --quiet ..

# COMMAND ----------

dbutils.widgets.text("config", "conf/example.yml", "Pipeline config (YAML)")
dbutils.widgets.text("variables", "", "Config variables (name=value, comma-separated)")

# COMMAND ----------

import matplotlib.pyplot as plt
from pyspark.sql import functions as F

from resolution.notebooks import open_pipeline

pipeline = open_pipeline(dbutils.widgets.get("config"), dbutils.widgets.get("variables"))
membership = pipeline.table("resolved_membership")
edges = pipeline.table("match_edges")
runs = pipeline.table("runs")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Entity sizes
# MAGIC Most people have a record or two per source. A long tail of large entities usually means a junk identifier
# MAGIC (a shared office phone, a placeholder email): check `identifiers[].exclude` and `max_group_size`.

# COMMAND ----------

sizes = membership.groupBy("entity_id").count().groupBy(F.col("count").alias("records")).count().orderBy("records")
display(sizes)
rows = sizes.collect()
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.bar([r["records"] for r in rows], [r["count"] for r in rows], color="#4C72B0")
if max(r["count"] for r in rows) > 100:
    ax.set_yscale("log")  # the tail of large entities stays visible
ax.xaxis.get_major_locator().set_params(integer=True)
ax.set_xlabel("records in the entity")
ax.set_ylabel("entities")
ax.set_title(f"{membership.select('entity_id').distinct().count()} entities, {membership.count()} records")
display(fig)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Match weights and links by rule
# MAGIC Model scores of every stored pair (links and review pairs), with the thresholds. A bimodal histogram with few
# MAGIC pairs in between is a model that separates well; a hump at the review threshold fills the review queue.

# COMMAND ----------

import math

config = pipeline.config.matching
scored = edges.where(F.col("match_weight").isNotNull()).select("status", "match_weight").toPandas()
fig, ax = plt.subplots(figsize=(7, 3.5))
for status, colour in (("link", "#55A868"), ("review", "#DD8452")):
    weights = scored.loc[scored.status == status, "match_weight"].clip(-20, 40)
    if len(weights):
        ax.hist(weights, bins=40, alpha=0.7, label=f"{status} ({len(weights)})", color=colour)
for name, probability in (("link", config.link_threshold), ("review", config.review_threshold)):
    weight = math.log2(probability / (1 - probability)) if probability < 1 else 40
    ax.axvline(weight, linestyle="--", color="grey")
    ax.annotate(f"{name} threshold", (weight, ax.get_ylim()[1] * 0.9), rotation=90, ha="right")
ax.set_xlabel("match weight (log2 Bayes factor with the prior)")
ax.set_ylabel("pairs")
ax.legend()
display(fig)

by_rule = edges.where(F.col("status") == "link").groupBy("rule").count().orderBy(F.desc("count"))
display(by_rule)
rows = by_rule.collect()
fig, ax = plt.subplots(figsize=(7, 2.5))
ax.barh([r["rule"] for r in rows], [r["count"] for r in rows], color="#8172B2")
ax.set_xlabel("links")
ax.set_title("links by the rule that made them")
display(fig)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Run history
# MAGIC Every run, its mode and status, what it read and changed, and how long each stage took.

# COMMAND ----------

history = runs.orderBy("started_at").select(
    "run_id", "mode", "status", "started_at", "finished_at", "records_in", "records_new", "records_updated",
    "records_deleted", "records_rejected", "entities", "entities_created", "entities_merged", "entities_split",
    "largest_entity", F.aggregate(F.map_values("stage_seconds"), F.lit(0.0), lambda a, b: a + b).alias("seconds"),
    "error",
)
display(history.orderBy(F.desc("started_at")))
done = history.where(F.col("status") == "SUCCEEDED").toPandas()
if len(done):
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(range(len(done)), done["seconds"], marker="o", label="seconds")
    ax.set_xticks(range(len(done)), [f"{m}\n{str(t)[:16]}" for m, t in zip(done["mode"], done["started_at"])],
                  fontsize=7)
    ax.set_ylabel("seconds")
    ax.set_title("duration of successful runs")
    display(fig)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Freshness
# MAGIC Per source: its newest record (by the source's timestamp column) and when the pipeline last changed one of
# MAGIC its records. `quality.freshness` in the config turns the first into a check that fails the job.

# COMMAND ----------

freshness = (
    pipeline.table("source_records")
    .groupBy("source")
    .agg(
        F.count(F.lit(1)).alias("live_records"),
        F.max("source_timestamp").alias("newest_record"),
        F.max("updated_at").alias("last_changed_by_a_run"),
    )
    .withColumn("newest_record_age_hours",
                F.round((F.unix_timestamp(F.current_timestamp()) - F.unix_timestamp("newest_record")) / 3600, 1))
    .orderBy("source")
)
display(freshness)
last = runs.where((F.col("status") == "SUCCEEDED") & ~F.col("mode").contains("dry run")).agg(F.max("finished_at")).first()[0]
print("last successful run finished at", last, "UTC")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Checks
# MAGIC The checks `idr run` performs after each run (a failure exits with code 4 and fails the job): one entity per
# MAGIC live record, no orphaned rows, no entity above the size limit, few entities holding two birth dates or ids
# MAGIC (over-merging seen without truth), the entity size distribution against the last check, fresh sources.

# COMMAND ----------

from resolution.quality import run_checks, summary_line

results = run_checks(pipeline.store, pipeline.config)
for result in results:
    print(result.line())
print(summary_line(results))
if pipeline.store.exists("quality_checks"):
    display(pipeline.table("quality_checks").orderBy(F.desc("checked_at"), "check_name").limit(20))
