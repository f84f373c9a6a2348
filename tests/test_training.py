"""`idr train` on generated data: EM learns that agreeing identifiers are evidence of a match,
and the training report says what was learnt and what to do about Splink's warnings."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from resolution.config import load_config
from resolution.generate import write_sources
from resolution.model_report import (
    SPLINK_DOCS,
    UnobservedLevel,
    advise,
    describe_model,
    em_not_converged,
    level_label,
    unobserved_levels,
)
from resolution.scoring import SMOOTHING_FLOOR, load_model
from resolution.threshold import CEILING, FLOOR, load_proposal, proposal_from_buckets, proposal_path
from resolution.training import train

REPO = Path(__file__).resolve().parents[1]
SOURCE_FILES = ("crm_contacts.csv", "orders.csv", "support_tickets.csv")


def _exact_level(model: dict, comparison: str) -> dict:
    [found] = [c for c in model["comparisons"] if c["output_column_name"] == comparison]
    return next(level for level in found["comparison_levels"] if not level.get("is_null_level"))


def _levels_of(lines: list[str], comparison: str) -> list[str]:
    """The report's level rows of one comparison, spaces collapsed."""
    start = lines.index(f"  {comparison}") + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return [" ".join(line.split()) for line in lines[start:end]]


def _add_column(path: Path, name: str, value: str) -> None:
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    with path.open("w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([[*rows[0], name], *([*row, value] for row in rows[1:])])


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """One training (slow on 2 cores: the tests share it) on 400 generated people whose records
    all say ``country: GB``, compared exactly: no pair of records can disagree on it, so its
    "All other comparisons" level is never observed, neither among matches nor among
    non-matches. ``max_pairs`` 1e6, Splink's default, makes Splink warn of it (and is above the
    305k pairs of the 782 records: u is estimated on all of them)."""
    folder = tmp_path_factory.mktemp("training")
    data = folder / "generated"
    write_sources(400, data, seed=11)
    for name in SOURCE_FILES:
        _add_column(data / name, "country", "GB")
    settings = yaml.safe_load((REPO / "conf" / "generated.yml").read_text(encoding="utf-8"))
    for source in settings["sources"]:
        source["path"] = str(data / Path(source["path"]).name)
        source["columns"]["country"] = "country"
    settings["storage"]["warehouse"] = str(folder / "lakehouse")
    matching = settings["matching"]
    matching["model"] = str(folder / "models" / "model.json")
    matching["comparisons"]["country"] = "exact"
    matching["training"]["max_pairs"] = 1e6
    config_path = folder / "generated.yml"
    config_path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    config = load_config(config_path)
    return config, train(spark, config)


def test_train_saves_a_model_whose_exact_matches_carry_positive_weight(trained):
    config, (path, _) = trained
    model = load_model(path, config)
    assert json.loads(path.read_text())["sql_dialect"] == "spark"
    for comparison in ("email", "phone", "last_name", "first_name", "dob"):
        level = _exact_level(model, comparison)
        assert level["m_probability"] > 10 * level["u_probability"], comparison
    assert path.with_suffix(".match_weights.html").stat().st_size > 1000
    assert path.with_suffix(".m_u_parameters.html").stat().st_size > 1000
    assert 0 < model["probability_two_random_records_match"] < 0.05


def test_training_report_names_the_prior_and_every_level_with_its_m_u_and_weight(trained):
    config, (path, report) = trained
    model = load_model(path, config)
    assert report.model == model
    lines = report.lines()
    prior = model["probability_two_random_records_match"]
    assert f"probability {prior:.3g} (one pair in {1 / prior:,.0f})" in lines[0]
    assert f"{math.log2(prior / (1 - prior)):+.2f}" in lines[0]
    names = [c["output_column_name"] for c in model["comparisons"]]
    assert names == list(config.matching.comparisons)
    assert [f"  {name}" for name in names] == [line for line in lines if line in {f"  {n}" for n in names}]
    for comparison in model["comparisons"]:
        rows = _levels_of(lines, comparison["output_column_name"])
        assert len(rows) == len(comparison["comparison_levels"])
        for position, (level, row) in enumerate(zip(comparison["comparison_levels"], rows, strict=True)):
            assert row.startswith(level_label(level, position) + " "), row
            if level.get("is_null_level"):
                assert "null level: weight 0" in row
                continue
            m, u = level["m_probability"], level["u_probability"]
            assert f" m {m:.3g} u {u:.3g} weight {math.log2(m / u):+.2f}" in row
    assert (path.parent / "model.report.txt").read_text(encoding="utf-8") == "\n".join(lines) + "\n"


def test_training_report_lists_the_levels_no_pair_reached_as_never_observed(trained):
    config, (path, report) = trained
    assert UnobservedLevel("country", "All other comparisons", ("m", "u")) in report.unobserved
    assert all(level.comparison != "country" or level.level == "All other comparisons"
               for level in report.unobserved)
    # the saved model's floored probabilities are exactly those the report calls unobserved
    floored = {
        (c["output_column_name"], level_label(level, position), p)
        for c in load_model(path, config)["comparisons"]
        for position, level in enumerate(c["comparison_levels"])
        for p in ("m", "u")
        if level.get(f"{p}_probability") == SMOOTHING_FLOOR
    }
    assert floored == {(level.comparison, level.level, p) for level in report.unobserved for p in level.missing}
    lines = report.lines()
    assert _levels_of(lines, "country")[1:] == [
        "Exact match on country m 1 u 1 weight +0.00",
        f"All other comparisons m {SMOOTHING_FLOOR:.3g} u {SMOOTHING_FLOOR:.3g} weight +0.00 never observed: m and u",
    ]
    assert "  - country, u: All other comparisons" in lines
    assert "  - country, m: All other comparisons" in lines


def test_training_report_says_what_to_do_about_each_warning_splink_logged(trained):
    _, (_, report) = trained
    assert any("default value for `max_pairs`" in warning for warning in report.warnings)
    assert any("on comparison country not observed in dataset, unable to train m value" in warning
               for warning in report.warnings)
    lines = report.lines()
    start = lines.index("Splink warnings:")
    assert not any(SPLINK_DOCS in line for line in lines[start:])  # every one recognised
    assert "  - u was estimated from 1e6 random pairs, Splink's default max_pairs" in lines[start:]
    [country] = [i for i, line in enumerate(lines) if line.startswith("  - country: no m for the levels")]
    assert lines[country].endswith(": All other comparisons")
    assert "does not block on country" in lines[country + 1]


# --- the report's pure functions, on hand-written and bundled models -------------------------------

RAW_MODEL = {  # as Splink saves it: an unobserved level has no m or u
    "probability_two_random_records_match": 0.01,
    "comparisons": [
        {
            "output_column_name": "email",
            "comparison_levels": [
                {"label_for_charts": "email is NULL", "is_null_level": True},
                {"label_for_charts": "Exact match on email", "m_probability": 0.8, "u_probability": 0.001},
                {"label_for_charts": "One edit apart", "u_probability": 0.002},
                {"label_for_charts": "All other comparisons", "m_probability": 0.2, "u_probability": 0.997},
            ],
        },
        {
            "output_column_name": "dob",
            "comparison_levels": [
                {"label_for_charts": "dob is NULL", "is_null_level": True},
                {"label_for_charts": "Exact match", "m_probability": 0.9, "u_probability": 0.01},
                {"label_for_charts": "Within a year", "m_probability": 0.1, "u_probability": 0.0},
                {"label_for_charts": "All other comparisons"},
            ],
        },
    ],
}


def test_unobserved_levels_are_the_non_null_levels_missing_m_or_u():
    assert unobserved_levels(RAW_MODEL) == (
        UnobservedLevel("email", "One edit apart", ("m",)),
        UnobservedLevel("dob", "Within a year", ("u",)),
        UnobservedLevel("dob", "All other comparisons", ("m", "u")),
    )


def test_describe_model_gives_each_level_its_weight_and_what_to_do_about_the_unobserved():
    lines = describe_model(RAW_MODEL, unobserved=unobserved_levels(RAW_MODEL), warnings=())
    assert lines[0].startswith("prior: two random records match with probability 0.01 (one pair in 100)")
    assert lines[0].endswith(f"{math.log2(0.01 / 0.99):+.2f}")
    text = [" ".join(line.split()) for line in lines]
    assert f"Exact match on email m 0.8 u 0.001 weight {math.log2(800):+.2f}" in text
    assert "One edit apart m - u 0.002 weight n/a never observed: m" in text
    assert "All other comparisons m - u - weight n/a never observed: m and u" in text
    assert "- email, m: One edit apart" in text
    assert "- dob, m: All other comparisons" in text
    assert "- dob, u: Within a year, All other comparisons" in text
    [u_advice] = [line for line in text if line.startswith("no pair of the random sample")]
    assert "matching.training.max_pairs" in u_advice
    assert lines[-1] == "Splink warnings: none"


def test_a_comparison_without_any_m_is_one_every_em_rule_blocks_on():
    model = {**RAW_MODEL, "comparisons": [{
        "output_column_name": "email",
        "comparison_levels": [
            {"label_for_charts": "email is NULL", "is_null_level": True},
            {"label_for_charts": "Exact match on email", "u_probability": 0.001},
            {"label_for_charts": "All other comparisons", "u_probability": 0.999},
        ],
    }]}
    lines = describe_model(model, unobserved=unobserved_levels(model))
    at = lines.index("  - email, m: Exact match on email, All other comparisons")
    assert lines[at + 1].startswith("    every EM blocking rule blocks on email: add an EM blocking rule")


def test_describe_model_reads_the_bundled_model_with_its_own_numbers():
    model = json.loads((REPO / "conf" / "models" / "example_model.json").read_text(encoding="utf-8"))
    assert unobserved_levels(model) == ()  # floored when saved: every level has m and u
    lines = describe_model(model, unobserved=None)
    prior = model["probability_two_random_records_match"]
    assert f"{prior:.3g}" in lines[0] and f"{math.log2(prior / (1 - prior)):+.2f}" in lines[0]
    text = [" ".join(line.split()) for line in lines]
    for comparison in model["comparisons"]:
        assert comparison["output_column_name"] in text
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level["m_probability"], level["u_probability"]
            assert f"{level['label_for_charts']} m {m:.3g} u {u:.3g} weight {math.log2(m / u):+.2f}" in text
    assert any(line.startswith("never observed in training: not known for a saved model") for line in lines)


SPLINK_WARNINGS = {  # as Splink 5.0.0 logs them (the modules named in resolution/model_report.py)
    "default_max_pairs": (
        "You are using the default value for `max_pairs`, which may be too small and thus lead to "
        "inaccurate estimates for your model's u-parameters. Consider increasing to 1e8 or 1e9, "
        "which will result in more accurate estimates, but with a longer run time."
    ),
    "level_m": "WARNING:\nLevel One edit apart on comparison email not observed in dataset, unable to train m value",
    "level_u": "WARNING:\nLevel Within a year on comparison dob not observed in dataset, unable to train u value",
    "not_fully_trained": (
        "\n -- WARNING --\nYou have called predict(), but there are some parameter estimates which "
        "have neither been estimated or specified in your settings dictionary.  To produce predictions "
        "the following untrained parameters will use default values.\nComparison: 'email':\n"
        "    m values not fully trained\nComparison: 'dob':\n    u values not fully trained"
    ),
    "no_prior_matches": (
        "WARNING: Deterministic matching rules led to no observed matches! This means that no possible "
        "record pairs are matches, and no records are linked to one another.\nIf this is truly the case "
        "then you do not need to run the linkage model.\nHowever this is usually in error; expected "
        "rules to have recall of 80%. Consider revising rules as they may have an error."
    ),
    "prior_is_one": (
        "WARNING: Probability two random records match is estimated to be 1.\nThis means that all "
        "possible record pairs are matches, and all records are linked to one another."
    ),
    "no_null_level": (
        "Warning: No null level found for comparison dob.\nIn most cases you want to define a "
        "comparison level that deals with the case that one or both sides of the comparison are null."
    ),
    "em_probe": "[EM sampling] Probe returned zero blocked pairs; skipping sampling",
    "settings": "SETTINGS VALIDATION: Errors were identified in your settings dictionary. \n",
    "jar": "Unable to load custom Spark SQL functions such as jaro_winkler from the jar that's provided with Splink.",
}


@pytest.mark.parametrize(("name", "expected"), [
    ("default_max_pairs", ["matching.training.max_pairs"]),
    ("level_m", ["does not block on email"]),
    ("level_u", ["matching.training.max_pairs"]),
    ("not_fully_trained", ["does not block on email", "matching.training.max_pairs"]),
    ("no_prior_matches", ["matching.training.prior_rules"]),
    ("prior_is_one", ["matching.training.prior_rules"]),
    ("no_null_level", ["give dob one of the kinds"]),
    ("em_probe", ["matching.training.em_blocking_rules"]),
    ("settings", ["sources' columns"]),
    ("jar", ["spark.jars"]),
])
def test_each_splink_warning_gets_its_advice(name, expected):
    findings = advise(SPLINK_WARNINGS[name])
    assert len(findings) == len(expected)
    for finding, phrase in zip(findings, expected, strict=True):
        assert phrase in finding.advice


def test_em_that_did_not_converge_is_advised_and_an_unknown_warning_printed_as_logged():
    message = em_not_converged("l.email = r.email", iterations=25, change=0.003, convergence=1e-4)
    [finding] = advise(message)
    assert finding.what == "EM blocked on l.email = r.email did not converge in 25 iterations"
    assert "matching.training.em_blocking_rules" in finding.advice
    lines = describe_model(RAW_MODEL, unobserved=None, warnings=["Something new\n  in two lines"])
    assert lines[-3:] == ["  - Something new", "      in two lines", f"    what to do: see the Splink docs ({SPLINK_DOCS})"]


def test_a_level_warned_of_by_two_em_passes_is_listed_once():
    lines = describe_model(RAW_MODEL, unobserved=None, warnings=[SPLINK_WARNINGS["level_m"]] * 2)
    assert lines[-3:] == [
        "Splink warnings:",
        "  - email: no m for the levels no EM pair fell in: One edit apart",
        lines[-1],
    ]
    assert lines[-1].startswith("    what to do: add an EM blocking rule that does not block on email")


def test_train_proposes_the_link_threshold_of_the_best_expected_f1_and_auto_uses_it(trained, tmp_path):
    config, (path, report) = trained
    proposal = load_proposal(path)
    assert proposal is not None and proposal_path(path).is_file()
    assert FLOOR <= proposal.threshold <= CEILING
    thresholds = [point.threshold for point in proposal.curve]
    assert thresholds == sorted(thresholds)
    # lower thresholds keep more links and find more of the expected matches
    assert [p.links for p in proposal.curve] == sorted((p.links for p in proposal.curve), reverse=True)
    assert [p.expected_recall for p in proposal.curve] == sorted((p.expected_recall for p in proposal.curve), reverse=True)
    best = max((p for p in proposal.curve if FLOOR <= p.threshold <= CEILING), key=lambda p: p.expected_f1)
    assert proposal.at(proposal.threshold).expected_f1 == best.expected_f1
    assert any(line.startswith(f"link threshold: the model proposes p >= {proposal.threshold:g}") for line in report.lines())

    settings = yaml.safe_load(Path(config.path).read_text(encoding="utf-8"))
    settings["matching"]["link_threshold"] = "auto"
    auto = tmp_path / "auto.yml"
    auto.write_text(yaml.safe_dump(settings), encoding="utf-8")
    loaded = load_config(auto)
    assert loaded.matching.link_threshold == proposal.threshold and loaded.matching.link_threshold_proposed
    assert loaded.matching.review_threshold <= loaded.matching.link_threshold


def test_expected_precision_and_recall_from_scores_alone():
    # weights 8 (p 0.996): 90 pairs; 0 (p 0.5): 20 pairs; -10 (p 0.001): 1000 pairs
    buckets = [(8.0, 90, 90 * 0.9961), (0.0, 20, 10.0), (-10.0, 1000, 1000 * 0.000976)]
    proposal = proposal_from_buckets(buckets)
    top, middle = proposal.at(0.997), proposal.at(0.5)
    assert top.links == 90 and middle.links == 110
    assert top.expected_precision > 0.99 and middle.expected_precision < top.expected_precision
    assert middle.expected_recall > top.expected_recall
    assert proposal.threshold == max((top, middle), key=lambda p: p.expected_f1).threshold
    assert proposal.at(0.0).links == 1110 and proposal.at(0.0).expected_recall == 1.0  # below every bucket: all
    assert proposal_from_buckets([]) is None


def test_auto_without_a_proposal_stops_the_run_naming_the_key(tmp_path):
    from resolution.config import ConfigError
    from resolution.pipeline import run_pipeline

    settings = yaml.safe_load((REPO / "conf" / "generated.yml").read_text(encoding="utf-8"))
    settings["matching"]["link_threshold"] = "auto"
    settings["matching"]["model"] = str(tmp_path / "untrained.json")
    path = tmp_path / "auto.yml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    config = load_config(path)
    assert config.matching.link_threshold_auto and not config.matching.link_threshold_proposed
    with pytest.raises(ConfigError) as caught:
        run_pipeline(None, config)  # refused before a session is needed
    assert caught.value.key == "matching.link_threshold" and "idr train" in caught.value.problem


def test_idr_train_threshold_only_proposes_again_without_training(trained, capsys):
    from resolution.cli import main

    config, (path, _) = trained
    model_before = path.read_text(encoding="utf-8")
    proposal_path(path).unlink()
    assert main(["train", "--config", config.path, "--threshold-only"]) == 0
    out = capsys.readouterr().out
    assert f"saved {proposal_path(path)}" in out and "link threshold: the model proposes p >= " in out
    assert load_proposal(path) is not None and path.read_text(encoding="utf-8") == model_before
