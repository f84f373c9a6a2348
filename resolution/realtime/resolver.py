"""Decide, for one incoming record, the entity the next batch run will put it in.

The steps are the batch's, on one record: standardize, mask identifier values shared by more
records than ``max_group_size``, take the candidates of the identifier rules and the blocking
rules, score them with the model, classify (an identifier rule's pair is a link, else the
thresholds), then apply the id policy: linked to existing entities, the oldest of them (by its
anchor record) keeps its id; linked to none, the record anchors a new entity named by its own
record key. Reviewers' decisions apply as in the batch: a pair a reviewer accepted is a link
(rule ``accepted`` when neither a rule nor the model links it), a rejected pair is a cannot-link
constraint (never linked, and no entity holding one of its records is joined to the other).
Records accepted since the published state was loaded are an overlay searched the same way, so
a second record of a new person finds the first.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from resolution import schemas as S
from resolution.config import CannotLinkConfig, Config
from resolution.realtime.scorer import OnlineScorer
from resolution.realtime.standardize import Standardizer
from resolution.realtime.state import (
    PublishedState,
    ReviewDecisions,
    composite_key,
    model_columns,
    nickname_group,
)
from resolution.rules import (
    anchor_key,
    cannot_link_conflict,
    edge_rule,
    edge_status,
    is_oversized,
    key_text,
)
from resolution.scoring import NICKNAMES_SUFFIX
from resolution.store.inbox import inbox_source

FOUND, REVIEW, NEW = "found", "review", "new"
MAX_TEXT = 500  # characters of one value


class RequestError(ValueError):
    """The request cannot be resolved as sent (HTTP 400); the message names the field."""


class UnavailableError(RuntimeError):
    """The published state or the inbox cannot be reached (HTTP 503)."""


@dataclass(frozen=True)
class Match:
    record_key: str
    source: str
    entity_id: str
    rule: str
    status: str  # link | review
    match_probability: float | None
    match_weight: float | None


@dataclass
class Resolution:
    record_key: str
    entity_id: str
    status: str  # found | review | new
    is_new: bool
    confidence: float
    matched: list[Match] = field(default_factory=list)
    known: bool = False  # the record was already known: nothing to store
    ignored: list[str] = field(default_factory=list)  # junk values nulled (email:excluded, ...)


class Overlay:
    """Records accepted since the state was loaded, indexed like the state."""

    def __init__(self) -> None:
        self.records: dict[str, dict] = {}
        self._by_value: dict[tuple[str, str], list[str]] = defaultdict(list)
        self._by_entity: dict[str, list[str]] = defaultdict(list)
        self._lock = threading.RLock()

    def add(self, record: dict, *, indexed: list[tuple[str, str]]) -> None:
        with self._lock:
            key = record[S.RECORD_KEY]
            if key in self.records:
                return
            self.records[key] = record
            for entry in indexed:
                self._by_value[entry].append(key)
            self._by_entity[record[S.ENTITY_ID]].append(key)

    def lookup(self, index: str, value: str | None) -> list[str]:
        if value is None:
            return []
        with self._lock:
            return list(self._by_value.get((index, value), ()))

    def members(self, entity_id: str) -> list[dict]:
        with self._lock:
            return [self.records[key] for key in self._by_entity.get(entity_id, ())]

    def drop_published(self, state: PublishedState) -> None:
        """Forget records the published state now holds (the batch ingested them)."""
        with self._lock:
            kept = {key: record for key, record in self.records.items() if key not in state.key_row}
            self.records, self._by_value, self._by_entity = {}, defaultdict(list), defaultdict(list)
            for record in sorted(kept.values(), key=lambda r: (r[S.SOURCE_TIMESTAMP], r[S.RECORD_KEY])):
                self.add(record, indexed=record["__indexed"])


class Resolver:
    """Resolve records against a published state plus the overlay of accepted records."""

    def __init__(self, config: Config, scorer: OnlineScorer | None):
        self.config = config
        self.scorer = scorer
        self.inbox = inbox_source(config)
        self.standardizer = Standardizer(config, date_formats=self.inbox.date_formats)
        self.overlay = Overlay()
        self.attributes = model_columns(config)
        self.rules = list(config.identifiers)
        self.blocking = [tuple(rule) for rule in config.matching.blocking_rules]
        self.findable = {rule.attribute for rule in self.rules} | {a for rule in self.blocking for a in rule}

    # ---- the request ------------------------------------------------------------------------

    def record_key(self, channel: str, channel_id: str) -> str:
        return f"{self.inbox.name}:{channel}:{channel_id}"

    def parse(self, channel: str, channel_id: str, data: dict) -> tuple[dict, dict, list[str]]:
        """Validate the request; return raw values, standardized values and ignored junk."""
        for name, value in (("source", channel), ("source_id", channel_id)):
            if not isinstance(value, str) or not value.strip():
                raise RequestError(f"{name}: a non-empty string is required")
            if len(value) > MAX_TEXT:
                raise RequestError(f"{name}: longer than {MAX_TEXT} characters")
        if not isinstance(data, dict):
            raise RequestError("data: an object of attribute: value is required")
        allowed = set(self.inbox.columns)
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise RequestError(f"data.{unknown[0]}: unknown field (allowed: {', '.join(sorted(allowed))})")
        raw = {}
        for name, value in data.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise RequestError(f"data.{name}: a string is required, got {type(value).__name__}")
            if len(str(value)) > MAX_TEXT:
                raise RequestError(f"data.{name}: longer than {MAX_TEXT} characters")
            raw[name] = str(value)
        values, issues = self.standardizer.record(raw)
        invalid = [issue.split(":")[0] for issue in issues if issue.endswith(":invalid")]
        if invalid:
            kind = self.config.attribute_kinds[invalid[0]]
            raise RequestError(f"data.{invalid[0]}: not a valid {kind} ({raw[invalid[0]]!r})")
        if not any(values.get(a) is not None for a in self.findable):
            raise RequestError(
                "no identifiers: give at least one of " + ", ".join(sorted(self.findable & allowed))
            )
        return raw, values, [issue for issue in issues if issue.endswith(":excluded")]

    # ---- known records ----------------------------------------------------------------------

    def known(self, state: PublishedState, channel: str, channel_id: str) -> Resolution | None:
        """The answer for a record the state or the overlay already holds (idempotent)."""
        for key in (f"{channel}:{channel_id}", self.record_key(channel, channel_id)):
            row = state.key_row.get(key)
            if row is not None:
                record = state.rows([row])[0]
                match = Match(key, record[S.SOURCE], record[S.ENTITY_ID], "same_record", S.LINK, 1.0, None)
                return Resolution(key, record[S.ENTITY_ID], FOUND, False, 1.0, [match], known=True)
        pending = self.overlay.records.get(self.record_key(channel, channel_id))
        if pending is not None:
            answer = pending["__answer"]
            return Resolution(answer.record_key, answer.entity_id, answer.status, answer.is_new,
                              answer.confidence, answer.matched, known=True)
        return None

    # ---- resolution -------------------------------------------------------------------------

    def resolve(self, state: PublishedState, channel: str, channel_id: str, values: dict,
                *, received_at: datetime) -> tuple[Resolution, dict]:
        """The decision for a new record, and the record as the overlay keeps it."""
        key = self.record_key(channel, channel_id)
        record = {S.RECORD_KEY: key, S.SOURCE: self.inbox.name, S.SOURCE_ID: f"{channel}:{channel_id}",
                  S.SOURCE_PRIORITY: self.inbox.priority, S.SOURCE_TIMESTAMP: received_at}
        record.update({a: values.get(a) for a in self.attributes})
        for attribute, kind in self.config.matching.comparisons.items():
            if kind == "given_name":
                record[attribute + NICKNAMES_SUFFIX] = nickname_group(record[attribute])

        rows, pending = self._candidates(state, record)
        candidates = state.rows(rows) + pending
        masked = self._mask_oversized(state, record, candidates)
        scored = self._score(state, masked[0], masked[1:])
        matches = [
            match
            for candidate, original in zip(masked[1:], candidates, strict=True)
            if (match := self._match(masked[0], candidate, original, scored, state.decisions)) is not None
        ]
        # strongest first, a reviewer's acceptance strongest of all (as the batch's clustering)
        matches.sort(key=lambda m: (m.status != S.LINK, -_strength(m), m.record_key))
        entity_id = self._entity(state, record, [m for m in matches if m.status == S.LINK])
        links = [_confidence(m) for m in matches if m.status == S.LINK and m.entity_id == entity_id]
        reviews = [m.match_probability or 0.0 for m in matches if m.status == S.REVIEW]
        if entity_id is not None:
            answer = Resolution(key, entity_id, FOUND, False, max(links, default=1.0), matches)
        elif reviews:
            answer = Resolution(key, key, REVIEW, True, max(reviews), matches)
        else:
            answer = Resolution(key, key, NEW, True, 0.0, matches)
        record[S.ENTITY_ID] = answer.entity_id
        record["__answer"] = answer
        record["__indexed"] = self._index_entries(record)
        return answer, record

    def _match(self, record: dict, candidate: dict, original: dict, scored: dict,
               decisions: ReviewDecisions) -> Match | None:
        """The pair's edge as the batch classifies it (``matching.classify_edges``) with the
        reviewers' decisions: rejected, no edge (not linked, not waiting for a reviewer);
        accepted, a link. ``candidate`` is ``original`` with oversized identifier values masked."""
        key, partner = record[S.RECORD_KEY], original[S.RECORD_KEY]
        if partner in decisions.rejected_with(key):
            return None
        accepted = partner in decisions.accepted_with(key)
        rule = self._rule(record, candidate)
        if rule is None and not accepted:
            return None
        # an accepted pair no rule found is an accepted link without a score, as in the batch
        weight, probability = scored.get(partner, (None, None)) if rule is not None else (None, None)
        matching = self.config.matching
        status = edge_status(rule or S.ACCEPTED_RULE, probability, accepted,
                             link_threshold=matching.link_threshold, review_threshold=matching.review_threshold)
        if status is None:
            return None
        # the model's score, if any, kept as evidence of an accepted link
        rule = edge_rule(rule, probability, accepted, link_threshold=matching.link_threshold) if rule else S.ACCEPTED_RULE
        return Match(partner, original[S.SOURCE], original[S.ENTITY_ID], rule, status, probability, weight)

    def _index_entries(self, record: dict) -> list[tuple[str, str]]:
        entries = [(rule.attribute, key_text(record.get(rule.attribute))) for rule in self.rules]
        entries += [("|".join(rule), composite_key([record.get(c) for c in rule])) for rule in self.blocking]
        return [(index, value) for index, value in entries if value is not None]

    def _candidates(self, state: PublishedState, record: dict) -> tuple[np.ndarray, list[dict]]:
        found, pending = [], set()
        for rule in self.rules:
            value = key_text(record.get(rule.attribute))
            found.append(state.identifier_index[rule.attribute].lookup(value))
            pending.update(self.overlay.lookup(rule.attribute, value))
        for rule in self.blocking:
            value = composite_key([record.get(c) for c in rule])
            found.append(state.blocking_index[rule].lookup(value))
            pending.update(self.overlay.lookup("|".join(rule), value))
        # records a reviewer accepted with this one pair with it whatever its values (if live)
        accepted = sorted(state.decisions.accepted_with(record[S.RECORD_KEY]))
        found.append(np.array([state.key_row[k] for k in accepted if k in state.key_row], dtype=np.int64))
        pending.update(k for k in accepted if k in self.overlay.records)
        rows = np.unique(np.concatenate(found))
        pending.discard(record[S.RECORD_KEY])
        # a pending record the state already holds (a reload between swap and prune) counts once
        pending = {k for k in pending if k not in state.key_row}
        return rows, [self.overlay.records[k] for k in sorted(pending) if k in self.overlay.records]

    def _group_size(self, state: PublishedState, attribute: str, value: str) -> int:
        return len(state.identifier_index[attribute].lookup(value)) + len(self.overlay.lookup(attribute, value))

    def _mask_oversized(self, state: PublishedState, record: dict, candidates: list[dict]) -> list[dict]:
        """The record and candidates with identifier values of oversized groups nulled (the new
        record counts in its own group, as it will in the next run)."""
        masked = [dict(record), *(dict(c) for c in candidates)]
        for rule in self.rules:
            sizes: dict[str, int] = {}
            mine = key_text(record.get(rule.attribute))
            for row in masked:
                value = key_text(row.get(rule.attribute))
                if value is None:
                    continue
                if value not in sizes:
                    sizes[value] = self._group_size(state, rule.attribute, value) + (value == mine)
                if is_oversized(sizes[value], rule):
                    row[rule.attribute] = None
        return masked

    def _rule(self, record: dict, candidate: dict) -> str | None:
        """The rule that pairs them: the first identifier rule they agree on, else ``model``
        when a blocking rule pairs them, else None (the batch would never compare them)."""
        for rule in self.rules:
            value = key_text(record.get(rule.attribute))
            if value is not None and value == key_text(candidate.get(rule.attribute)):
                return rule.name
        for rule in self.blocking:
            mine = composite_key([record.get(c) for c in rule])
            if mine is not None and mine == composite_key([candidate.get(c) for c in rule]):
                return S.MODEL_RULE
        return None

    def _score(self, state: PublishedState, record: dict, candidates: list[dict]) -> dict:
        if self.scorer is None:  # rules-only: identifier pairs are links without a score
            return {}
        return self.scorer.score(record, candidates, state.model_schema)

    # ---- the id policy ----------------------------------------------------------------------

    def _members(self, state: PublishedState, entity_id: str) -> list[dict]:
        return state.rows(state.entity_index.lookup(entity_id)) + self.overlay.members(entity_id)

    def _conflict(self, state: PublishedState, group: list[dict], entity_id: str) -> bool:
        """Would joining ``entity_id`` to ``group`` break a cannot-link constraint (a rejected
        pair between them included)?"""
        constraints, decisions = self.config.cannot_link, state.decisions
        if not constraints and not decisions.rejected:
            return False
        members = self._members(state, entity_id)
        refused = set().union(*(decisions.rejected_with(r[S.RECORD_KEY]) for r in group))
        if any(member[S.RECORD_KEY] in refused for member in members):
            return True
        if not constraints:
            return False
        (mine, mine_sources), (theirs, theirs_sources) = (_constrained(rows, constraints) for rows in (group, members))
        return cannot_link_conflict(mine, theirs, mine_sources, theirs_sources,
                                    attributes=constraints.attributes, tolerate=constraints.tolerate) is not None

    def _entity(self, state: PublishedState, record: dict, links: list[Match]) -> str | None:
        """The entity the record joins: the oldest of the entities it links to (an entity of
        the published state before any pending one), or None for a new entity.

        With cannot-link constraints, entities are joined strongest link first and an entity
        that would break one is left out, as the batch's greedy clustering does.
        """
        group, joined = [record], []
        for match in links:
            if match.entity_id in joined or self._conflict(state, group, match.entity_id):
                continue
            joined.append(match.entity_id)
            group += self._members(state, match.entity_id)
        if not joined:
            return None
        return min(joined, key=lambda entity: self._age(state, entity))

    def _age(self, state: PublishedState, entity_id: str) -> tuple:
        """The id policy's age: published entities first, then by anchor (timestamp, priority, key)."""
        rows = state.rows(state.entity_index.lookup(entity_id))
        anchors = [r for r in rows if r[S.IS_PRIMARY]] or rows
        if anchors:
            return (0, *anchor_key(anchors[0]))
        return (1, *min(anchor_key(r) for r in self.overlay.members(entity_id)))


def _constrained(rows: list[dict], constraints: CannotLinkConfig) -> tuple[dict[str, set[str]], dict[str, str]]:
    """A group's values of the constrained attributes and its records of duplicate-free
    sources (first seen first), as the batch's constrained clustering keeps them."""
    values: dict[str, set[str]] = {}
    sources: dict[str, str] = {}
    for row in rows:
        for name in constraints.attributes:
            text = key_text(row.get(name))
            if text is not None:
                values.setdefault(name, set()).add(text)
        if row[S.SOURCE] in constraints.unique_sources:
            sources.setdefault(row[S.SOURCE], row[S.RECORD_KEY])
    return values, sources


def _strength(match: Match) -> float:
    """A link's rank for the id policy: the batch clusters accepted links first (infinite
    weight), then by match weight (unscored last)."""
    if match.rule == S.ACCEPTED_RULE:
        return math.inf
    return match.match_weight or -1e9


def _confidence(match: Match) -> float:
    """A link's share of the answer's confidence: a reviewer's acceptance is certain."""
    return 1.0 if match.rule == S.ACCEPTED_RULE else match.match_probability or 0.0
