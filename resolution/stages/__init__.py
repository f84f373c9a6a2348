"""The stages of a run, in order. Each takes the run context and the frozen result of the stage
before, and returns its own (the orchestrator is :func:`resolution.pipeline.run_pipeline`):

    ingest.capture            -> Captured      what changed in each source since the last run
    standardize.standardize   -> Standardized  the changed records standardized; the live records
    score.score               -> Scored        candidate pairs scored and classified: this run's edges
    cluster.cluster           -> Clustered     the affected part of the graph re-clustered, constraints applied
    identify.identify         -> Identified    entity ids by the id policy, lineage events
    profiles.profile          -> Profiled      golden profiles and review pairs of the affected part
    publish.publish                            MERGE what differs into the tables (dry_run: only the diff)
"""
