"""Hist-union checks: it has at least the de-duplicated rows of each input, and no duplicate keys.
Both are one step, measured by one description and one query (rows, duplicate keys and each
input's distinct rows side by side)."""

from __future__ import annotations

from cdp_assets.assets.hist_union import hist_union_ref
from cdp_assets.assets.ingestion import ingestion_refs
from cdp_assets.assets.keys import table_key
from cdp_assets.checks import Check, asset_checks, check_result, column_names, described
from cdp_assets.config.models import LoadedConfig
from cdp_assets.sql.checks import hist_union_measures_sql
from cdp_assets.sql.hist_union import LINEAGE_COLUMNS

CHECKS = [
    Check("covers_inputs", "Rows >= rows of each input after de-duplication."),
    Check("unique_primary_key", "No primary key value appears twice."),
]


def build_hist_union_checks(loaded: LoadedConfig) -> list:
    checks = []
    for source, obj in loaded.pipeline.source_objects():
        target = hist_union_ref(loaded, source, obj)
        inputs = list(ingestion_refs(loaded, source, obj).values())

        def evaluate(context, warehouse, target=target, inputs=inputs, pk=list(obj.primary_key)):
            have = described(warehouse, target, *inputs, context=context)

            def key_of(ref):  # without a primary key, a row is its key (lineage columns aside)
                return pk or [c for c in column_names(have[ref]) if c not in LINEAGE_COLUMNS]

            present = [ref for ref in inputs if have[ref] is not None]
            exists = have[target] is not None
            row = warehouse.fetch(
                hist_union_measures_sql(
                    target if exists else None, key_of(target), [(ref, key_of(ref)) for ref in present]
                )
            ).iloc[0]
            per_input = {ref.display: int(row[f"input_{i}"]) for i, ref in enumerate(present)}
            needed = max(per_input.values(), default=0)
            key_text = ", ".join(pk) if pk else "(all columns: no primary_key configured)"
            if not exists:
                missing = f"{target.display} does not exist"
                return {
                    "covers_inputs": check_result(
                        False, measured=None, threshold=needed, unit="rows", comparison="at_least", reason=missing
                    ),
                    "unique_primary_key": check_result(
                        False,
                        measured=None,
                        threshold=0,
                        unit="duplicate key(s)",
                        comparison="at_most",
                        reason=missing,
                        key=key_text,
                    ),
                }
            rows, dupes = int(row["table_rows"]), int(row["duplicate_keys"])
            return {
                "covers_inputs": check_result(
                    rows >= needed,
                    measured=rows,
                    threshold=needed,
                    unit="rows",
                    comparison="at_least",
                    distinct_input_rows=per_input,
                ),
                "unique_primary_key": check_result(
                    dupes == 0, measured=dupes, threshold=0, unit="duplicate key(s)", comparison="at_most", key=key_text
                ),
            }

        checks.append(asset_checks(table_key(target), CHECKS, evaluate))
    return checks
