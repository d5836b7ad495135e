"""Monitoring checks: volume anomalies, coverage trend, largest component share."""

from __future__ import annotations

import pytest

from cdp_assets.checks.monitoring import volume_anomaly
from cdp_assets.config import load_config
from cdp_assets_tests.conftest import check_results, run_pipeline, write_project


def test_volume_anomaly_against_trailing_loads():
    assert volume_anomaly([100, 120], 10)[0] is False  # not enough history: never a false alarm
    assert volume_anomaly([100, 110, 90, 105], 10)[0] is False
    anomalous, meta = volume_anomaly([100, 110, 90, 105, 5], 10)
    assert anomalous and meta["latest_rows"] == 5 and meta["measured"] == round(5 / 101.25, 3)
    assert volume_anomaly([100, 110, 90, 105, 2000], 10)[0] is True
    assert volume_anomaly([100, 0, 110, 90, 0, 105], 10)[0] is False  # empty reruns are not loads


@pytest.mark.pipeline
def test_coverage_trend_and_largest_share_warn_on_a_second_run(tmp_path, instance):
    config = write_project(tmp_path, records=3000)
    loaded = load_config(config)
    first = check_results(run_pipeline(loaded, instance))
    assert first["cdp_unification_customer_360/enriched_shop_orders_stg:coverage_trend"] is True
    assert first["cdp_unification_customer_360/unified_id_result_key_stats:largest_component_share"] is True

    # Orders lose their emails and customer ids: coverage drops, the trend check warns.
    orders = loaded.source_paths["shop"] / "orders"
    for path in orders.rglob("*.csv"):
        lines = path.read_text().splitlines()
        header = lines[0].split(",")
        e, c = header.index("email"), header.index("customer_id")
        out = [lines[0]]
        for line in lines[1:]:
            cells = line.split(",")
            cells[e] = cells[c] = ""
            out.append(",".join(cells))
        path.write_text("\n".join(out) + "\n")
    strict = load_config(
        write_project(tmp_path, records=3000, generate=False, mutate=lambda c: c["checks"].update(coverage_min_pct=0))
    )
    second = check_results(run_pipeline(strict, instance))
    assert second["cdp_unification_customer_360/enriched_shop_orders_stg:coverage_trend"] is False
    assert second["cdp_unification_customer_360/enriched_shop_customers_stg:coverage_trend"] is True
