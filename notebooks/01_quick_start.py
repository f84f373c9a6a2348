# Databricks notebook source
# MAGIC %md
# MAGIC # lakehouse-idr quick start
# MAGIC
# MAGIC Configure a pipeline, (optionally) train its model, resolve the sources into entities, and query the result.
# MAGIC
# MAGIC * **On Databricks** (the notebooks of a Git folder, or of a deployed bundle): the next cell installs the
# MAGIC   package from the checkout (`%pip install ..`: its dependencies, not pyspark). Set the widgets: `config` to
# MAGIC   `conf/databricks_pipeline.yml` and `variables` to
# MAGIC   `catalog=main,schema=identity_dev,landing=/Volumes/main/identity_dev/landing,model=../conf/models/example_model.json`.
# MAGIC * **Locally**: `idr notebook notebooks/01_quick_start.py` runs it on the bundled sample data
# MAGIC   (`conf/example.yml`, embedded backends: delta-rs and scipy).

# COMMAND ----------

# MAGIC %pip install --quiet ..

# COMMAND ----------

dbutils.widgets.text("config", "conf/example.yml", "Pipeline config (YAML)")
dbutils.widgets.text("variables", "", "Config variables (name=value, comma-separated)")
dbutils.widgets.dropdown("train", "no", ["no", "yes"], "Train the model first")
dbutils.widgets.dropdown("mode", "auto", ["auto", "full", "incremental"], "Run mode")

# COMMAND ----------

# MAGIC %md
# MAGIC ## 1. Configure
# MAGIC The YAML names the sources (where they are, their key, how changes are captured, which column holds which
# MAGIC attribute), the identifier rules, the model and thresholds, and where the output tables go. It is validated
# MAGIC on load: a mistake is one message naming the key.

# COMMAND ----------

from resolution.notebooks import open_pipeline

pipeline = open_pipeline(dbutils.widgets.get("config"), dbutils.widgets.get("variables"))
config = pipeline.config
print("sources:", ", ".join(f"{s.name} ({s.format}, {s.change_tracking})" for s in config.sources))
print("identifier rules:", ", ".join(rule.name for rule in config.identifiers))
print("model:", config.matching.model, "| link >=", config.matching.link_threshold,
      "| review >=", config.matching.review_threshold)
print("tables:", pipeline.store.location.table_id("golden_profiles").replace("golden_profiles", "<table>"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## 2. Train (optional)
# MAGIC Splink's Fellegi-Sunter model is estimated by EM on the sources and saved as JSON (with charts beside it).
# MAGIC EM needs thousands of records: the 31-record sample uses the bundled model, trained on 20,000 generated people.

# COMMAND ----------

if dbutils.widgets.get("train") == "yes":
    from resolution.training import train

    path, report = train(spark, config)
    print("model saved to", path)
    print("\n".join(report.lines()))  # the prior, each level's m, u and weight, what to do about warnings
else:
    print("using the trained model", config.matching.model)

# COMMAND ----------

# MAGIC %md
# MAGIC ## 3. Run
# MAGIC `auto` is a full run the first time and incremental afterwards: only changed records are rescored and only
# MAGIC the entities they touch are re-clustered. Ids are stable; a re-run without changes writes nothing.

# COMMAND ----------

from resolution.pipeline import run_pipeline

summary = run_pipeline(spark, config, mode=dbutils.widgets.get("mode"))
print(summary.one_line())

# COMMAND ----------

# MAGIC %md
# MAGIC ## 4. Query
# MAGIC The output tables are Delta tables (`golden_profiles`, `resolved_membership`, `match_edges`, `review_queue`,
# MAGIC `entity_lineage`, `runs`, ...). This makes them, and the analyst views `customer_360`, `entity_lookup` and
# MAGIC `entity_history`, usable by name in SQL.

# COMMAND ----------

print("SQL names:", ", ".join(pipeline.use_tables_in_sql()))

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT entity_id, record_count, sources, first_name, last_name, email, phones
# MAGIC FROM golden_profiles
# MAGIC ORDER BY record_count DESC, entity_id
# MAGIC LIMIT 10

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT entity_id, records_by_source, open_review_pairs FROM customer_360
# MAGIC WHERE record_count > 1 ORDER BY entity_id

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT run_id, mode, status, records_in, entities, entities_created, entities_merged, started_at, finished_at
# MAGIC FROM runs ORDER BY started_at DESC LIMIT 5

# COMMAND ----------

# Who is behind an email address? (values are standardized: lower case emails, E.164 phones)
some_email = pipeline.table("source_records").where("email IS NOT NULL").orderBy("record_key").first()["email"]
display(spark.sql(f"SELECT * FROM entity_lookup WHERE identifier = 'email' AND value = '{some_email}'"))
