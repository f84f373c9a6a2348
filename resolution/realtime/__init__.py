"""Real-time resolve: one record in, its entity out, without Spark (``idr serve``).

The service loads the published tables with delta-rs, standardizes a record the way the batch
does (:mod:`.standardize`), finds candidates with the same identifier and blocking rules
(:mod:`.state`), scores them with the same Splink model on DuckDB (:mod:`.scorer`), decides as
the next batch run would (:mod:`.resolver`) and commits the record to an inbox Delta table that
the batch ingests as a source (:mod:`.inbox`) before answering (:mod:`.service`).
"""
