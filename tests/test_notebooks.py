"""Each notebook of notebooks/ runs top to bottom on the embedded default, on the sample data,
in the order a new user takes them: quick start, explore, review, data quality."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from resolution import schemas as S
from resolution.notebooks import NotebookError, parse_notebook, run_notebook
from tests.incremental_harness import sample_pipeline_file

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))


@pytest.fixture(scope="module")
def params(tmp_path_factory) -> dict[str, str]:
    """Widget values: conf/example.yml with its warehouse in a temp folder."""
    folder = tmp_path_factory.mktemp("notebooks")
    path = sample_pipeline_file(folder)
    return {"config": str(path), "variables": f"warehouse={folder / 'lakehouse'}"}


def _run(spark, name: str, params: dict[str, str], tmp_path: Path, **widgets: str):
    lines: list[str] = []
    run = run_notebook(REPO / "notebooks" / name, spark=spark, params={**params, **widgets},
                       output_dir=tmp_path, echo=lines.append)
    return run, "\n".join(lines)


def test_every_notebook_is_databricks_source_with_markdown_and_widgets():
    assert [path.name for path in NOTEBOOKS] == [
        "01_quick_start.py", "02_explore_entity.py", "03_review_queue.py", "04_data_quality.py"
    ]
    for path in NOTEBOOKS:
        cells = parse_notebook(path.read_text())
        kinds = [cell.kind for cell in cells]
        assert kinds[:3] == ["md", "pip", "python"], path.name  # title, %pip install .., widgets
        assert 'dbutils.widgets.text("config"' in cells[2].source, path.name
    with pytest.raises(NotebookError, match="not a Databricks source notebook"):
        parse_notebook("print('hello')\n")


def test_notebooks_run_top_to_bottom_and_the_review_decision_is_honoured(spark, params, tmp_path):
    run, out = _run(spark, "01_quick_start.py", params, tmp_path)
    assert run.namespace["summary"].status == "SUCCEEDED" and run.namespace["summary"].entities == 19
    assert "| crm:C001|" in out and "{crm -> 1, ecommerce -> 1, support -> 1}" in out  # golden + customer_360

    run, out = _run(spark, "02_explore_entity.py", params, tmp_path, lookup="+447911123402")
    assert run.namespace["entity_id"] == "crm:C002" and sorted(run.namespace["keys"]) == [
        "crm:C002", "ecommerce:O1002", "support:T502"
    ]
    assert "Exact match on phone" in out and len(run.figures) == 1 and run.figures[0].stat().st_size > 5000

    # support:T512 (name only) waits in review against crm:C010's records; the reviewer accepts it
    run, out = _run(spark, "03_review_queue.py", params, tmp_path, decisions="accept crm:C010 support:T512")
    assert run.namespace["queue"].count() == 2
    membership = run.namespace["pipeline"].table(S.RESOLVED_MEMBERSHIP)
    assert membership.where("record_key = 'support:T512'").first()[S.ENTITY_ID] == "crm:C010"
    with pytest.raises(NotebookError, match=r"cell \d+ .*accept\|reject"):
        _run(spark, "03_review_queue.py", params, tmp_path, decisions="approve crm:C010 support:T512")

    run, out = _run(spark, "04_data_quality.py", params, tmp_path)
    assert all(result.passed for result in run.namespace["results"])
    assert len(run.figures) == 4 and re.search(r"\|\s*accepted\|\s*1\|", out)  # links by rule
