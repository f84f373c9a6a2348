"""Deterministic synthetic people spread over three source systems, with ground truth.

The output has the same files and columns as ``data/sample`` (CRM contacts, e-commerce orders,
support tickets), so any config written for the sample runs on it by changing the paths. It is
vectorised with numpy: no Python loop over records. ``truth.csv`` maps each record key to
its true person id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FIRST_NAMES = np.array(
    ["james", "mary", "robert", "patricia", "john", "jennifer", "michael", "linda", "david", "elizabeth", "william", "barbara", "richard", "susan", "joseph", "jessica", "thomas", "sarah", "charles", "karen", "christopher", "lisa", "daniel", "nancy", "matthew", "betty", "anthony", "margaret", "mark", "sandra", "donald", "ashley", "steven", "kimberly", "paul", "emily", "andrew", "donna", "joshua", "michelle", "kenneth", "carol", "kevin", "amanda", "brian", "dorothy", "george", "melissa", "timothy", "deborah", "ronald", "stephanie", "edward", "rebecca", "jason", "sharon", "jeffrey", "laura", "ryan", "cynthia", "jacob", "kathleen", "gary", "amy", "nicholas", "angela", "eric", "shirley", "jonathan", "anna", "stephen", "brenda", "larry", "pamela", "justin", "emma", "scott", "nicole", "brandon", "helen", "benjamin", "samantha", "samuel", "katherine", "gregory", "christine", "alexander", "debra", "frank", "rachel", "patrick", "carolyn", "raymond", "janet", "jack", "catherine", "dennis", "maria", "jerry", "heather", "tyler", "diane", "aaron", "ruth", "jose", "julie", "adam", "olivia", "nathan", "joyce", "henry", "virginia", "zoe", "chloe", "liam", "noah", "oliver", "ava", "sophia", "mia", "amelia", "harper", "evelyn", "lucas", "ethan", "mason", "logan", "isabella", "ella", "aria", "scarlett", "grace", "lily", "hannah"]
)
LAST_NAMES = np.array(
    ["smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez", "martinez", "hernandez", "lopez", "gonzalez", "wilson", "anderson", "thomas", "taylor", "moore", "jackson", "martin", "lee", "perez", "thompson", "white", "harris", "sanchez", "clark", "ramirez", "lewis", "robinson", "walker", "young", "allen", "king", "wright", "scott", "torres", "nguyen", "hill", "flores", "green", "adams", "nelson", "baker", "hall", "rivera", "campbell", "mitchell", "carter", "roberts", "gomez", "phillips", "evans", "turner", "diaz", "parker", "cruz", "edwards", "collins", "reyes", "stewart", "morris", "morales", "murphy", "cook", "rogers", "gutierrez", "ortiz", "morgan", "cooper", "peterson", "bailey", "reed", "kelly", "howard", "ramos", "kim", "cox", "ward", "richardson", "watson", "brooks", "chavez", "wood", "james", "bennett", "gray", "mendoza", "ruiz", "hughes", "price", "alvarez", "castillo", "sanders", "patel", "myers", "long", "ross", "foster", "jimenez", "powell", "jenkins", "perry", "russell", "sullivan", "bell", "coleman", "butler", "henderson", "barnes", "gonzales", "fisher", "vasquez", "simmons", "romero", "jordan", "patterson", "alexander", "hamilton", "graham", "reynolds", "griffin", "wallace", "moreno", "west", "cole", "hayes", "bryant", "herrera", "gibson", "ellis", "tran", "medina", "aguilar", "stevens", "murray", "ford", "castro", "marshall", "owens", "harrison", "fernandez", "mcdonald", "woods", "washington", "kennedy", "wells", "vargas", "henry", "chen", "freeman", "webb", "tucker", "guzman", "burns", "crawford", "olson", "simpson", "porter", "hunter", "gordon", "mendez", "silva", "shaw", "snyder", "mason", "dixon", "munoz", "hunt", "hicks", "holmes", "palmer", "wagner", "black", "robertson", "boyd", "rose", "stone", "salazar", "fox", "warren", "mills", "meyer", "rice", "schmidt"]
)
DOMAINS = np.array(["example.com", "mail.example", "example.org", "post.example", "inbox.example"])
SOURCE_FILES = {
    "crm": "crm_contacts.csv",
    "ecommerce": "orders.csv",
    "support": "support_tickets.csv",
}


def _typo(rng: np.random.Generator, values: np.ndarray, rate: float) -> np.ndarray:
    """Swap two adjacent letters in a fraction of the values (vectorised over the array)."""
    out = values.astype(object).copy()
    hit = np.flatnonzero((rng.random(len(values)) < rate) & (np.char.str_len(values.astype(str)) > 3))
    for index in hit:  # only the corrupted few, never every record
        word = out[index]
        at = int(rng.integers(1, len(word) - 1))
        out[index] = word[: at - 1] + word[at] + word[at - 1] + word[at + 1 :]
    return out


def _phone_formats(rng: np.random.Generator, digits: np.ndarray) -> np.ndarray:
    """The same UK mobile written three ways: national spaced, international, compact."""
    style = rng.integers(0, 3, len(digits))
    national = np.char.add("07911 ", digits)
    international = np.char.add("+44 7911 ", digits)
    compact = np.char.add("07911", digits)
    return np.where(style == 0, national, np.where(style == 1, international, compact))


def generate_sources(people: int, *, seed: int = 7) -> dict[str, pd.DataFrame]:
    """Generate the three source tables plus ``truth`` (record_key -> person_id)."""
    rng = np.random.default_rng(seed)
    person = np.arange(people)
    first = FIRST_NAMES[rng.integers(0, len(FIRST_NAMES), people)]
    last = LAST_NAMES[rng.integers(0, len(LAST_NAMES), people)]
    dob = np.datetime64("1950-01-01") + rng.integers(0, 365 * 50, people).astype("timedelta64[D]")
    domain = DOMAINS[rng.integers(0, len(DOMAINS), people)]
    email = np.char.add(
        np.char.add(np.char.add(np.char.add(first, "."), last), person.astype(str)),
        np.char.add("@", domain),
    )
    alt_email = np.char.add(np.char.add(first.astype("<U1"), last), np.char.add(person.astype(str), "@webmail.example"))
    phone_digits = np.char.zfill((100000 + person).astype(str), 6)
    created = np.datetime64("2020-01-01") + rng.integers(0, 365 * 3, people).astype("timedelta64[D]")

    tables: dict[str, pd.DataFrame] = {}
    in_crm = rng.random(people) < 0.7
    crm = person[in_crm]
    tables["crm"] = pd.DataFrame(
        {
            "contact_id": np.char.add("C", crm.astype(str)),
            "first_name": np.char.capitalize(first[crm].astype(str)),
            "last_name": _typo(rng, last[crm], 0.05),
            "email": np.where(rng.random(len(crm)) < 0.1, np.char.upper(email[crm]), email[crm]),
            "phone": np.where(rng.random(len(crm)) < 0.2, "", _phone_formats(rng, phone_digits[crm])),
            "customer_id": np.char.add("CUST-", crm.astype(str)),
            "dob": np.where(rng.random(len(crm)) < 0.1, "", dob[crm].astype(str)),
            "created_at": created[crm].astype(str),
        }
    )
    orders_per_person = rng.choice([0, 1, 2], size=people, p=[0.4, 0.45, 0.15])
    buyer = np.repeat(person, orders_per_person)
    use_alt = rng.random(len(buyer)) < 0.3
    tables["ecommerce"] = pd.DataFrame(
        {
            "order_id": np.char.add("O", np.arange(len(buyer)).astype(str)),
            "buyer_email": np.where(use_alt, alt_email[buyer], email[buyer]),
            "loyalty_no": np.where(rng.random(len(buyer)) < 0.5, np.char.add("L-", buyer.astype(str)), ""),
            "buyer_first": _typo(rng, first[buyer], 0.1),
            "buyer_last": last[buyer],
            "order_date": (created[buyer] + rng.integers(0, 400, len(buyer)).astype("timedelta64[D]")).astype(str),
        }
    )
    in_support = rng.random(people) < 0.4
    requester = person[in_support]
    has_email = rng.random(len(requester)) < 0.6
    tables["support"] = pd.DataFrame(
        {
            "ticket_id": np.char.add("T", requester.astype(str)),
            "requester_email": np.where(has_email, email[requester], ""),
            "requester_phone": np.where(
                has_email & (rng.random(len(requester)) < 0.5), "", _phone_formats(rng, phone_digits[requester])
            ),
            "requester_first": first[requester],
            "requester_last": _typo(rng, last[requester], 0.05),
            "requester_dob": np.where(
                rng.random(len(requester)) < 0.5, "", np.datetime_as_string(dob[requester]).astype("<U10")
            ),
            "created_at": (created[requester] + rng.integers(0, 700, len(requester)).astype("timedelta64[D]")).astype(str),
        }
    )
    tables["truth"] = pd.concat(
        [
            pd.DataFrame({"record_key": "crm:" + tables["crm"]["contact_id"], "person_id": crm}),
            pd.DataFrame({"record_key": "ecommerce:" + tables["ecommerce"]["order_id"], "person_id": buyer}),
            pd.DataFrame({"record_key": "support:" + tables["support"]["ticket_id"], "person_id": requester}),
        ],
        ignore_index=True,
    )
    return tables


def write_sources(people: int, output_dir: str | Path, *, seed: int = 7) -> dict[str, int]:
    """Write the generated sources as CSV (same layout as ``data/sample``) and ``truth.csv``."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, table in generate_sources(people, seed=seed).items():
        table.to_csv(folder / SOURCE_FILES.get(name, f"{name}.csv"), index=False)
        counts[name] = len(table)
    return counts
