"""The bad-input corpus: every file, what it holds and what loading it must do.

``python -m cdp_assets_tests.bad_inputs.corpus`` writes the files into ``files/`` (they are
committed; this script is how they were made). ``CASES`` is the manifest the tests read: for
each file the rows it holds, and either how many load and how many are rejected, or the error
(a fragment naming the line or the field). Rows are counted here from how the file was written,
not by the loader under test.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

FILES = Path(__file__).parent / "files"
HEADER = "id,email,updated_at"
T1, T2, T3 = "2024-06-01 10:00:00", "2024-06-01 11:00:00", "2024-06-01 12:00:00"
SQLISH = "x'); DROP TABLE acme_src.shop_customers; --"
QUOTED = 'He said "hi" and \'bye\''


@dataclass(frozen=True)
class Case:
    name: str
    rows: int  # data rows in the file
    loaded: int = 0
    rejected: int = 0
    error: str = ""  # the load fails with a message holding this (and the file's path)
    keeps: tuple[tuple[str, str], ...] = ()  # (column, value) that must be stored exactly
    group: str = ""  # files of one group are loaded together


def _csv(*lines: str, end: str = "\n") -> bytes:
    return end.join(lines).encode() + end.encode()


CSV_FILES: dict[str, bytes] = {
    "good.csv": _csv(HEADER, f"1,a@x.com,{T1}", f"2,b@x.com,{T2}", f"3,c@x.com,{T3}"),
    "extra_field.csv": _csv(HEADER, f"1,a@x.com,{T1}", f"2,b@x.com,{T2},surplus", f"3,c@x.com,{T3}"),
    "missing_field.csv": _csv(HEADER, f"1,a@x.com,{T1}", "2,b@x.com", f"3,c@x.com,{T3}"),
    "latin1.csv": HEADER.encode()
    + b"\n1,caf\xe9@x.com,"
    + T1.encode()
    + b"\n2,b@x.com,"
    + T2.encode()
    + b"\n3,c@x.com,"
    + T3.encode()
    + b"\n",
    "bom.csv": b"\xef\xbb\xbf" + _csv(HEADER, f"1,a@x.com,{T1}", f"2,b@x.com,{T2}", f"3,c@x.com,{T3}"),
    "quoted_newlines.csv": _csv(
        HEADER, f'1,"a@x.com\nsecond line",{T1}', f"2,b@x.com,{T2}", f'3,"c@x.com\r\nthird",{T3}'
    ),
    "crlf.csv": _csv(HEADER, f"1,a@x.com,{T1}", f"2,b@x.com,{T2}", f"3,c@x.com,{T3}", end="\r\n"),
    "extra_column.csv": _csv(HEADER + ",note", f"1,a@x.com,{T1},n1", f"2,b@x.com,{T2},n2"),
    "missing_column.csv": _csv("id,updated_at", f"1,{T1}", f"2,{T2}"),
    "type_drift.csv": _csv(HEADER, f"1,a@x.com,{T1}", f"two,b@x.com,{T2}", f"3.0,c@x.com,{T3}"),
    "empty.csv": b"",
    "header_only.csv": _csv(HEADER),
    "duplicate_rows.csv": _csv(HEADER, f"1,a@x.com,{T1}", f"1,a@x.com,{T1}", f"2,b@x.com,{T2}"),
    "big_field.csv": _csv(HEADER, f"1,{'x' * 10_000_000}@x.com,{T1}", f"2,b@x.com,{T2}"),
    "emoji.csv": _csv(HEADER, f"1,🙂@x.com,{T1}", f"2,名前@x.com,{T2}"),
    "nul_byte.csv": _csv(HEADER, f"1,a\x00@x.com,{T1}", f"2,b@x.com,{T2}", f"3,c@x.com,{T3}"),
    "sql_like.csv": _csv(HEADER, f'1,"{SQLISH}",{T1}', f"2,'; SELECT 1; --,{T2}"),
    "quotes.csv": _csv(HEADER, f'1,"{QUOTED.replace(chr(34), chr(34) * 2)}",{T1}', f'2,"""",{T2}'),
    "bad_timestamp.csv": _csv(HEADER, f"1,a@x.com,{T1}", "2,b@x.com,not a date", "3,c@x.com,"),
    "blank_lines.csv": _csv(HEADER, "", f"1,a@x.com,{T1}", "", f"2,b@x.com,{T2}", "", f"3,c@x.com,{T3}"),
    "unterminated_quote.csv": _csv(HEADER, f"1,a@x.com,{T1}", f'2,"b@x.com,{T2}', f"3,c@x.com,{T3}"),
    "no_watermark_column.csv": _csv("id,email,modified", f"1,a@x.com,{T1}"),
    "semicolons.csv": _csv("id;email;updated_at", f"1;a@x.com;{T1}"),
    "utf16_bom.csv": _csv(HEADER, f"1,café@x.com,{T1}", f"2,b@x.com,{T2}").decode().encode("utf-16"),
    "utf16_no_bom.csv": _csv(HEADER, f"1,a@x.com,{T1}", f"2,名前@x.com,{T2}").decode().encode("utf-16-le"),
    "utf16_cut.csv": _csv(HEADER, f"1,a@x.com,{T1}").decode().encode("utf-16-le")[:-1],
    "empty_header.csv": _csv("id,,updated_at", f"1,a@x.com,{T1}", f"2,b@x.com,{T2}"),
    "ambiguous_date.csv": _csv(HEADER, "1,a@x.com,06/03/2024 10:00", "2,b@x.com,25/03/2024 10:00"),
    "out_of_range.csv": _csv(HEADER, f"1,a@x.com,{T1}", "2,b@x.com,9999-12-31T23:59:59"),
}

JSONL_FILES: dict[str, bytes] = {
    "good.jsonl": _csv(
        *(
            f'{{"id": {i}, "email": "{e}@x.com", "updated_at": "{t}"}}'
            for i, e, t in ((1, "a", T1), (2, "b", T2), (3, "c", T3))
        )
    ),
    "broken_line.jsonl": _csv(
        f'{{"id": 1, "email": "a@x.com", "updated_at": "{T1}"}}',
        '{"id": 2, "email": "b@x.com", "updated_at": ',
        f'{{"id": 3, "email": "c@x.com", "updated_at": "{T3}"}}',
    ),
    "not_an_object.jsonl": _csv(
        f'{{"id": 1, "email": "a@x.com", "updated_at": "{T1}"}}',
        "[1, 2, 3]",
        f'{{"id": 3, "email": "c@x.com", "updated_at": "{T3}"}}',
    ),
    "nested.jsonl": _csv(
        f'{{"id": 1, "email": "a@x.com", "updated_at": "{T1}", "tags": ["a", "b"], "addr": {{"zip": "01234"}}}}',
        f'{{"id": 2, "email": "b@x.com", "updated_at": "{T2}"}}',
    ),
    "latin1.jsonl": b'{"id": 1, "email": "caf\xe9@x.com", "updated_at": "'
    + T1.encode()
    + b'"}\n{"id": 2, "email": "b@x.com", "updated_at": "'
    + T2.encode()
    + b'"}\n',
    "nul_escape.jsonl": _csv(
        f'{{"id": 1, "email": "a\\u0000@x.com", "updated_at": "{T1}"}}',
        f'{{"id": 2, "email": "b@x.com", "updated_at": "{T2}"}}',
    ),
    "bom.jsonl": b"\xef\xbb\xbf"
    + _csv(
        f'{{"id": 1, "email": "a@x.com", "updated_at": "{T1}"}}',
        f'{{"id": 2, "email": "b@x.com", "updated_at": "{T2}"}}',
    ),
    "type_drift.jsonl": _csv(
        f'{{"id": 1, "email": "a@x.com", "updated_at": "{T1}"}}',
        f'{{"id": "two", "email": null, "updated_at": "{T2}"}}',
        f'{{"id": 3.50, "email": true, "updated_at": "{T3}"}}',
    ),
    "empty.jsonl": b"",
    "bad_timestamp.jsonl": _csv(
        f'{{"id": 1, "email": "a@x.com", "updated_at": "{T1}"}}', '{"id": 2, "email": "b@x.com", "updated_at": null}'
    ),
    "sql_like.jsonl": _csv(f'{{"id": 1, "email": "{SQLISH}", "updated_at": "{T1}"}}'),
    "json_scalars.jsonl": _csv(
        f'{{"id": 1, "email": "a@x.com", "updated_at": "{T1}"}}', "42", '"text"', "true", "null"
    ),
    "utf16.jsonl": _csv(f'{{"id": 1, "email": "a@x.com", "updated_at": "{T1}"}}').decode().encode("utf-16"),
}


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


PARQUET_FILES: dict[str, bytes] = {
    "good.parquet": _parquet(
        pd.DataFrame({"id": ["1", "2", "3"], "email": ["a@x.com", "b@x.com", "c@x.com"], "updated_at": [T1, T2, T3]})
    ),
    "schema_a.parquet": _parquet(pd.DataFrame({"id": [1, 2], "email": ["a@x.com", "b@x.com"], "updated_at": [T1, T2]})),
    "schema_b.parquet": _parquet(
        pd.DataFrame({"id": ["three", "four"], "score": [0.5, 1.5], "updated_at": pd.to_datetime([T3, T3])})
    ),
    "corrupt.parquet": _parquet(pd.DataFrame({"id": ["1"], "updated_at": [T1]}))[:60],
    "nul.parquet": _parquet(
        pd.DataFrame({"id": ["1", "2"], "email": ["a\x00@x.com", "b@x.com"], "updated_at": [T1, T2]})
    ),
    "null_watermark.parquet": _parquet(
        pd.DataFrame({"id": ["1", "2"], "email": ["a@x.com", "b@x.com"], "updated_at": [T1, None]})
    ),
    "typed_timestamps.parquet": _parquet(
        pd.DataFrame({"id": [1, 2], "updated_at": pd.to_datetime([T1, T2]).tz_localize("Europe/Berlin")})
    ),
    "nested.parquet": _parquet(
        pd.DataFrame(
            {
                "id": ["1", "2"],
                "addr": [{"street": "Main St 1", "tags": ["a", "b"]}, None],
                "scores": [[1, 2], []],
                "updated_at": [T1, T2],
            }
        )
    ),
}

CASES: list[Case] = [
    Case("good.csv", 3, loaded=3),
    Case("extra_field.csv", 3, loaded=2, rejected=1),
    Case("missing_field.csv", 3, loaded=2, rejected=1),
    Case("latin1.csv", 3, loaded=2, rejected=1),
    Case("bom.csv", 3, loaded=3, keeps=(("id", "1"),)),
    Case("quoted_newlines.csv", 3, loaded=3, keeps=(("email", "a@x.com\nsecond line"), ("email", "c@x.com\r\nthird"))),
    Case("crlf.csv", 3, loaded=3, keeps=(("email", "c@x.com"),)),
    Case("extra_column.csv", 2, loaded=2, keeps=(("note", "n2"),)),
    Case("missing_column.csv", 2, loaded=2),
    Case("type_drift.csv", 3, loaded=3, keeps=(("id", "two"), ("id", "3.0"))),
    Case("empty.csv", 0),
    Case("header_only.csv", 0),
    Case("duplicate_rows.csv", 3, loaded=3),
    Case("big_field.csv", 2, loaded=2),
    Case("emoji.csv", 2, loaded=2, keeps=(("email", "🙂@x.com"), ("email", "名前@x.com"))),
    Case("nul_byte.csv", 3, loaded=2, rejected=1),
    Case("sql_like.csv", 2, loaded=2, keeps=(("email", SQLISH), ("email", "'; SELECT 1; --"))),
    Case("quotes.csv", 2, loaded=2, keeps=(("email", QUOTED), ("email", '"'))),
    Case("bad_timestamp.csv", 3, loaded=1, rejected=2),
    Case("blank_lines.csv", 3, loaded=3),
    Case("unterminated_quote.csv", 3, error="line 3"),
    Case("no_watermark_column.csv", 1, error="no column 'updated_at'"),
    Case("semicolons.csv", 1, error="no column 'updated_at'"),
    Case("good.jsonl", 3, loaded=3),
    Case("broken_line.jsonl", 3, loaded=2, rejected=1),
    Case("not_an_object.jsonl", 3, loaded=2, rejected=1),
    Case("nested.jsonl", 2, loaded=2, keeps=(("tags", '["a", "b"]'), ("addr", '{"zip": "01234"}'))),
    Case("latin1.jsonl", 2, loaded=1, rejected=1),
    Case("nul_escape.jsonl", 2, loaded=1, rejected=1),
    Case("bom.jsonl", 2, loaded=2, keeps=(("id", "1"),)),
    Case("type_drift.jsonl", 3, loaded=3, keeps=(("id", "two"), ("id", "3.50"), ("email", "true"))),
    Case("empty.jsonl", 0),
    Case("bad_timestamp.jsonl", 2, loaded=1, rejected=1),
    Case("sql_like.jsonl", 1, loaded=1, keeps=(("email", SQLISH),)),
    Case("good.parquet", 3, loaded=3),
    Case("schema_a.parquet", 2, loaded=2, group="conflicting schemas"),
    Case("schema_b.parquet", 2, loaded=2, group="conflicting schemas", keeps=(("id", "three"), ("score", "1.5"))),
    Case("corrupt.parquet", 1, error="cannot be read as Parquet"),
    Case("nul.parquet", 2, loaded=1, rejected=1),
    Case("null_watermark.parquet", 2, loaded=1, rejected=1),
    Case("typed_timestamps.parquet", 2, loaded=2),
    # issue 15: UTF-16 is read (with or without BOM); a cut UTF-16 file fails with how to convert it
    Case("utf16_bom.csv", 2, loaded=2, keeps=(("email", "café@x.com"),)),
    Case("utf16_no_bom.csv", 2, loaded=2, keeps=(("email", "名前@x.com"),)),
    Case("utf16_cut.csv", 1, error="iconv -f UTF-16-LE -t UTF-8"),
    Case("utf16.jsonl", 1, loaded=1, keeps=(("email", "a@x.com"),)),
    Case("empty_header.csv", 2, loaded=2, keeps=(("column_2", "b@x.com"),)),
    Case("ambiguous_date.csv", 2, error="date_order"),
    Case("out_of_range.csv", 2, loaded=1, rejected=1),
    Case("json_scalars.jsonl", 5, loaded=1, rejected=4),
    Case(
        "nested.parquet", 2, loaded=2, keeps=(("addr", '{"street": "Main St 1", "tags": ["a", "b"]}'), ("scores", "[]"))
    ),
]


def write_corpus(folder: Path = FILES) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in {**CSV_FILES, **JSONL_FILES, **PARQUET_FILES}.items():
        (folder / name).write_bytes(data)


if __name__ == "__main__":
    write_corpus()
    print(f"{len(CASES)} files written to {FILES}")
