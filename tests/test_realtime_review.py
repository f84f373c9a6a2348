"""`idr serve` honours reviewers' decisions as the batch does: a rejected pair is never linked
online, an accepted pair is, and a rejection between two candidates keeps the record on the side
of its strongest link. Each answer is checked before the decision too, so each assertion can fail.

Decisions are written to ``review_decisions`` as a SQL ``INSERT`` would: ``idr accept`` /
``idr reject`` only take records already in ``source_records``, and a record posted online is
not there until the next run.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from resolution import schemas as S
from resolution.realtime.service import ResolveService, create_app
from resolution.review import latest_decisions as batch_latest_decisions
from resolution.review import latest_decisions_of
from resolution.store import open_store
from tests.conftest import Server


@pytest.fixture(scope="module")
def served(published_sample, tmp_path_factory):
    config = published_sample(tmp_path_factory.mktemp("review"))
    service = ResolveService(config)
    server = Server(create_app(config, service))
    yield config, server
    server.stop()


def _look_up(server: Server, source_id: str, **data) -> dict:
    """The answer for a record of channel ``web``, not stored (it can be asked again)."""
    body = {"source": "web", "source_id": source_id, "data": data, "persist": False}
    response = server.client.post("/v1/resolve", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _decide(spark, config, server: Server, *decisions: tuple[str, str, str]) -> None:
    """Write ``(key, key, decision)`` rows, low key first as ``idr accept`` writes them, and wait
    for the service to load them (it polls the table versions every 0.5 s)."""
    store = open_store(spark, config)
    store.create_if_missing(S.REVIEW_DECISIONS, S.REVIEW_DECISIONS_SCHEMA)
    now = datetime.now(timezone.utc)
    rows = [(*sorted((left, right)), decision, "test", now, None) for left, right, decision in decisions]
    store.merge(S.REVIEW_DECISIONS, spark.createDataFrame(rows, S.REVIEW_DECISIONS_SCHEMA),
                keys=[S.RECORD_KEY_L, S.RECORD_KEY_R])
    version = store.version(S.REVIEW_DECISIONS)
    for _ in range(100):
        if server.client.get("/health").json()["state"]["versions"].get(S.REVIEW_DECISIONS) == version:
            return
        time.sleep(0.1)
    raise AssertionError(f"the service did not load review_decisions version {version}")


def _by_record(answer: dict) -> dict[str, tuple[str, str]]:
    return {m["record_key"]: (m["rule"], m["status"]) for m in answer["matched"]}


def test_a_rejected_pair_is_not_linked_and_an_accepted_one_is(spark, served):
    config, server = served
    carol = {"email": "carol.white@example.com", "last_name": "White"}
    karen = {"first_name": "Karen", "last_name": "Lee"}
    linked, waiting = _look_up(server, "r1", **carol), _look_up(server, "a1", **karen)
    assert (linked["entity_id"], linked["status"]) == ("crm:C003", "found")
    assert _by_record(linked)["crm:C003"] == ("email", S.LINK)
    assert (waiting["entity_id"], waiting["status"]) == ("online:web:a1", "review")
    assert _by_record(waiting)["crm:C010"] == (S.MODEL_RULE, S.REVIEW)

    _decide(spark, config, server, ("online:web:r1", "crm:C003", S.REJECT), ("crm:C010", "online:web:a1", S.ACCEPT))
    rejected, accepted = _look_up(server, "r1", **carol), _look_up(server, "a1", **karen)
    assert rejected["entity_id"] == "online:web:r1" and rejected["is_new"]
    assert "crm:C003" not in _by_record(rejected)
    assert (accepted["entity_id"], accepted["status"], accepted["confidence"]) == ("crm:C010", "found", 1.0)
    assert _by_record(accepted)["crm:C010"] == (S.ACCEPTED_RULE, S.LINK)
    assert _by_record(accepted)["support:T512"] == (S.MODEL_RULE, S.REVIEW)  # still waiting for a reviewer


def test_a_rejection_between_candidates_keeps_the_strongest_link(spark, served):
    """Linked to two entities, a record joins the oldest (the batch merges them), unless a
    reviewer rejected a pair across them: then only its strongest link's entity, as the batch's
    constrained clustering keeps it (an accepted link is the strongest)."""
    config, server = served
    karen = {"first_name": "Karen", "last_name": "Lee", "dob": "1982-04-18"}
    _decide(spark, config, server, ("online:web:b1", "support:T512", S.ACCEPT))
    both = _look_up(server, "b1", **karen)
    assert _by_record(both)["support:T512"] == (S.ACCEPTED_RULE, S.LINK)
    assert _by_record(both)["crm:C010"] == (S.MODEL_RULE, S.LINK)
    assert both["entity_id"] == "crm:C010"  # the older of the two

    _decide(spark, config, server, ("crm:C010", "support:T512", S.REJECT))
    assert _look_up(server, "b1", **karen)["entity_id"] == "support:T512"


def test_decisions_count_the_same_online_and_in_the_batch(spark):
    """The service's rendering of the latest decision per pair against the batch's, on the same
    rows: keys in either order, case and spaces, a tie (rejection wins), a later change of mind,
    a typo, a record paired with itself, a tab Spark's trim keeps."""
    early, late = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, tzinfo=timezone.utc)
    rows = [
        ("a", "b", "accept", early), ("b", "a", " Reject", late),  # changed mind, keys swapped
        ("c", "d", "ACCEPT ", early), ("c", "d", "reject", early),  # same instant: rejection wins
        ("e", "f", "reject", early), ("e", "f", "accept", late),
        ("g", "h", "acept", late), ("i", "i", "accept", late), ("j", "k", "\taccept", late),
        ("m", "l", "accept", late),
    ]
    frame = spark.createDataFrame(
        [(left, right, decision, None, at, None) for left, right, decision, at in rows], S.REVIEW_DECISIONS_SCHEMA
    )
    batch = {(r[S.RECORD_KEY_L], r[S.RECORD_KEY_R]): r["decision"] for r in batch_latest_decisions(frame).collect()}
    online = latest_decisions_of(
        {S.RECORD_KEY_L: left, S.RECORD_KEY_R: right, "decision": decision, "decided_at": at}
        for left, right, decision, at in rows
    )
    assert online == batch == {("a", "b"): S.REJECT, ("c", "d"): S.REJECT, ("e", "f"): S.ACCEPT, ("l", "m"): S.ACCEPT}
