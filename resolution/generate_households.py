"""The generator's household-heavy mode: government-style sources without contact identifiers.

Three sources about the same people, shaped like a census roster, a social-security file and
tax forms (``idr generate --mode households``):

- **census**: one record per person of a household (most households), with names, date of
  birth and the address as street number and street name in two columns; duplicate-free;
- **ssa**: one record per person when their number is issued, a second one (an event, such as a
  death or a change of name) for some; social-security number, names and date of birth, no
  address;
- **tax**: one to three forms per working-age person; social-security number, names and the
  mailing address as one column, no date of birth.

No email or phone anywhere: what links records is names, birth dates, addresses and a
social-security number that carries copy errors. The hard cases are households: members share
a surname and an address, and a member's form sometimes carries another member's number. The
noise: typos, OCR confusions (``0``/``O``, ``1``/``l``, ``5``/``S``), nicknames, day and month
swapped, a value copied from another member of the household, wrong digits in a number,
missing fields, the old address on a form.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from resolution.generate import (
    TRUTH_FILE,
    _blank,
    _case_and_space,
    _first_names,
    _ids,
    _join,
    _pick,
    _scrambled,
    _strings,
    _typo,
    census_names,
    generate_people,
)

HOUSEHOLD_FILES = {"census": "census.csv", "ssa": "ssa.csv", "tax": "tax.csv"}
HOUSEHOLD_KEYS = {"census": "record_id", "ssa": "record_id", "tax": "form_id"}
STREET_KINDS = np.array(["street", "road", "avenue", "lane", "drive", "court", "place", "way"])
_OCR = str.maketrans({"0": "O", "1": "l", "5": "S", "8": "B", "o": "0", "l": "1", "s": "5", "e": "c"})


def _ocr(rng: np.random.Generator, values: np.ndarray, rate: float) -> np.ndarray:
    """A scanned form read wrong: one character confused with a look-alike."""
    out = _strings(values).copy()
    for index in np.flatnonzero(_pick(rng, len(out), rate)):
        word = out[index]
        spots = [i for i, char in enumerate(word) if char.translate(_OCR) != char]
        if spots:
            at = spots[rng.integers(0, len(spots))]
            out[index] = word[:at] + word[at].translate(_OCR) + word[at + 1:]
    return out


def _wrong_digit(rng: np.random.Generator, numbers: np.ndarray, rate: float) -> np.ndarray:
    """A digit replaced, or two adjacent digits swapped, in a fraction of the numbers."""
    out = _strings(numbers).copy()
    for index in np.flatnonzero(_pick(rng, len(out), rate)):
        digits = list(out[index])
        at = int(rng.integers(0, len(digits) - 1))
        if rng.random() < 0.5:
            digits[at], digits[at + 1] = digits[at + 1], digits[at]
        else:
            digits[at] = str((int(digits[at]) + int(rng.integers(1, 10))) % 10)
        out[index] = "".join(digits)
    return out


def _swap_day_month(rng: np.random.Generator, dates: np.ndarray, rate: float) -> np.ndarray:
    """ISO dates with day and month swapped where the day can be a month."""
    out = _strings(dates).copy()
    for index in np.flatnonzero(_pick(rng, len(out), rate)):
        year, month, day = out[index].split("-")
        if int(day) <= 12 and day != month:
            out[index] = f"{year}-{day}-{month}"
    return out


def _from_member(rng: np.random.Generator, who: pd.DataFrame, column: str, rate: float) -> np.ndarray:
    """``column`` of each row, or for a fraction of the rows the value of another member of the
    same household (the form filled in with a spouse's number)."""
    values = who[column].to_numpy(dtype=object).copy()
    households = who["household"].to_numpy()
    order = np.argsort(households, kind="stable")
    ranked = households[order]
    for index in np.flatnonzero(_pick(rng, len(who), rate)):
        low, high = np.searchsorted(ranked, households[index], "left"), np.searchsorted(ranked, households[index], "right")
        others = [row for row in order[low:high] if values[row] != values[index]]
        if others:
            values[index] = who[column].iloc[others[int(rng.integers(0, len(others)))]]
    return values


def household_people(people: int, rng: np.random.Generator) -> pd.DataFrame:
    """The people (see :func:`resolution.generate.generate_people`) with a social-security
    number each and addresses split into street number and a street name out of thousands."""
    population = generate_people(people, rng)
    household = population["household"].to_numpy()
    _, _, surnames, _ = census_names()
    streets = _join(surnames[(household * 7919) % len(surnames)], " ", STREET_KINDS[household % len(STREET_KINDS)])
    numbers = ((household * 37) % 400 + 1).astype(str)
    old = rng.integers(0, len(surnames), people)
    return population.assign(
        ssn=np.char.zfill(_scrambled(population["person_id"].to_numpy() + 1, 9, 1_234_567), 9).astype(object),
        street_number=numbers.astype(object), street_name=streets,
        address=_join(numbers, " ", streets),
        old_address=_join(rng.integers(1, 400, people).astype(str), " ", surnames[old], " ",
                          STREET_KINDS[old % len(STREET_KINDS)]),
    )


def _census(rng: np.random.Generator, people: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The roster: 90% of households, every member once."""
    households = people["household"].unique()
    counted = set(households[_pick(rng, len(households), 0.9)])
    who = people[people["household"].isin(counted)].reset_index(drop=True)
    n = len(who)
    first = _from_member(rng, who.assign(first=_first_names(rng, who, nickname=0.08, typo=0.03)), "first", 0.01)
    dob = _swap_day_month(rng, who["dob"].to_numpy().astype("datetime64[D]").astype(str), 0.03)
    return pd.DataFrame({
        "record_id": _ids("P", n, 8),
        "household_id": _join("H", who["household"].astype(str).to_numpy(dtype=object)),
        "first_name": _case_and_space(rng, _ocr(rng, first, 0.02), title=0.0, upper=0.9, space=0.01),
        "last_name": _case_and_space(rng, _ocr(rng, _typo(rng, who["last"].to_numpy(dtype=object), 0.03), 0.02),
                                     title=0.0, upper=0.9, space=0.01),
        "dob": _blank(rng, dob, 0.04),
        "street_number": _blank(rng, who["street_number"].to_numpy(dtype=object), 0.03),
        "street_name": _case_and_space(rng, _typo(rng, who["street_name"].to_numpy(dtype=object), 0.03),
                                       title=0.0, upper=0.9, space=0.01),
    }), who


def _ssa(rng: np.random.Generator, people: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Issued numbers: 95% of people, 15% of them with a second record (an event)."""
    held = people[_pick(rng, len(people), 0.95)]
    again = held[_pick(rng, len(held), 0.15)]
    who = pd.concat([held, again], ignore_index=True)
    n = len(who)
    event = np.where(np.arange(n) >= len(held), np.where(_pick(rng, n, 0.6), "death", "name change"), "issued")
    dob = _swap_day_month(rng, who["dob"].to_numpy().astype("datetime64[D]").astype(str), 0.02)
    return pd.DataFrame({
        "record_id": _ids("S", n, 8),
        "ssn": _blank(rng, _wrong_digit(rng, who["ssn"].to_numpy(dtype=object), 0.02), 0.01),
        "first_name": _case_and_space(rng, _first_names(rng, who, nickname=0.05, typo=0.02), title=0.9, upper=0.0,
                                      space=0.0),
        "last_name": _case_and_space(rng, _typo(rng, who["last"].to_numpy(dtype=object), 0.02), title=0.9,
                                     upper=0.0, space=0.0),
        "dob": _blank(rng, dob, 0.01),
        "event": event,
    }), who


def _tax(rng: np.random.Generator, people: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Forms: 70% of people, 1-3 forms each; the mailing address, old for some forms."""
    counts = np.where(_pick(rng, len(people), 0.7), rng.choice([1, 2, 3], size=len(people), p=[0.5, 0.3, 0.2]), 0)
    who = people.iloc[np.repeat(np.arange(len(people)), counts)].reset_index(drop=True)
    n = len(who)
    ssn = _from_member(rng, who, "ssn", 0.02)  # a spouse's number copied onto the form
    at_old = who["moved"].to_numpy() & _pick(rng, n, 0.4)
    address = np.where(at_old, who["old_address"], who["address"])
    return pd.DataFrame({
        "form_id": _ids("F", n, 8),
        "ssn": _blank(rng, _ocr(rng, _wrong_digit(rng, ssn, 0.02), 0.01), 0.02),
        "first_name": _case_and_space(rng, _ocr(rng, _first_names(rng, who, nickname=0.15, typo=0.03), 0.02),
                                      title=0.5, upper=0.3, space=0.02),
        "last_name": _case_and_space(rng, _ocr(rng, _typo(rng, who["last"].to_numpy(dtype=object), 0.03), 0.02),
                                     title=0.5, upper=0.3, space=0.02),
        "mailing_address": _blank(rng, _ocr(rng, _typo(rng, address, 0.03), 0.02), 0.03),
        "tax_year": (2019 + rng.integers(0, 4, n)).astype(str),
    }), who


def generate_households(people: int, *, seed: int = 7) -> dict[str, pd.DataFrame]:
    """The census, ssa and tax tables plus ``truth`` (``record_key``, ``person_id``, ``household``)."""
    rng = np.random.default_rng(seed)
    population = household_people(people, rng)
    tables: dict[str, pd.DataFrame] = {}
    truth = []
    for source, build in (("census", _census), ("ssa", _ssa), ("tax", _tax)):
        tables[source], who = build(rng, population)
        truth.append(pd.DataFrame({
            "record_key": (source + ":" + tables[source][HOUSEHOLD_KEYS[source]].astype(str)).to_numpy(),
            "person_id": who["person_id"].to_numpy(), "household": who["household"].to_numpy(),
        }))
    tables["truth"] = pd.concat(truth, ignore_index=True)
    return tables


def write_households(people: int, output_dir: str | Path, *, seed: int = 7) -> dict[str, int]:
    """Write ``census.csv``, ``ssa.csv``, ``tax.csv`` and ``truth.csv`` into ``output_dir``."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, table in generate_households(people, seed=seed).items():
        table.to_csv(folder / HOUSEHOLD_FILES.get(name, TRUTH_FILE), index=False)
        counts[name] = len(table)
    return counts
