"""Airflow 2.x DAGs for lakehouse-idr: an incremental run every 10 minutes, a full refresh weekly.

Copy this file into the Airflow dags folder. The workers that run the tasks need a checkout in
/opt/lakehouse-idr with the package in its .venv (``python3 -m venv .venv && .venv/bin/pip install
".[spark]"``) and the pipeline config in conf/prod.yml. Airflow is not a dependency of lakehouse-idr.

``idr`` exit codes decide the task state: 0 success; 1 the run failed (recorded FAILED in the
``runs`` table); 2 bad configuration; 3 another run holds the pipeline; 4 a data quality check
failed. Any non-zero code fails a BashOperator task (the incremental one skips on 3 instead).
Both DAGs use the one-slot pool ``lakehouse_idr``, so the weekly full refresh and the incremental
runs never overlap; create it once with ``airflow pools set lakehouse_idr 1 "one idr run at a
time"``. The last line of a run's log is its summary:
``idr run <run_id> SUCCEEDED mode=incremental records=... entities=...``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

DEFAULT_ARGS = {
    "owner": "data-platform",
    "pool": "lakehouse_idr",  # one slot: one idr command at a time across both DAGs
    "retries": 0,  # the next tick (10 minutes later) is the retry
    "execution_timeout": timedelta(hours=2),
}

with DAG(
    dag_id="lakehouse_idr_incremental",
    description="Resolve what changed in the sources into the identity graph",
    schedule="*/10 * * * *",  # Airflow < 2.4: schedule_interval=
    start_date=datetime(2026, 1, 1),
    catchup=False,  # a missed tick needs no replay: the next run reads every change since
    max_active_runs=1,  # never two runs at once (idr would refuse the second with exit 3)
    default_args=DEFAULT_ARGS,
    tags=["identity-resolution"],
) as incremental:
    BashOperator(
        task_id="idr_run",
        bash_command="/opt/lakehouse-idr/.venv/bin/idr run --mode auto --config /opt/lakehouse-idr/conf/prod.yml",
        cwd="/opt/lakehouse-idr",
        skip_on_exit_code=3,  # busy (a run started outside Airflow): skip (Airflow >= 2.6)
    )

    # Alternative on a Spark cluster: submit the job entry point with Splink's similarity jar
    # (path printed by `python -c "from resolution.scoring import similarity_jar_path;
    # print(similarity_jar_path())"`). Needs apache-airflow-providers-apache-spark.
    #
    # from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
    #
    # SparkSubmitOperator(
    #     task_id="idr_run_spark_submit",
    #     conn_id="spark_default",
    #     application="/opt/lakehouse-idr/jobs/run_resolution.py",
    #     application_args=["--mode", "auto", "--config", "/opt/lakehouse-idr/conf/prod.yml"],
    #     jars="/opt/lakehouse-idr/jars/splink-similarity.jar",
    #     # python -m resolution.packages list: the coordinates matching the installed wheels
    #     packages="io.delta:delta-spark_4.2_2.13:4.4.0,io.graphframes:graphframes-spark4_2.13:0.12.3",
    #     conf={
    #         "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    #         "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    #     },
    # )

with DAG(
    dag_id="lakehouse_idr_full_refresh",
    description="Recompute every entity from the current sources, then recreate the SQL views",
    schedule="0 3 * * 0",  # Sundays 03:00 (the scheduler's time zone, UTC by default)
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["identity-resolution"],
) as full_refresh:
    full_run = BashOperator(
        task_id="idr_run_full",
        bash_command="/opt/lakehouse-idr/.venv/bin/idr run --mode full --config /opt/lakehouse-idr/conf/prod.yml",
        cwd="/opt/lakehouse-idr",
    )
    views = BashOperator(
        task_id="idr_views",
        bash_command="/opt/lakehouse-idr/.venv/bin/idr views --config /opt/lakehouse-idr/conf/prod.yml",
        cwd="/opt/lakehouse-idr",
    )
    full_run >> views
