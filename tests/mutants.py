"""Mutation check: break one rule of the product at a time and show which tests catch it.

    .venv/bin/python -m tests.mutants            # every mutation (about 30-40 minutes)
    .venv/bin/python -m tests.mutants anchor_tie_break survivorship

Each mutation is applied to a copy of this checkout (the checkout itself is never touched) and
the tests listed for it run there, stopping at the first failure. A mutation no test catches is
a rule the suite does not guard: the script exits 1 and says which.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROPERTY = "tests/test_incremental_property.py"


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]  # cheapest first: the run stops at the first failure


MUTATIONS = (
    Mutation(
        "cut_closure", "the incremental region no longer adds the entities a cut joined",
        "resolution/stages/cluster.py",
        "affected_entities = entities_joined_by_cuts(old_membership, affected_entities, old_cuts)",
        "pass",
        (f"{PROPERTY}::test_incremental_equals_full_recompute_with_cannot_link_constraints",),
    ),
    Mutation(
        "crossed_group_rescoring", "records whose identifier group crossed max_group_size are not rescored",
        "resolution/stages/score.py",
        "rescored = standardized.changed_keys.unionByName(crossed)",
        "rescored = standardized.changed_keys",
        (f"{PROPERTY}::test_rules_only_runs_equal_a_reference_resolver_ids_included",),
    ),
    Mutation(
        "decided_pairs_rescoring", "records of pairs decided since the last run are not rescored",
        "resolution/stages/score.py",
        'rescored = rescored.unionByName(decided.join(live, S.RECORD_KEY, "left_semi"))',
        "pass",
        (f"{PROPERTY}::test_rules_only_runs_equal_a_reference_resolver_ids_included",),
    ),
    Mutation(
        "blocking_candidates", "a rescored record is scored against the other rescored records only",
        "resolution/matching.py",
        'return rule_hashes(records, rules).join(F.broadcast(keys), RULE_KEY, "left_semi").select(RECORD_KEY).distinct()',
        "return records.select(RECORD_KEY).limit(0)",
        (f"{PROPERTY}::test_incremental_equals_full_recompute",),
    ),
    Mutation(
        "anchor_tie_break", "anchor ties go to the worst source priority",
        "resolution/rules.py",
        "F.col(prefix + S.SOURCE_PRIORITY).asc(),",
        "F.col(prefix + S.SOURCE_PRIORITY).desc(),",
        (f"{PROPERTY}::test_rules_only_runs_equal_a_reference_resolver_ids_included",),
    ),
    Mutation(
        "delete_beats_update", "at one instant INSERT beats UPDATE beats DELETE",
        "resolution/sources.py",
        'F.array_position(F.array(*[F.lit(op) for op in OPERATIONS]), F.col("__operation")).desc(),',
        'F.array_position(F.array(*[F.lit(op) for op in OPERATIONS]), F.col("__operation")).asc(),',
        ("tests/test_sources.py", f"{PROPERTY}::test_rules_only_runs_equal_a_reference_resolver_ids_included"),
    ),
    Mutation(
        "needless_cuts", "once a component had a conflict, every later link between clusters is cut",
        "resolution/clustering/constrained.py",
        "conflict = clusters[left].conflict(clusters[right], attributes)",
        "conflict = clusters[left].conflict(clusters[right], attributes) or "
        "((cuts[-1].constraint, cuts[-1].detail) if cuts else None)",
        ("tests/test_constrained_clustering.py",),
    ),
    Mutation(
        "survivorship", "most_recent keeps the oldest value",
        "resolution/golden.py",
        "return _ordered_pick(value, shown, -_epoch(), priority, key)",
        "return _ordered_pick(value, shown, _epoch(), priority, key)",
        ("tests/test_golden.py",),
    ),
)


def _copy(target: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", "lakehouse*", "spark-warehouse", "generated", "__pycache__",
                                    ".hypothesis", ".pytest_cache")
    shutil.copytree(REPO, target, ignore=ignore)
    (target / ".venv").symlink_to(REPO / ".venv")


def run(mutation: Mutation, folder: Path) -> tuple[str | None, float]:
    """The first test that failed under ``mutation`` (None: none did) and the seconds taken."""
    copy = folder / mutation.name
    _copy(copy)
    path = copy / mutation.file
    text = path.read_text()
    if text.count(mutation.old) != 1:
        raise SystemExit(f"{mutation.name}: the code to mutate is not (once) in {mutation.file}: update tests/mutants.py")
    path.write_text(text.replace(mutation.old, mutation.new))
    started = time.perf_counter()
    for test in mutation.tests:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", "-rf", test],
            cwd=copy, capture_output=True, text=True,
        )
        if result.returncode == 1:  # a test failed: caught (its first assertion line says how)
            lines = result.stdout.splitlines()
            failed = next((line.removeprefix("FAILED ") for line in lines if line.startswith("FAILED")), test)
            why = next((line[1:].strip() for line in lines if line.startswith("E ")), "")
            return f"{failed.split(' - ')[0]}\n{'':<36}{why[:150]}", time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{mutation.name}: pytest could not run {test}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return None, time.perf_counter() - started


def main(names: list[str]) -> int:
    chosen = [m for m in MUTATIONS if not names or m.name in names]
    missed = []
    with tempfile.TemporaryDirectory(prefix="idr-mutants-") as folder:
        print(f"{'mutation':<26} {'seconds':>8}  caught by")
        for mutation in chosen:
            caught, seconds = run(mutation, Path(folder))
            print(f"{mutation.name:<26} {seconds:8.0f}  {caught or 'NOT CAUGHT: ' + mutation.what}", flush=True)
            if caught is None:
                missed.append(mutation.name)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
