# Databricks notebook source
# MAGIC %md
# MAGIC # Work the review queue
# MAGIC Pairs the model scored between the review and link thresholds wait here, with both records side by side and
# MAGIC the evidence. Decide them in the `decisions` widget, one per line or separated by `;`:
# MAGIC
# MAGIC ```
# MAGIC accept crm:C010 support:T512
# MAGIC reject ecommerce:O1012 support:T512
# MAGIC ```
# MAGIC
# MAGIC Decisions go to the `review_decisions` Delta table (who, when, why) and the next run honours them: an
# MAGIC accepted pair is linked (rule `accepted`), a rejected pair is never in one entity, whatever other links say.
# MAGIC The latest decision on a pair counts. SQL works too:
# MAGIC `INSERT INTO review_decisions VALUES ('crm:C010', 'support:T512', 'accept', 'me', current_timestamp(), 'same person')`.

# COMMAND ----------

# MAGIC %pip install --quiet ..

# COMMAND ----------

dbutils.widgets.text("config", "conf/example.yml", "Pipeline config (YAML)")
dbutils.widgets.text("variables", "", "Config variables (name=value, comma-separated)")
dbutils.widgets.text("decisions", "", "accept|reject <record_key> <record_key>; ...")
dbutils.widgets.text("reviewer", "", "Your name (stored with the decisions)")
dbutils.widgets.dropdown("apply_now", "yes", ["yes", "no"], "Run the pipeline after deciding")

# COMMAND ----------

from pyspark.sql import functions as F

from resolution.notebooks import open_pipeline

pipeline = open_pipeline(dbutils.widgets.get("config"), dbutils.widgets.get("variables"))
queue = pipeline.table("review_queue").where(F.col("status") == "open")
print(f"{queue.count()} open pair(s)")

# COMMAND ----------

# MAGIC %md
# MAGIC ## The open pairs, records side by side

# COMMAND ----------

attributes = [name for name in pipeline.config.attributes]
records = pipeline.table("source_records").select("record_key", *attributes)
membership = pipeline.table("resolved_membership").select("record_key", "entity_id")


def side(suffix):
    renamed = records.join(membership, "record_key")
    return renamed.select(*[F.col(c).alias(f"{c}_{suffix}") for c in renamed.columns])


pairs = (
    queue.join(side("l"), "record_key_l")
    .join(side("r"), "record_key_r")
    .orderBy(F.desc("match_probability"), "record_key_l", "record_key_r")
)
columns = ["record_key_l", "record_key_r", "match_probability"]
for name in ["entity_id", *attributes]:
    columns += [f"{name}_l", f"{name}_r"]
display(pairs.select(*columns))
display(queue.select("record_key_l", "record_key_r", F.explode("comparison_levels").alias("comparison", "level"))
        .groupBy("record_key_l", "record_key_r").pivot("comparison").agg(F.first("level")))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Decide

# COMMAND ----------

from resolution.review import decide_pairs

text = dbutils.widgets.get("decisions").replace(";", "\n")
decided = []
for line in (line.strip() for line in text.splitlines()):
    if not line:
        continue
    parts = line.split()
    if len(parts) != 3 or parts[0] not in ("accept", "reject"):
        raise ValueError(f"a decision is 'accept|reject <record_key> <record_key>', got {line!r}")
    decided.append(parts)
for decision in ("accept", "reject"):
    pairs_decided = [(left, right) for kind, left, right in decided if kind == decision]
    if pairs_decided:
        reviewer = dbutils.widgets.get("reviewer") or None
        decide_pairs(spark, pipeline.store, pairs_decided, decision, decided_by=reviewer, note="review notebook")
print(f"recorded {len(decided)} decision(s)")
if pipeline.store.exists("review_decisions"):
    display(pipeline.table("review_decisions").orderBy(F.desc("decided_at")).limit(20))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Apply
# MAGIC The next run (this cell, or the scheduled job) re-clusters the entities of the decided pairs only.

# COMMAND ----------

from resolution.pipeline import run_pipeline

if decided and dbutils.widgets.get("apply_now") == "yes":
    summary = run_pipeline(spark, pipeline.config, mode="incremental")
    print(summary.one_line())
    keys = sorted({key for _, left, right in decided for key in (left, right)})
    display(pipeline.table("resolved_membership").where(F.col("record_key").isin(keys)).orderBy("entity_id", "record_key"))
