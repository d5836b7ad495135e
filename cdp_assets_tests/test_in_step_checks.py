"""Checks evaluated in their asset's own step (cdp_assets/checks/__init__.py ``check_specs`` and
``check_results``): a failed blocking check of ERROR severity fails the step after its
materialization, and the assets downstream do not run; a failed non-blocking check does not
stop them. Real in-process Dagster runs of two small assets, no warehouse."""

from __future__ import annotations

import pytest
from dagster import AssetKey, DagsterInstance, MaterializeResult, asset, materialize

from cdp_assets.checks import Check, check_result, check_results, check_specs

UPSTREAM = AssetKey(["s", "upstream"])


def _run(blocking: bool, passed: bool):
    checks = [Check("rows_present", "The table has rows.", blocking=blocking)]

    @asset(key=UPSTREAM, check_specs=check_specs(UPSTREAM, checks))
    def upstream() -> MaterializeResult:
        measured = check_result(
            passed, measured=0 if not passed else 5, threshold=1, unit="rows", comparison="at_least"
        )
        return MaterializeResult(
            metadata={"dagster/row_count": 5}, check_results=check_results(UPSTREAM, checks, {"rows_present": measured})
        )

    @asset(key=AssetKey(["s", "downstream"]), deps=[UPSTREAM])
    def downstream() -> None:
        return None

    with DagsterInstance.ephemeral() as instance:
        result = materialize([upstream, downstream], instance=instance, raise_on_error=False)
        built = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
        evaluations = [
            e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return result, built, evaluations, failures


def test_a_failed_blocking_in_step_check_stops_the_downstream_assets():
    result, built, evaluations, failures = _run(blocking=True, passed=False)
    assert not result.success and built == {"upstream"}  # materialized, then the step failed
    (evaluation,) = evaluations
    assert not evaluation.passed and evaluation.blocking and evaluation.metadata["measured"].value == 0
    assert [f.event_specific_data.error.cls_name for f in failures] == ["DagsterAssetCheckFailedError"]


@pytest.mark.parametrize("blocking, passed", [(False, False), (True, True)])
def test_a_non_blocking_or_passed_in_step_check_lets_the_downstream_assets_run(blocking, passed):
    result, built, evaluations, failures = _run(blocking, passed)
    assert result.success and built == {"upstream", "downstream"} and not failures
    assert [e.passed for e in evaluations] == [passed]
