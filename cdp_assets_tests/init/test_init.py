"""`cdp-assets init` on small hand-made sources: what it leaves out and why, nested columns,
the no-overwrite rule, and the other kinds of sources (S3 on moto's server, warehouse tables)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import boto3
import pandas as pd
import pytest
import yaml

from cdp_assets.cli import main
from cdp_assets.config import load_config
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.init import draft_project
from cdp_assets.sample.generator import generate_sample
from cdp_assets.sql.dialects import TableRef


def _write(path: Path, df: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)


@pytest.fixture
def shop(tmp_path) -> Path:
    """A shop with customers (identifiers), products (none), a log without a date column, and
    profiles carrying a nested attribute."""
    n = 60
    root = tmp_path / "shop"
    _write(
        root / "customers" / "historical" / "customers.csv",
        pd.DataFrame(
            {
                "id": [f"U{i:05d}" for i in range(n)],
                "email_address": [f"person{i}@mail.example.org" if i % 10 else "noone@test.com" for i in range(n)],
                "updated": [f"2024-01-{1 + i % 28:02d} 10:00:00" for i in range(n)],
            }
        ),
    )
    _write(
        root / "products" / "products.csv",
        pd.DataFrame(
            {
                "sku": [f"SKU-{i}" for i in range(n)],
                "price": [f"{i}.99" for i in range(n)],
                "modified_at": ["2024-02-01 00:00:00"] * n,
            }
        ),
    )
    _write(
        root / "clicks" / "clicks.csv", pd.DataFrame({"user_email": [f"person{i}@mail.example.org" for i in range(n)]})
    )
    prof = root / "profiles" / "profiles.jsonl"
    prof.parent.mkdir(parents=True)
    prof.write_text(
        "".join(
            json.dumps(
                {
                    "device_id": f"{i:08x}-aaaa-4bbb-8ccc-{i:012x}",
                    "prefs": {"lang": "en", "n": i},
                    "seen_at": f"2024-03-{1 + i % 28:02d}T08:00:00Z",
                }
            )
            + "\n"
            for i in range(n)
        )
    )
    return root


def test_tables_without_identifiers_or_watermark_are_left_out_with_the_reason(shop, tmp_path, capsys):
    out = tmp_path / "project"
    assert main(["init", "--client", "acme", "--source", str(shop), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = (out / "init_report.md").read_text()
    assert "`shop_products`" in report and "no user identifier" in report
    assert "`shop_clicks`" in report and "no date/time column" in report
    assert "`shop_profiles.prefs`" in report and "nested values" in report  # excluded and named
    assert "left out shop_products" in printed and "email_address" in printed
    cfg = yaml.safe_load((out / "cdp.yml").read_text())
    objects = {o["name"] for s in cfg["sources"] for o in s["objects"]}
    assert objects == {"customers", "profiles"}
    unify = yaml.safe_load((out / "unify.yml").read_text())
    keys = {k["name"]: k for k in unify["keys"]}
    assert set(keys) == {"email", "id", "device_id"}
    assert "noone@test.com" in keys["email"]["invalid_texts"]  # 6 rows of 60 carry it
    loaded = load_config(out / "cdp.yml")  # what init drafts, the loader accepts
    assert loaded.pipeline.sources[0].connector.kind == "local_files"


def test_init_never_overwrites_without_force(shop, tmp_path, capsys):
    out = tmp_path / "project"
    out.mkdir()
    (out / "cdp.yml").write_text("# my own config\n")
    assert main(["init", "--client", "acme", "--source", str(shop), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "cdp.yml").read_text() == "# my own config\n" and not (out / "unify.yml").exists()
    assert main(["init", "--client", "acme", "--source", str(shop), "--out", str(out), "--force"]) == 0
    assert (out / "cdp.yml").read_text().startswith("# Drafted by `cdp-assets init`")


def test_a_bad_client_name_or_missing_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["init", "--client", "Acme", "--source", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert main(["init", "--client", "acme", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--client" in err and "no such folder" in err


def test_no_identifier_anywhere_writes_only_the_report_and_fails(tmp_path):
    _write(
        tmp_path / "src" / "products" / "p.csv",
        pd.DataFrame({"sku": ["A1", "B2"], "updated_at": ["2024-01-01", "2024-01-02"]}),
    )
    assert main(["init", "--client", "acme", "--source", str(tmp_path / "src"), "--out", str(tmp_path / "o")]) == 1
    assert (tmp_path / "o" / "init_report.md").exists() and not (tmp_path / "o" / "cdp.yml").exists()


@pytest.mark.slow
def test_warehouse_tables_as_a_source(tmp_path):
    db = tmp_path / "wh.duckdb"
    wh = DuckDBWarehouse(path=str(db))
    generate_sample(tmp_path / "gen", 300, seed=5)
    frame = pd.concat(
        [pd.read_csv(p, dtype=str) for p in sorted((tmp_path / "gen" / "shop" / "customers").rglob("*.csv"))]
    )
    frame["visits"] = range(len(frame))  # a typed column: a number, not a nested value
    frame["tags"] = [["a", "b"]] * len(frame)  # a list column: excluded and named
    wh.replace_with_dataframe(TableRef("crm", "contacts"), frame)
    config = tmp_path / "engine.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "client": "x",
                "engine": {"kind": "duckdb", "duckdb": {"path": str(db)}},
                "sources": [{"name": "s", "connector": {"kind": "table", "database": "crm"}, "objects": ["contacts"]}],
            }
        )
    )
    result = draft_project("acme", ["table:crm"], tmp_path / "project", warehouse=wh)
    kinds = {k.column: k.kind for o in result.objects for k in o.kinds}
    assert kinds["email"] == "email" and kinds["phone"] == "phone" and kinds["customer_id"] == "customer_id"
    assert kinds["visits"] == "measure" and kinds["tags"] == "complex"
    cfg = yaml.safe_load((tmp_path / "project" / "cdp.yml").read_text())
    assert cfg["sources"][0]["connector"] == {"kind": "table", "database": "crm"}
    assert cfg["sources"][0]["mode"] == "incremental"
    # From the command line, the engine comes from --config.
    assert (
        main(
            [
                "init",
                "--client",
                "acme",
                "--source",
                "table:crm.contacts",
                "--config",
                str(config),
                "--out",
                str(tmp_path / "p2"),
            ]
        )
        == 0
    )
    assert "kind: duckdb" in (tmp_path / "p2" / "cdp.yml").read_text()


@pytest.fixture
def s3_endpoint(monkeypatch):
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.mark.slow
def test_an_s3_prefix_as_a_source(tmp_path, s3_endpoint):
    generate_sample(tmp_path / "gen", 200, seed=2)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="landing")
    for path in sorted((tmp_path / "gen" / "web").rglob("*.*")):
        client.upload_file(str(path), "landing", f"drops/web/{path.relative_to(tmp_path / 'gen' / 'web').as_posix()}")
    out = tmp_path / "project"
    assert (
        main(
            [
                "init",
                "--client",
                "acme",
                "--source",
                "s3://landing/drops/web",
                "--s3-endpoint-url",
                s3_endpoint,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    cfg = yaml.safe_load((out / "cdp.yml").read_text())
    assert cfg["sources"][0]["connector"] == {
        "kind": "s3",
        "bucket": "landing",
        "prefix": "drops/web",
        "endpoint_url": s3_endpoint,
        "format": "jsonl",
    }
    assert cfg["sources"][0]["mode"] == "both"
    unify = yaml.safe_load((out / "unify.yml").read_text())
    assert {k["name"] for k in unify["keys"]} == {"email", "cookie"}
    assert load_config(out / "cdp.yml").pipeline.sources[0].objects[0].name == "events"


@pytest.mark.slow
def test_loose_files_of_several_objects_are_linked_into_the_connector_layout(tmp_path):
    generate_sample(tmp_path / "gen", 300, seed=4)
    flat = tmp_path / "export"
    flat.mkdir()
    for path in sorted((tmp_path / "gen" / "shop").rglob("*.csv")):
        (flat / path.name).write_bytes(path.read_bytes())  # customers_hist.csv, customers_2024-06-01.csv, orders_...
    out = tmp_path / "project"
    result = draft_project("acme", [str(flat)], out)
    assert {o.sample.name for o in result.objects} == {"customers", "orders"}
    assert (out / "sources" / "export" / "customers" / "historical" / "customers_hist.csv").is_symlink()
    cfg = yaml.safe_load((out / "cdp.yml").read_text())
    assert cfg["sources"][0]["connector"]["path"] == "sources/export" and cfg["sources"][0]["mode"] == "both"
    assert load_config(out / "cdp.yml").source_paths["export"] == (out / "sources" / "export").resolve()


@pytest.mark.slow
def test_integer_ids_of_different_names_stay_separate_keys_and_shared_codes_join(tmp_path):
    """Auto-increment ids of members and customers overlap by chance: merging them would merge
    different people. A code shared by two tables under one name is one key."""
    n = 50
    root = tmp_path / "src"
    _write(
        root / "members" / "m.csv",
        pd.DataFrame(
            {
                "member_id": [str(i) for i in range(1, n + 1)],
                "email": [f"m{i}@example.org" for i in range(n)],
                "updated_at": ["2024-01-01"] * n,
            }
        ),
    )
    _write(
        root / "customers" / "c.csv",
        pd.DataFrame(
            {
                "customer_id": [str(i) for i in range(1, n + 1)],
                "email": [f"c{i}@example.org" for i in range(n)],
                "updated_at": ["2024-01-01"] * n,
            }
        ),
    )
    _write(
        root / "orders" / "o.csv",
        pd.DataFrame(
            {
                "order_ref": [f"R{i}" for i in range(2 * n)],
                "customer_id": [str(1 + i % n) for i in range(2 * n)],
                "updated_at": ["2024-01-02"] * (2 * n),
            }
        ),
    )
    draft_project("acme", [str(root)], tmp_path / "project")
    unify = yaml.safe_load((tmp_path / "project" / "unify.yml").read_text())
    keys = {k["name"] for k in unify["keys"]}
    assert {"member_id", "customer_id"} <= keys
    columns = {(t["table"], kc["column"]): kc["key"] for t in unify["tables"] for kc in t["key_columns"]}
    assert columns[("src_orders_stg", "customer_id")] == columns[("src_customers_stg", "customer_id")] == "customer_id"
    assert columns[("src_members_stg", "member_id")] == "member_id"


def test_a_large_file_is_sampled_from_its_head(tmp_path, monkeypatch):
    import cdp_assets.init.sources as sources

    monkeypatch.setattr(sources, "HEAD_BYTES", 2000)  # so a small file counts as large
    rows = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(500)],
            "email": [f"p{i}@example.org" for i in range(500)],
            "updated_at": ["2024-01-01 00:00:00"] * 500,
        }
    )
    _write(tmp_path / "src" / "customers" / "c.csv", rows)
    rows.to_parquet(tmp_path / "src" / "customers" / "c2.parquet")
    result = draft_project("acme", [str(tmp_path / "src")], tmp_path / "project")
    sample = result.objects[0].sample
    assert 40 < sum(sample.frame["_cdp_init_file"] == 0) < 500  # the CSV's first whole lines
    assert sum(sample.frame["_cdp_init_file"] == 1) == 500  # the Parquet file's first batch
    assert {k.column: k.kind for k in result.objects[0].kinds}["email"] == "email"


def test_an_unreadable_file_is_left_out_named_and_fails_the_command(shop, tmp_path, capsys):
    bad = shop / "returns" / "returns.csv"
    bad.parent.mkdir()
    bad.write_text('return_id,email,updated_at\nR1,"a@b.co,2024-01-01\n')  # a quote never closed
    out = tmp_path / "project"
    assert main(["init", "--client", "acme", "--source", str(shop), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "left out shop_returns" in captured.out and "cannot be parsed as CSV" in captured.out
    assert "could not be read" in captured.err
    assert (out / "cdp.yml").exists()  # the readable objects are drafted
