"""Deterministic synthetic people spread over three source systems, with ground truth.

People live in households. Each source system holds some of them, in its own columns and
formats, with the corruption real systems show:

- names: nicknames (``William`` as ``Bill``), typos, first and last name swapped, case and
  stray whitespace, missing values;
- emails: Gmail dots and ``+tags``, upper case, a second (work) address, a family address
  shared by a household;
- phones: national, international, spaced, dashed; a household's landline shared;
- addresses: people who moved are at their old address in older records;
- hard negatives: twins (same surname, birth date, address and phone, other first name),
  household members sharing an email or a phone, and common names: first names and surnames
  follow the 1990 US Census shares, so one person in 3,000 is a ``James Smith`` and most
  surnames are rare, as in a real customer base.

Every column is built with numpy over whole arrays; the only Python loops run over the few
values a corruption picks. 1M records take well under a minute. The same ``people`` and
``seed`` always give byte-identical files.

``truth.csv`` (kept apart from the sources) maps each record key (``source:id``) to its true
person id. ``change_batch`` turns a state into the next one (inserts, updates, deletes) with
its truth, for incremental runs: ``idr generate --batches 2`` writes the state after two.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import names as census
import numpy as np
import pandas as pd

# The nicknames the generator writes for common first names (its own list: the matcher's
# nickname groups come from the ``nicknames`` package, so the benchmark does not grade itself)
NICKNAMES = {
    "james": "jim", "mary": "molly", "robert": "bob", "patricia": "pat", "john": "jack", "jennifer": "jen",
    "michael": "mike", "david": "dave", "elizabeth": "liz", "william": "bill", "barbara": "barb",
    "richard": "rick", "susan": "sue", "joseph": "joe", "jessica": "jess", "thomas": "tom",
    "charles": "chuck", "christopher": "chris", "daniel": "dan", "matthew": "matt", "anthony": "tony",
    "margaret": "peggy", "sandra": "sandy", "donald": "don", "steven": "steve", "kimberly": "kim",
    "emily": "em", "andrew": "andy", "joshua": "josh", "michelle": "shelly", "kenneth": "ken",
    "amanda": "mandy", "dorothy": "dot", "melissa": "missy", "timothy": "tim", "deborah": "debbie",
    "ronald": "ron", "stephanie": "steph", "edward": "ed", "rebecca": "becky", "jeffrey": "jeff",
    "cynthia": "cindy", "jacob": "jake", "kathleen": "kathy", "nicholas": "nick", "angela": "angie",
    "jonathan": "jon", "stephen": "steve", "pamela": "pam", "nicole": "nikki", "benjamin": "ben",
    "samantha": "sam", "samuel": "sam", "katherine": "kate", "gregory": "greg", "christine": "chris",
    "alexander": "alex", "debra": "deb", "patrick": "pat", "raymond": "ray", "catherine": "cathy",
    "olivia": "liv", "nathan": "nate", "henry": "harry", "virginia": "ginny", "oliver": "ollie",
    "sophia": "sophie", "amelia": "millie", "evelyn": "evie", "lucas": "luke", "isabella": "bella",
}
STREETS = np.array(
    ["high street", "station road", "main street", "park road", "church lane", "victoria road",
     "green lane", "manor road", "church street", "park avenue", "the avenue", "queens road",
     "new road", "grange road", "kings road", "mill lane", "school lane", "north street",
     "south street", "west street", "london road", "york road", "albert road", "springfield road"]
)
DOMAINS = np.array(["gmail.com", "outlook.example", "yahoo.example", "mail.example", "post.example",
                    "inbox.example", "icloud.example", "proton.example"])
DOMAIN_WEIGHTS = np.array([0.40, 0.15, 0.12, 0.10, 0.08, 0.06, 0.05, 0.04])
SOURCE_FILES = {"crm": "crm_contacts.csv", "ecommerce": "orders.csv", "support": "support_tickets.csv"}
TRUTH_FILE = "truth.csv"
KEY_COLUMNS = {"crm": "contact_id", "ecommerce": "order_id", "support": "ticket_id"}


def _census_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Names (lower case) and their share of people, from a 1990 US Census file
    (``NAME  percent  cumulative-percent  rank``, most common first). The file lists the
    rarest names with 0.000%: they share evenly what the cumulative column leaves to them."""
    table = pd.read_csv(path, sep=r"\s+", header=None, names=["name", "percent", "cumulative", "rank"],
                        keep_default_na=False)
    percent = table["percent"].to_numpy(dtype=float)
    rare = percent == 0
    if rare.any():
        listed = table["cumulative"].to_numpy()[~rare][-1]
        percent[rare] = (table["cumulative"].iloc[-1] - listed) / rare.sum()
    return table["name"].str.lower().to_numpy(dtype=object), percent / percent.sum()


@lru_cache(maxsize=1)
def census_names() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First names (men's and women's lists, half the people each) and surnames with their
    shares, most common first: the long tail real populations have (5,163 first names,
    88,799 surnames; 0.03% of people are called James Smith), from the ``names`` package."""
    shares: dict[str, float] = {}
    for sex in ("first:male", "first:female"):
        for name, share in zip(*_census_file(census.FILES[sex]), strict=True):
            shares[name] = shares.get(name, 0.0) + share / 2
    first = sorted(shares.items(), key=lambda item: (-item[1], item[0]))
    last, last_share = _census_file(census.FILES["last"])
    return (np.array([name for name, _ in first], dtype=object), np.array([share for _, share in first]),
            last, last_share)


def _strings(values) -> np.ndarray:
    return np.asarray(values, dtype=object)


def _join(*parts) -> np.ndarray:
    """Element-wise concatenation of string arrays and scalars (object arrays, fast)."""
    out = _strings(parts[0])
    for part in parts[1:]:
        out = out + (_strings(part) if not isinstance(part, str) else part)
    return out


def _ids(prefix: str, count: int, width: int) -> np.ndarray:
    """``prefix`` + zero-padded row numbers: C0000000, C0000001, ..."""
    return (prefix + pd.Series(np.arange(count)).astype(str).str.zfill(width)).to_numpy(dtype=object)


def _pick(rng: np.random.Generator, size: int, rate: float) -> np.ndarray:
    return rng.random(size) < rate


def _typo(rng: np.random.Generator, values: np.ndarray, rate: float) -> np.ndarray:
    """One keyboard slip in a fraction of the values: swap, drop or double a letter."""
    out = _strings(values).copy()
    lengths = np.fromiter((len(v) for v in out), dtype=np.int64, count=len(out))
    hit = np.flatnonzero(_pick(rng, len(out), rate) & (lengths > 3))
    kinds = rng.integers(0, 3, len(hit))
    positions = rng.integers(1, np.maximum(lengths[hit] - 1, 2))
    for index, kind, at in zip(hit, kinds, positions, strict=True):  # only the corrupted few
        word = out[index]
        if kind == 0:
            out[index] = word[: at - 1] + word[at] + word[at - 1] + word[at + 1:]
        elif kind == 1:
            out[index] = word[:at] + word[at + 1:]
        else:
            out[index] = word[:at] + word[at] + word[at:]
    return out


def _case_and_space(rng: np.random.Generator, values: np.ndarray, *, title: float, upper: float,
                    space: float) -> np.ndarray:
    """Title-case, upper-case or pad a fraction of the values, as hand-typed forms do."""
    out = pd.Series(_strings(values))
    roll = rng.random(len(out))
    out = out.where(roll >= title, out.str.title())
    out = out.where((roll < title) | (roll >= title + upper), out.str.upper())
    padded = _pick(rng, len(out), space)
    out = out.where(~padded, " " + out + "  ")
    return out.to_numpy(dtype=object)


def _blank(rng: np.random.Generator, values: np.ndarray, rate: float) -> np.ndarray:
    return np.where(_pick(rng, len(values), rate), "", _strings(values))


def _gmail_variants(rng: np.random.Generator, emails: np.ndarray, rate: float) -> np.ndarray:
    """Gmail delivers ``a.n.n+shop@gmail.com`` to ``ann@gmail.com``: write some that way."""
    out = _strings(emails).copy()
    gmail = np.flatnonzero(pd.Series(out).str.endswith("@gmail.com").to_numpy() & _pick(rng, len(out), rate))
    tags = np.array(["+shop", "+orders", "+news", ""])[rng.integers(0, 4, len(gmail))]
    where = rng.random(len(gmail))
    for index, tag, at in zip(gmail, tags, where, strict=True):
        mailbox = out[index][: -len("@gmail.com")].replace(".", "")
        cut = 1 + int(at * max(1, len(mailbox) - 1))
        out[index] = mailbox[:cut] + "." + mailbox[cut:] + tag + "@gmail.com"
    return out


def _phone_formats(rng: np.random.Generator, numbers: np.ndarray, *, styles: tuple[int, ...]) -> np.ndarray:
    """UK numbers (10 national digits after the 0) written several ways:
    0: ``07911 123456``, 1: ``+44 7911 123456``, 2: ``07911123456``, 3: ``+447911-123-456``."""
    digits = _strings(numbers)
    head = pd.Series(digits).str[:4].to_numpy(dtype=object)
    tail = pd.Series(digits).str[4:].to_numpy(dtype=object)
    written = {
        0: _join("0", head, " ", tail),
        1: _join("+44 ", head, " ", tail),
        2: _join("0", digits),
        3: _join("+44", head, "-", pd.Series(tail).str[:3].to_numpy(dtype=object), "-",
                 pd.Series(tail).str[3:].to_numpy(dtype=object)),
    }
    style = np.asarray(styles)[rng.integers(0, len(styles), len(digits))]
    out = written[styles[0]].copy()
    for code in styles[1:]:
        out = np.where(style == code, written[code], out)
    return out


def _scrambled(ids: np.ndarray, digits: int, salt: int) -> np.ndarray:
    """A distinct ``digits``-digit number per id (a bijection modulo 10**digits), so that
    consecutive people or households get unrelated phone numbers, not near-identical ones."""
    modulus = 10**digits
    return ((ids.astype(np.int64) * 7_368_787 + salt) % modulus).astype(str)


def generate_people(people: int, rng: np.random.Generator, *, first_person: int = 0,
                    first_household: int = 0) -> pd.DataFrame:
    """The true people: one row each, with their household and every value they own.
    Ids start at ``first_person`` and ``first_household`` (newcomers in a change batch)."""
    index = np.arange(people)
    person = first_person + index
    sizes = rng.choice([1, 2, 3, 4, 5], size=people, p=[0.50, 0.25, 0.13, 0.09, 0.03])
    household = first_household + np.repeat(index, sizes)[:people]
    head = np.r_[True, household[1:] != household[:-1]]  # first member of each household
    head_index = np.maximum.accumulate(np.where(head, index, 0))

    names, first_share, surnames, surname_share = census_names()
    first_index = rng.choice(len(names), size=people, p=first_share)
    own_last = surnames[rng.choice(len(surnames), size=people, p=surname_share)]
    keeps_family_name = _pick(rng, people, 0.8)
    last = np.where(head | ~keeps_family_name, own_last, own_last[head_index])
    dob = np.datetime64("1940-01-01") + rng.integers(0, 365 * 65, people).astype("timedelta64[D]")

    # twins: a household's second member born the same day as the first, same surname
    second = ~head & np.r_[False, head[:-1]]
    twin = second & _pick(rng, people, 0.04)
    dob = np.where(twin, dob[head_index], dob)
    last = np.where(twin, last[head_index], last)
    # family members have different first names, except a parent's namesake ("junior": 2% of
    # second members, who take the head's first name and surname)
    for _ in range(2):
        for lag in (1, 2, 3, 4):
            earlier = np.r_[np.full(lag, -1), first_index[:-lag]]
            same_household = np.r_[np.zeros(lag, bool), household[lag:] == household[:-lag]]
            clash = same_household & (first_index == earlier)
            first_index = np.where(clash, (first_index + 1) % len(names), first_index)
    junior = second & ~twin & _pick(rng, people, 0.02)
    first_index = np.where(junior, first_index[head_index], first_index)
    last = np.where(junior, last[head_index], last)
    first = names[first_index]

    number = rng.integers(1, 200, people).astype(str)
    street = STREETS[rng.integers(0, len(STREETS), people)]
    address = _join(number[head_index], " ", street[head_index])
    area = np.array(["SW", "NW", "SE", "EC", "WC", "N", "E", "W", "B", "M", "LS", "G", "EH", "CF", "BS"])
    outward = _join(area[(household * 7) % len(area)], (household % 19 + 1).astype(str))
    inward = _join((household % 9 + 1).astype(str), np.char.upper(
        np.char.add(np.array(list("abdefghjlnpqrstuwxyz"))[household % 20],
                    np.array(list("abdefghjlnpqrstuwxyz"))[(household // 20) % 20])))
    postcode = _join(outward, " ", inward)
    moved = _pick(rng, people, 0.25)
    old_address = _join(rng.integers(1, 200, people).astype(str), " ",
                        STREETS[rng.integers(0, len(STREETS), people)])
    old_postcode = _join(area[rng.integers(0, len(area), people)], rng.integers(1, 20, people).astype(str),
                         " 1AA")

    domain = DOMAINS[rng.choice(len(DOMAINS), size=people, p=DOMAIN_WEIGHTS)]
    email = _join(first, ".", last, person.astype(str), "@", domain)
    work_email = _join(pd.Series(first).str[0].to_numpy(dtype=object), last, person.astype(str),
                       "@work.example")
    family_email = _join("the", last[head_index], household.astype(str), "@family.example")
    # a family address: 10% of households of two or more, used by 80% of their members
    family_household = _pick(rng, people, 0.1)[household - first_household]
    shares_family_email = (sizes[household - first_household] > 1) & family_household & _pick(rng, people, 0.8)
    mobile = _join("79", np.char.zfill(_scrambled(person, 8, 3), 8))  # 079 mobiles, one per person
    landline = _join("207", np.char.zfill(_scrambled(household, 7, 5), 7))  # 020 London, per household
    created = np.datetime64("2019-01-01") + rng.integers(0, 365 * 4, people).astype("timedelta64[D]")
    loyalty = np.where(_pick(rng, people, 0.5), _join("L-", (100_000 + person).astype(str)), "")
    return pd.DataFrame({
        "person_id": person, "household": household, "first": first,
        "nickname": pd.Series(first).map(NICKNAMES).fillna("").to_numpy(dtype=object),
        "last": last, "dob": dob, "twin": twin, "address": address, "postcode": postcode,
        "moved": moved, "old_address": old_address, "old_postcode": old_postcode, "email": email,
        "work_email": work_email, "family_email": np.where(shares_family_email, family_email, ""),
        "mobile": mobile, "landline": landline, "created": created, "loyalty": loyalty,
    })


def _first_names(rng: np.random.Generator, who: pd.DataFrame, *, nickname: float, typo: float) -> np.ndarray:
    first = who["first"].to_numpy(dtype=object)
    nick = who["nickname"].to_numpy(dtype=object)
    use_nick = _pick(rng, len(who), nickname) & (nick != "")
    return _typo(rng, np.where(use_nick, nick, first), typo)


def _swap_names(rng: np.random.Generator, first: np.ndarray, last: np.ndarray, rate: float):
    swapped = _pick(rng, len(first), rate)
    return np.where(swapped, last, first), np.where(swapped, first, last)


def _crm(rng: np.random.Generator, people: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CRM contacts: 70% of people, 5% of them twice (a duplicate contact typed again).
    Returns the table and, row for row, the people it holds (as each builder does)."""
    held = people[_pick(rng, len(people), 0.7)]
    twice = held[_pick(rng, len(held), 0.05)]
    who = pd.concat([held, twice], ignore_index=True)
    n = len(who)
    first, last = _swap_names(rng, _first_names(rng, who, nickname=0.1, typo=0.03),
                              _typo(rng, who["last"].to_numpy(dtype=object), 0.03), 0.01)
    created = who["created"].to_numpy() + np.where(np.arange(n) >= len(held),
                                                   rng.integers(30, 900, n), 0).astype("timedelta64[D]")
    at_old = who["moved"].to_numpy() & _pick(rng, n, 0.5)
    email = np.where(_pick(rng, n, 0.1), who["work_email"], who["email"])
    return pd.DataFrame({
        "contact_id": _ids("C", n, 7),
        "first_name": _case_and_space(rng, first, title=0.8, upper=0.05, space=0.02),
        "last_name": _case_and_space(rng, last, title=0.8, upper=0.05, space=0.02),
        "email": _blank(rng, _case_and_space(rng, _gmail_variants(rng, email, 0.1), title=0, upper=0.05,
                                             space=0.02), 0.05),
        "phone": _blank(rng, _phone_formats(rng, who["mobile"].to_numpy(dtype=object), styles=(0, 1, 2, 3)),
                        0.2),
        "customer_id": _join("CUST-", who["person_id"].astype(str).to_numpy(dtype=object)),
        "dob": _blank(rng, who["dob"].to_numpy().astype("datetime64[D]").astype(str), 0.1),
        "address": _blank(rng, np.where(at_old, who["old_address"], who["address"]), 0.1),
        "postcode": _blank(rng, np.where(at_old, who["old_postcode"], who["postcode"]), 0.1),
        "created_at": created.astype("datetime64[D]").astype(str),
    }), who


def _ecommerce(rng: np.random.Generator, people: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Orders: 0-3 per person; personal, Gmail-variant, work or family email; loyalty number."""
    counts = rng.choice([0, 1, 2, 3], size=len(people), p=[0.45, 0.35, 0.15, 0.05])
    who = people.iloc[np.repeat(np.arange(len(people)), counts)].reset_index(drop=True)
    n = len(who)
    roll = rng.random(n)
    family = who["family_email"].to_numpy(dtype=object)
    email = np.where(roll < 0.15, who["work_email"], who["email"])
    email = np.where((roll > 0.85) & (family != ""), family, email)
    first, last = _swap_names(rng, _first_names(rng, who, nickname=0.15, typo=0.04),
                              _typo(rng, who["last"].to_numpy(dtype=object), 0.02), 0.02)
    at_old = who["moved"].to_numpy() & _pick(rng, n, 0.3)
    order_date = who["created"].to_numpy() + rng.integers(0, 600, n).astype("timedelta64[D]")
    return pd.DataFrame({
        "order_id": _ids("O", n, 8),
        "buyer_email": _case_and_space(rng, _gmail_variants(rng, email, 0.25), title=0, upper=0.03, space=0.03),
        "loyalty_no": np.where(_pick(rng, n, 0.8), who["loyalty"], ""),
        "buyer_first": _case_and_space(rng, first, title=0.5, upper=0.1, space=0.03),
        "buyer_last": _case_and_space(rng, last, title=0.5, upper=0.1, space=0.03),
        "ship_address": np.where(at_old, who["old_address"], who["address"]),
        "ship_postcode": np.where(at_old, who["old_postcode"], who["postcode"]),
        "order_date": order_date.astype("datetime64[D]").astype(str),
    }), who


def _support(rng: np.random.Generator, people: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Support tickets: 40% of people; email or phone (mobile, or the household landline);
    birth dates written day first."""
    who = people[_pick(rng, len(people), 0.4)].reset_index(drop=True)
    n = len(who)
    has_email = _pick(rng, n, 0.65)
    phone = np.where(_pick(rng, n, 0.2), who["landline"], who["mobile"])
    dob = pd.to_datetime(who["dob"]).dt.strftime("%d/%m/%Y").to_numpy(dtype=object)
    created = who["created"].to_numpy() + rng.integers(0, 900, n).astype("timedelta64[D]")
    return pd.DataFrame({
        "ticket_id": _ids("T", n, 7),
        "requester_email": np.where(has_email, _gmail_variants(rng, who["email"].to_numpy(dtype=object), 0.1), ""),
        "requester_phone": np.where(has_email & _pick(rng, n, 0.5), "",
                                    _phone_formats(rng, phone, styles=(0, 2))),
        "requester_first": _first_names(rng, who, nickname=0.25, typo=0.05),
        "requester_last": _typo(rng, who["last"].to_numpy(dtype=object), 0.05),
        "requester_dob": _blank(rng, dob, 0.5),
        "created_at": created.astype("datetime64[D]").astype(str),
    }), who


BUILDERS = {"crm": _crm, "ecommerce": _ecommerce, "support": _support}


def generate_sources(people: int, *, seed: int = 7) -> dict[str, pd.DataFrame]:
    """The three source tables plus ``truth`` (``record_key``, ``person_id``, ``household``)."""
    rng = np.random.default_rng(seed)
    population = generate_people(people, rng)
    tables: dict[str, pd.DataFrame] = {}
    truth = []
    for source, build in BUILDERS.items():
        tables[source], who = build(rng, population)
        truth.append(_truth(source, tables[source], who))
    tables["truth"] = pd.concat(truth, ignore_index=True)
    return tables


def _truth(source: str, table: pd.DataFrame, who: pd.DataFrame) -> pd.DataFrame:
    """Truth rows of ``table``: ``who`` holds each row's person and household, in row order."""
    return pd.DataFrame({
        "record_key": (source + ":" + table[KEY_COLUMNS[source]].astype(str)).to_numpy(),
        "person_id": who["person_id"].to_numpy(),
        "household": who["household"].to_numpy(),
    })


def change_batch(tables: dict[str, pd.DataFrame], *, fraction: float, seed: int) -> dict[str, pd.DataFrame]:
    """The next state of ``tables``, with its truth.

    In CRM and support, ``fraction`` of the records change: 60% are updated (half a new
    email, half a new phone), 20% deleted, 20% inserted (half a new record of an existing
    person, typed again, half a record of a person never seen before). Orders only grow:
    ``fraction`` new orders, half of existing people, half of new ones.
    """
    rng = np.random.default_rng(seed)
    truth = tables["truth"]
    by_key = truth.set_index("record_key")
    newcomers_needed = sum(max(1, int(len(tables[s]) * fraction)) for s in ("crm", "support"))
    population = generate_people(max(20, newcomers_needed * 3), np.random.default_rng(seed + 1),
                                 first_person=int(truth["person_id"].max()) + 1,
                                 first_household=int(truth["household"].max()) + 1)
    out = dict(tables)
    added, deleted = [], []
    for source in BUILDERS:
        table, key = tables[source], KEY_COLUMNS[source]
        n = max(1, int(len(table) * fraction))
        chosen = rng.choice(len(table), size=n, replace=False)
        if source == "ecommerce":
            updates, deletes, copies = chosen[:0], chosen[:0], chosen
        else:
            updates, deletes, copies = chosen[: n * 6 // 10], chosen[n * 6 // 10: n * 8 // 10], chosen[n * 8 // 10:]
        table = table.copy()
        email, phone = ("email", "phone") if source == "crm" else ("requester_email", "requester_phone")
        if len(updates):
            new_email, new_phone = updates[::2], updates[1::2]
            ids = table[key].to_numpy(dtype=object)
            table.loc[table.index[new_email], email] = _join("new.", ids[new_email], "@changed.example")
            # distinct within a batch (row numbers), so a new phone links no two people
            table.loc[table.index[new_phone], phone] = _join(
                "0770", pd.Series((seed * 7919 + new_phone) % 10_000_000).astype(str).str.zfill(7).to_numpy())
        deleted += list(source + ":" + table[key].iloc[deletes].astype(str))
        again = table.iloc[copies[: max(1, len(copies) // 2)]].copy()
        again_who = by_key.loc[(source + ":" + again[key].astype(str)).to_numpy(), ["person_id", "household"]]
        again[key] = _join(f"R{seed}-", again[key].to_numpy(dtype=object))
        fresh, fresh_who = BUILDERS[source](rng, population.iloc[: max(20, len(copies) * 3)])
        keep = len(copies) - len(again)
        fresh, fresh_who = fresh.iloc[:keep].copy(), fresh_who.iloc[:keep]
        fresh[key] = _join(f"N{seed}-", fresh[key].to_numpy(dtype=object))
        out[source] = pd.concat([table.drop(index=table.index[deletes]), again, fresh], ignore_index=True)
        added += [_truth(source, again, again_who), _truth(source, fresh, fresh_who)]
    kept = truth[~truth["record_key"].isin(deleted)]
    out["truth"] = pd.concat([kept, *added], ignore_index=True)
    return out


def write_sources(
    people: int, output_dir: str | Path, *, seed: int = 7, batches: int = 0, change_fraction: float = 0.01
) -> dict[str, int]:
    """Write the generated sources as CSV (same layout as ``data/sample``) and ``truth.csv``:
    the initial state, or the state after ``batches`` change batches."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tables = generate_sources(people, seed=seed)
    for batch in range(1, batches + 1):
        tables = change_batch(tables, fraction=change_fraction, seed=seed * 1000 + batch)
    counts = {}
    for name, table in tables.items():
        table.to_csv(folder / SOURCE_FILES.get(name, TRUTH_FILE), index=False)
        counts[name] = len(table)
    return counts
