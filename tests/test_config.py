"""Config validation: each problem is one ConfigError naming the file and the key."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from resolution.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[1] / "conf" / "example.yml"


@pytest.fixture()
def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_config_loads_with_every_section():
    config = load_config(EXAMPLE)
    assert [source.name for source in config.sources] == ["crm", "ecommerce", "support", "online"]
    assert config.serve.inbox_source == "online"
    assert config.attribute_kinds["email"] == "email"
    assert config.attribute_kinds["dob"] == "date"
    assert config.attribute_kinds["loyalty_id"] == "id"
    assert [rule.name for rule in config.identifiers] == ["email", "phone", "loyalty_id"]
    assert config.matching.training.max_pairs == 1e6
    assert config.survivorship.rule_for("email") == "most_recent"
    assert config.survivorship.rule_for("first_name") == "source_priority"


def _error(data: dict) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, file="test.yml")
    return caught.value


def test_unknown_top_level_key_is_named(example):
    example["matchin"] = {}
    error = _error(example)
    assert error.key == "matchin"
    assert "test.yml" in str(error) and "unknown key" in str(error)


def test_unknown_key_inside_a_source_names_the_source(example):
    example["sources"][1]["prioritty"] = 3
    error = _error(example)
    assert error.key == "sources[ecommerce].prioritty"


def test_wrong_type_names_the_key(example):
    example["matching"]["link_threshold"] = "high"
    error = _error(example)
    assert error.key == "matching.link_threshold"
    assert "must be float" in error.problem


def test_bad_choice_lists_the_allowed_values(example):
    example["sources"][0]["change_tracking"] = "cdc"
    error = _error(example)
    assert error.key == "sources[crm].change_tracking"
    assert "snapshot, delta_cdf, audit" in error.problem


def test_audit_source_needs_operation_columns(example):
    example["sources"][2]["change_tracking"] = "audit"
    assert _error(example).key == "sources[support].change_tracking"


def test_identifier_on_unmapped_attribute_is_rejected(example):
    example["identifiers"].append({"name": "ssn", "attribute": "ssn"})
    assert _error(example).key == "identifiers[3].attribute"


def test_comparison_on_unmapped_attribute_is_rejected(example):
    example["matching"]["comparisons"]["postcode"] = "postcode"
    assert _error(example).key == "matching.comparisons.postcode"


def test_thresholds_must_be_ordered(example):
    bad = copy.deepcopy(example)
    bad["matching"]["review_threshold"] = 0.99
    assert _error(bad).key == "matching.review_threshold"


def test_storage_needs_a_warehouse_or_a_schema(example):
    example["storage"] = {"backend": "auto"}
    assert _error(example).key == "storage"


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("sources: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_every_shipped_config_loads():
    for path in sorted((EXAMPLE.parent).rglob("*.yml")):
        names = re.findall(r"\$\{(\w+)\}", path.read_text())  # conf/databricks_pipeline.yml's
        load_config(path, {name: f"value_of_{name}" for name in names})
    febrl = load_config(EXAMPLE.parent / "benchmarks" / "febrl4.yml")
    assert febrl.identifiers == ()
    assert febrl.matching.comparisons["ssn"] == "code"
    assert febrl.matching.training.prior_rules == (("ssn",), ("first_name", "last_name", "dob"))
    assert febrl.matching.training.prior_recall == 0.7


def test_prior_recall_outside_zero_one_is_refused(example):
    example["matching"]["training"]["prior_recall"] = 1.5
    assert _error(example).key == "matching.training.prior_recall"


def test_variables_are_substituted_and_a_missing_one_is_named(tmp_path, example):
    example["storage"] = {"catalog": "${catalog}", "schema": "${schema}"}
    example["sources"][0]["path"] = "${landing}/crm.csv"
    path = tmp_path / "vars.yml"
    path.write_text(yaml.safe_dump(example))
    config = load_config(path, {"catalog": "main", "schema": "identity", "landing": "/Volumes/main/identity/in"})
    assert (config.storage.catalog, config.storage.schema) == ("main", "identity")
    assert config.sources[0].location == "/Volumes/main/identity/in/crm.csv"
    with pytest.raises(ConfigError, match=r"storage\.schema: variable \$\{schema\} is not set"):
        load_config(path, {"catalog": "main", "landing": "x"})


def test_quality_section_is_validated(example):
    example["quality"] = {"max_entity_size": 50, "freshness": {"crm": "15m", "default": "2h"}}
    quality = parse_config(example).quality
    assert quality.freshness_of("crm").total_seconds() == 900
    assert quality.freshness_of("support").total_seconds() == 7200
    example["quality"]["freshness"] = {"crm": "soon"}
    with pytest.raises(ConfigError, match=r"quality\.freshness\.crm: not a duration"):
        parse_config(example)
    example["quality"]["freshness"] = {"billing": "15m"}
    with pytest.raises(ConfigError, match=r"quality\.freshness\.billing: no source is called"):
        parse_config(example)


def test_the_inbox_log_retention_is_a_delta_interval(example):
    assert parse_config(example).serve.inbox_log_retention == "interval 1 day"
    example["serve"]["inbox_log_retention"] = "Interval 2 Hours"
    assert parse_config(example).serve.inbox_log_retention == "interval 2 hours"
    example["serve"]["inbox_log_retention"] = "1 day"
    with pytest.raises(ConfigError, match=r"serve\.inbox_log_retention: must read like 'interval 1 day'"):
        parse_config(example)


def test_rules_only_needs_no_matching_section_but_idr_train_does(example, tmp_path, capsys):
    from resolution.cli import EXIT_CONFIG, main

    rules_only = copy.deepcopy(example)
    del rules_only["matching"]
    config = parse_config(rules_only, file="rules.yml")
    assert config.matching.model is None and config.matching.blocking_rules == ()
    assert [rule.name for rule in config.identifiers] == ["email", "phone", "loyalty_id"]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules_only))
    assert main(["train", "--config", str(path)]) == EXIT_CONFIG  # refused before Spark starts
    assert "idr train needs a matching section" in capsys.readouterr().err

    del rules_only["identifiers"]  # and with neither, nothing could link two records
    error = _error(rules_only)
    assert error.key == "identifiers" and "nothing links records" in error.problem


def test_a_model_comparing_attributes_no_source_maps_is_refused_naming_them(example):
    from resolution.scoring import ModelError, load_model

    for source in example["sources"]:  # sources without last names or birth dates
        source["columns"] = {a: c for a, c in source["columns"].items() if a not in ("last_name", "dob")}
    matching = example["matching"]
    matching["model"] = str(EXAMPLE.parent / "models" / "example_model.json")
    matching["comparisons"] = {a: k for a, k in matching["comparisons"].items() if a not in ("last_name", "dob")}
    matching["blocking_rules"] = [["first_name"]]
    config = parse_config(example, file="narrow.yml")
    with pytest.raises(ModelError) as caught:
        load_model(config.matching.model, config)
    message = str(caught.value)
    assert "compares dob, last_name, which no source of narrow.yml maps" in message
    assert "example_model.json" in message and "idr train --config narrow.yml" in message


def test_a_key_left_out_or_null_takes_the_default_of_its_dataclass_field(example):
    from resolution.config import (
        CannotLinkConfig,
        QualityConfig,
        ServeConfig,
        StorageConfig,
        SurvivorshipConfig,
        TrainingConfig,
    )

    example["matching"] = {"model": "m.json", "comparisons": {}, "link_threshold": None, "training": {}}
    example["survivorship"] = {"default": None}
    example.update(cannot_link={}, quality={"enabled": None}, serve={})
    example["storage"] = {"warehouse": "./lakehouse", "backend": None}
    example["sources"][0] = {k: v for k, v in example["sources"][0].items() if k in ("name", "path", "key", "columns")}
    config = parse_config(example)
    assert config.matching.link_threshold == 0.95 and config.matching.training == TrainingConfig()
    assert config.survivorship == SurvivorshipConfig()
    assert (config.cannot_link, config.quality, config.serve) == (CannotLinkConfig(), QualityConfig(), ServeConfig())
    assert config.storage == StorageConfig(warehouse="./lakehouse")
    crm = config.sources[0]
    assert (crm.format, crm.change_tracking, crm.priority, crm.options) == ("delta", "snapshot", 100, {})


def test_a_source_column_list_builds_one_composite_attribute(example):
    example["sources"][0]["columns"]["address"] = ["house_number", "street"]
    example["sources"][1]["columns"]["address"] = ["delivery_address"]  # one column: as a plain name
    config = parse_config(example, file="test.yml")
    assert config.sources[0].columns_of("address") == ("house_number", "street")
    assert config.sources[1].columns["address"] == "delivery_address"
    assert config.attribute_kinds["address"] == "address"
    assert "house_number" in config.sources[0].mapped_columns

    example["sources"][0]["columns"]["address"] = ["street", "street"]
    assert "lists a column twice" in _error(example).problem
    example["sources"][0]["columns"]["address"] = [1, "street"]
    error = _error(example)
    assert error.key == "sources[crm].columns" and "a list of column names" in error.problem
    example["sources"][0]["columns"]["address"] = "street"
    example["sources"][3]["columns"]["address"] = ["house_number", "street"]  # the online inbox
    error = _error(example)
    assert error.key == "serve.inbox_source" and "map it to one column" in error.problem


def test_cannot_link_tolerances_are_per_constrained_attribute(example):
    example["cannot_link"] = {"attributes": ["dob"], "tolerate": {"dob": ["day_month_swap", "one_edit"]}}
    config = parse_config(example, file="test.yml")
    assert config.cannot_link.tolerate == {"dob": ("day_month_swap", "one_edit")}
    example["cannot_link"]["tolerate"] = {"dob": "transposition"}
    assert parse_config(example, file="test.yml").cannot_link.tolerate == {"dob": ("transposition",)}
    example["cannot_link"]["tolerate"] = {"dob": ["typo"]}
    error = _error(example)
    assert error.key == "cannot_link.tolerate.dob" and "one_edit, transposition, day_month_swap" in error.problem
    example["cannot_link"]["tolerate"] = {"email": ["one_edit"]}
    assert "not among cannot_link.attributes" in _error(example).problem
