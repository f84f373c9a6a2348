"""`idr serve` over HTTP on the sample data: known records, new people, the review band,
idempotent re-submits, bad input, storage trouble, a killed service, and the next batch run
agreeing with every answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from deltalake import DeltaTable

from resolution import schemas as S
from resolution.config import load_config
from resolution.pipeline import run_pipeline
from resolution.realtime.inbox import Inbox, inbox_row
from resolution.realtime.service import ResolveService, create_app
from tests.conftest import QUIET, Server, free_port, serve_config_file


@pytest.fixture(scope="module")
def served(published_sample, tmp_path_factory):
    config = published_sample(tmp_path_factory.mktemp("serve"))
    service = ResolveService(config)
    server = Server(create_app(config, service))
    yield config, service, server
    server.stop()


def test_known_new_review_and_idempotent_answers(served):
    config, _, server = served
    known = server.resolve("crm", "C001").json()
    assert (known["entity_id"], known["status"], known["known"], known["stored"]) == ("crm:C001", "found", True, False)
    assert known["latency_ms"] > 0

    linked = server.resolve("web", "w1", email="Alice.Smith@EXAMPLE.com", first_name="Alice").json()
    assert (linked["entity_id"], linked["status"], linked["is_new"], linked["stored"]) == ("crm:C001", "found", False, True)
    assert {m["rule"] for m in linked["matched"]} == {"email"} and linked["confidence"] > 0.99

    new = server.resolve("web", "w2", first_name="Nora", last_name="Quist", email="nora@quist.example").json()
    assert (new["entity_id"], new["status"], new["is_new"]) == ("online:web:w2", "new", True)
    again = server.resolve("web", "w2", first_name="Nora", last_name="Quist", email="nora@quist.example").json()
    assert (again["entity_id"], again["known"], again["stored"]) == ("online:web:w2", True, False)
    second = server.resolve("shop", "s9", email="NORA@quist.example", phone="07911 123499").json()
    assert (second["entity_id"], second["status"]) == ("online:web:w2", "found")  # finds the pending record

    review = server.resolve("web", "w3", first_name="Karen", last_name="Lee").json()
    assert (review["entity_id"], review["status"], review["is_new"]) == ("online:web:w3", "review", True)
    assert {m["entity_id"] for m in review["matched"]} == {"crm:C010", "support:T512"}
    assert {m["status"] for m in review["matched"]} == {"review"}

    inbox = DeltaTable(config.source("online").location).to_pandas()
    assert sorted(inbox.record_id) == ["shop:s9", "web:w1", "web:w2", "web:w3"]  # one row each (so far)

    entity = server.client.get("/v1/entities/online:web:w2").json()
    assert entity["pending"] and {r["record_key"] for r in entity["records"]} == {"online:web:w2", "online:shop:s9"}
    assert server.client.get("/v1/entities/crm:C001").json()["profile"]["record_count"] == 3
    assert server.client.get("/v1/entities/nobody").status_code == 404
    health = server.client.get("/health").json()
    assert health["status"] == "ok" and health["pending_records"] == 4
    metrics = server.client.get("/metrics").text
    assert 'idr_resolve_total{status="review"} 1.0' in metrics
    assert "idr_resolve_latency_seconds_bucket" in metrics


def test_the_same_record_sent_at_once_is_committed_once(served):
    config, _, server = served
    answers: list[dict] = []

    def send() -> None:
        with httpx.Client(base_url=server.client.base_url, timeout=10) as client:
            answers.append(client.post("/v1/resolve", json={
                "source": "web", "source_id": "dup1", "data": {"email": "dup@twice.example", "last_name": "Twice"}
            }).json())

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {a["entity_id"] for a in answers} == {"online:web:dup1"} and len(answers) == 8
    assert sum(a["stored"] for a in answers) == 1  # one request committed, the others shared it
    inbox = DeltaTable(config.source("online").location).to_pandas()
    assert list(inbox.record_id).count("web:dup1") == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"source": "web", "source_id": "b1", "data": {"first_name": "Ann"} | {"x" * 20: "y" * 20000}}, "payload of"),
        ({"source": "web", "source_id": "b1", "data": {"middle_name": "J", "email": "a@b.org"}}, "data.middle_name: unknown field"),
        ({"source": "web", "source_id": "b1", "data": {"email": "not-an-email"}}, "data.email: not a valid email"),
        ({"source": "web", "source_id": "b1", "data": {"phone": "12"}}, "data.phone: not a valid phone"),
        ({"source": "web", "source_id": "b1", "data": {"dob": "31/31/1990", "last_name": "Lee"}}, "data.dob: not a valid date"),
        ({"source": "web", "source_id": "b1", "data": {"customer_note": None}}, "data.customer_note: unknown field"),
        ({"source": "web", "source_id": "b1", "data": {}}, "no identifiers"),
        ({"source": "web", "source_id": " ", "data": {"email": "a@b.org"}}, "source_id: a non-empty string"),
        ({"source": "web", "data": {"email": "a@b.org"}}, "source_id: Field required"),
        ({"source": "web", "source_id": "b1", "data": {"email": ["a@b.org"]}}, "data.email: a string is required"),
        ({"source": "web", "source_id": "b1", "data": {"email": "a@b.org"}, "extra": 1}, "extra: Extra inputs"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(served, body, message):
    _, _, server = served
    response = server.client.post("/v1/resolve", json=body)
    assert response.status_code == 400 and message in response.json()["error"], response.text


def test_a_body_sent_in_chunks_is_limited_too(served):
    """No Content-Length (chunked transfer): the service counts the bytes itself."""
    _, _, server = served
    as_json = {"content-type": "application/json"}

    def chunks(body: bytes):
        yield from (body[i:i + 4096] for i in range(0, len(body), 4096))

    big = json.dumps({"source": "web", "source_id": "c1", "data": {"first_name": "Ann", "note": "y" * 20000}})
    response = server.client.post("/v1/resolve", content=chunks(big.encode()), headers=as_json)
    assert response.status_code == 400 and "more than 16384" in response.json()["error"], response.text
    small = json.dumps({"source": "web", "source_id": "c2", "data": {"email": "ALICE.smith@example.com"}, "persist": False})
    response = server.client.post("/v1/resolve", content=chunks(small.encode()))
    assert response.status_code == 400 and "Content-Type: application/json" in response.json()["error"]
    response = server.client.post("/v1/resolve", content=chunks(small.encode()), headers=as_json)
    assert response.status_code == 200 and response.json()["entity_id"] == "crm:C001", response.text


def test_the_inbox_log_is_cleaned_up_after_its_retention(tmp_path):
    """No Spark: the inbox alone, maintained every 2 commits with a 1-second log retention."""
    config = load_config(serve_config_file(tmp_path, inbox_log_retention="interval 1 second"),
                         {"warehouse": str(tmp_path / "lakehouse")})
    inbox = Inbox(config)
    log = Path(inbox.source.location) / "_delta_log"

    def commit(numbers):
        for n in numbers:
            inbox.submit(inbox_row(inbox.source, channel="web", channel_id=f"r{n}", data={"email": f"r{n}@x.org"},
                                   received_at=datetime.now(timezone.utc))).result()
        while inbox._maintenance is not None and inbox._maintenance.is_alive():
            time.sleep(0.01)

    try:
        commit(range(4))
        time.sleep(1.2)
        commit(range(4, 8))
    finally:
        inbox.close()
    table = DeltaTable(inbox.source.location)
    assert table.metadata().configuration["delta.logRetentionDuration"] == "interval 1 second"
    assert min(int(p.name[:20]) for p in log.glob("*.json")) > 1  # the creation and first appends are gone
    assert sorted(table.to_pandas().channel_id) == [f"r{n}" for n in range(8)]


def test_storage_trouble_is_a_503_within_the_timeout_and_the_retry_is_idempotent(spark, served, tmp_path):
    config, service, _ = served
    impatient = ResolveService(load_config(serve_config_file(tmp_path, timeout_seconds=0.001),
                                           {"warehouse": config.storage.warehouse}))
    server = Server(create_app(impatient.config, impatient))
    try:
        started = time.perf_counter()
        slow = server.resolve("web", "t1", email="tess@t.example", last_name="Tate")
        assert slow.status_code == 503 and "retry with the same source and source_id" in slow.json()["error"]
        assert time.perf_counter() - started < 1.0
        time.sleep(0.5)  # the commit completes behind the answer
        retry = server.resolve("web", "t1", email="tess@t.example", last_name="Tate").json()
        assert retry["known"] and retry["entity_id"] == "online:web:t1"
        inbox = DeltaTable(config.source("online").location).to_pandas()
        assert list(inbox.record_id).count("web:t1") == 1
    finally:
        server.stop()
    missing = ResolveService(load_config(serve_config_file(tmp_path), {"warehouse": str(tmp_path / "empty")}))
    server = Server(create_app(missing.config, missing))
    try:
        assert server.client.get("/health").status_code == 503
        answer = server.resolve("web", "t2", email="a@b.org")
        assert answer.status_code == 503 and "published state unavailable" in answer.json()["error"]
    finally:
        server.stop()


def test_the_next_batch_run_agrees_and_a_killed_service_loses_nothing(spark, served, tmp_path):
    config, service, server = served
    answers = {key: server.resolve("web", key, **data).json()["entity_id"] for key, data in {
        "k1": {"email": "carol.white@example.com", "last_name": "White"},
        "k2": {"first_name": "Umar", "last_name": "Vance", "phone": "+447911000777"},
    }.items()}
    assert answers == {"k1": "crm:C003", "k2": "online:web:k2"}

    # `idr serve` in its own process, killed with SIGKILL right after answering
    port = free_port()
    config_file = tmp_path / "pipeline.yml"
    config_file.write_text(serve_config_file(tmp_path).read_text().replace("${warehouse}", config.storage.warehouse))
    process = subprocess.Popen(
        [sys.executable, "-m", "resolution.cli", "serve", "--config", str(config_file), "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        for _ in range(300):
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        killed = client.post("/v1/resolve", json={"source": "web", "source_id": "k3",
                                                  "data": {"email": "umar@vance.example", "phone": "+447911000777"}})
        assert killed.json()["entity_id"] == "online:web:k2"  # the pending k2 was taken back from the inbox
        answers["k3"] = "online:web:k2"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    expected = {"online:web:w1": "crm:C001", "online:web:w2": "online:web:w2", "online:shop:s9": "online:web:w2",
                "online:web:w3": "online:web:w3", "online:web:dup1": "online:web:dup1",
        **{f"online:web:{k}": v for k, v in answers.items()}}
    before = server.client.get("/health").json()["state"]["versions"]
    run_pipeline(spark, config, **QUIET)
    membership = DeltaTable(f"{config.storage.warehouse}/{S.RESOLVED_MEMBERSHIP}").to_pandas()
    batch = dict(zip(membership.record_key, membership.entity_id, strict=True))
    assert {key: batch.get(key) for key in expected} == expected
    review = DeltaTable(f"{config.storage.warehouse}/{S.REVIEW_QUEUE}").to_pandas()
    assert "online:web:w3" in set(review.record_key_l) | set(review.record_key_r)

    for _ in range(100):  # the service picks up the new table versions by itself, no restart
        health = server.client.get("/health").json()
        if health["state"]["versions"] != before and health["pending_records"] == 0:
            break
        time.sleep(0.2)
    assert health["pending_records"] == 0 and health["state"]["records"] > 31 + len(expected) - 1
    known = server.resolve("web", "w2").json()
    assert (known["entity_id"], known["known"]) == ("online:web:w2", True)
