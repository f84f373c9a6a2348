"""A plain-Python reference resolver for rules-only worlds: the oracle the Spark pipeline is
checked against. It shares no code with ``resolution/``: it reads the world's CSV rows as they
are, applies the documented rules (docs/tables.md, the id policy) with dicts and a union-find, and keeps its own
id history.

- Live records: the CRM snapshot's rows; the KYC audit events reduced per key to the latest
  event by operation time (at the same instant DELETE beats UPDATE beats INSERT), a DELETE
  removing the key.
- Links: records sharing a value of an identifier rule, unless more than ``max_group_size``
  live records hold that value (then the value links nothing); pairs a reviewer accepted.
- Ids (the documented policy): a new entity takes its anchor's key (oldest timestamp, then source
  priority, then record key); merged entities keep the oldest one's id; a split keeps the id
  in the part holding most of the old entity's records (tie: the part holding its primary).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.incremental_harness import World

PRIORITY = {"crm": 1, "kyc": 2}
OPERATION_RANK = {"DELETE": 0, "UPDATE": 1, "INSERT": 2}  # at one instant, the first wins


@dataclass(frozen=True)
class Record:
    key: str
    timestamp: str
    priority: int
    identifiers: tuple[tuple[str, str], ...]  # (rule attribute, value) for each non-empty value

    @property
    def anchor_order(self) -> tuple:
        return (self.timestamp, self.priority, self.key)


def live_records(world: World, attributes: tuple[str, ...] = ("email", "phone")) -> dict[str, Record]:
    """The world's live records by record key."""
    column = {"email": 3, "phone": 4}
    rows = {f"crm:{row[0]}": ("crm", row) for row in world.crm.values()}
    latest: dict[str, list[str]] = {}
    for event in world.kyc_events:
        key, operation, when = event[0], event[7], event[8]
        current = latest.get(key)
        if current is None or (when, -OPERATION_RANK[operation]) > (current[8], -OPERATION_RANK[current[7]]):
            latest[key] = event
    rows.update({f"kyc:{key}": ("kyc", event) for key, event in latest.items() if event[7] != "DELETE"})
    return {
        key: Record(
            key=key,
            timestamp=row[5],
            priority=PRIORITY[source],
            identifiers=tuple((a, row[column[a]].strip().lower()) for a in attributes if row[column[a]].strip()),
        )
        for key, (source, row) in rows.items()
    }


def components(records: dict[str, Record], *, max_group_size: int,
               accepted: frozenset[tuple[str, str]] = frozenset()) -> list[frozenset[str]]:
    """Connected components of the rule links (and accepted pairs) over ``records``."""
    parent = {key: key for key in records}

    def find(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def union(a: str, b: str) -> None:
        parent[find(a)] = find(b)

    groups: dict[tuple[str, str], list[str]] = {}
    for record in records.values():
        for identifier in record.identifiers:
            groups.setdefault(identifier, []).append(record.key)
    for keys in groups.values():
        if len(keys) <= max_group_size:
            for other in keys[1:]:
                union(keys[0], other)
    for left, right in accepted:
        if left in parent and right in parent:
            union(left, right)
    found: dict[str, set[str]] = {}
    for key in records:
        found.setdefault(find(key), set()).add(key)
    return [frozenset(keys) for keys in found.values()]


@dataclass
class ReferenceResolver:
    """Resolves each state of a world with the id policy over its own history."""

    max_group_size: int
    membership: dict[str, str] = field(default_factory=dict)  # record key -> entity id
    primary: dict[str, str] = field(default_factory=dict)  # entity id -> primary record key
    used: set[str] = field(default_factory=set)  # every id ever given
    accepted: set[tuple[str, str]] = field(default_factory=set)

    def resolve(self, world: World) -> dict[str, frozenset[str]]:
        """entity id -> record keys for the world's current state (and remember it)."""
        records = live_records(world)
        parts = components(records, max_group_size=self.max_group_size, accepted=frozenset(self.accepted))
        anchor = {part: min(part, key=lambda k: records[k].anchor_order) for part in parts}
        claims: dict[frozenset[str], list[str]] = {part: [] for part in parts}
        old_entities: dict[str, set[str]] = {}
        for key, entity in self.membership.items():
            if key in records:
                old_entities.setdefault(entity, set()).add(key)
        part_of = {key: part for part in parts for key in part}
        for entity, keys in old_entities.items():
            held: dict[frozenset[str], int] = {}
            for key in keys:
                held[part_of[key]] = held.get(part_of[key], 0) + 1
            best = max(held.values())
            winners = [part for part, count in held.items() if count == best]
            with_primary = [part for part in winners if self.primary.get(entity) in part]
            if len(winners) > 1 and not with_primary:
                winners = [min(winners, key=lambda part: min(part))]  # the implementation's cluster-key tie
            claims[(with_primary or winners)[0]].append(entity)

        def age(entity: str) -> tuple:  # an old entity's age: its anchor among the records it held
            return min(records[key].anchor_order for key in old_entities[entity])

        result: dict[str, frozenset[str]] = {}
        for part in parts:
            if claims[part]:
                entity = min(claims[part], key=age)
            else:
                entity = anchor[part]
                if entity in self.used:  # an id once given is never given to another entity
                    entity = f"{anchor[part]}#?"
            result[entity] = part
        self.membership = {key: entity for entity, part in result.items() for key in part}
        self.primary = {entity: anchor[part] for entity, part in result.items()}
        self.used |= {entity for entity in result if not entity.endswith("#?")}
        return result


def same_ids(actual: dict[str, frozenset[str]], expected: dict[str, frozenset[str]]) -> list[str]:
    """The differences between two id assignments (an expected ``key#?`` matches any ``key#...``)."""
    problems = []
    by_part = {part: entity for entity, part in actual.items()}
    for entity, part in expected.items():
        got = by_part.get(part)
        if got is None:
            problems.append(f"no entity holds exactly {sorted(part)}")
        elif entity.endswith("#?") and not got.startswith(entity[:-1]):
            problems.append(f"{sorted(part)}: id {got}, expected a fresh id {entity[:-1]}...")
        elif not entity.endswith("#?") and got != entity:
            problems.append(f"{sorted(part)}: id {got}, expected {entity}")
    return problems
