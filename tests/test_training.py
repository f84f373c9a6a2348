"""`idr train` on generated data: EM learns that agreeing identifiers are evidence of a match."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from resolution.config import load_config
from resolution.generate import write_sources
from resolution.scoring import load_model
from resolution.training import train

REPO = Path(__file__).resolve().parents[1]


def _exact_level(model: dict, comparison: str) -> dict:
    [found] = [c for c in model["comparisons"] if c["output_column_name"] == comparison]
    return next(level for level in found["comparison_levels"] if not level.get("is_null_level"))


def test_train_saves_a_model_whose_exact_matches_carry_positive_weight(spark, tmp_path):
    data = tmp_path / "generated"
    write_sources(400, data, seed=11)
    config = load_config(REPO / "conf" / "generated.yml")
    config = dataclasses.replace(
        config,
        sources=tuple(
            dataclasses.replace(source, location=str(data / Path(source.location).name))
            for source in config.sources
        ),
        storage=dataclasses.replace(config.storage, warehouse=str(tmp_path / "lakehouse")),
        matching=dataclasses.replace(
            config.matching,
            model=str(tmp_path / "models" / "model.json"),
            training=dataclasses.replace(config.matching.training, max_pairs=2e5),
        ),
    )
    path = train(spark, config)

    model = load_model(path, config)
    assert json.loads(path.read_text())["sql_dialect"] == "spark"
    for comparison in ("email", "phone", "last_name", "first_name", "dob"):
        level = _exact_level(model, comparison)
        assert level["m_probability"] > 10 * level["u_probability"], comparison
    assert (tmp_path / "models" / "model.match_weights.html").stat().st_size > 1000
    assert (tmp_path / "models" / "model.m_u_parameters.html").stat().st_size > 1000
    assert 0 < model["probability_two_random_records_match"] < 0.05
