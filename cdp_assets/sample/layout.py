"""What the sample looks like on disk: its objects, their columns and files, the days it covers,
and the junk identifier values it shares between unrelated persons."""

from __future__ import annotations

INCREMENTAL_DATES: tuple[str, str] = ("2024-06-01", "2024-06-02")
HISTORICAL_YEAR = 2023

#: "source/object" -> the columns the identity model fills (the first is the record id)
IDENTITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "shop/customers": ("customer_id", "email", "phone", "first_name", "last_name", "updated_at"),
    "shop/orders": ("order_id", "customer_id", "email", "amount", "updated_at"),
    "loyalty/members": ("member_id", "email", "phone", "first_name", "last_name", "updated_at"),
    "web/events": ("event_id", "cookie_id", "email", "event_type", "updated_at"),
}
#: "source/object" -> the columns the messiness adds after them (cdp_assets.sample.messiness)
EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {
    "shop/customers": ("birth_date", "newsletter"),
    "shop/orders": (),
    "loyalty/members": ("mobile", "country", "attributes"),
    "web/events": ("sent_at",),
}
#: "source/object" -> every column of its files, as generate_sample writes them by default
OBJECT_COLUMNS: dict[str, tuple[str, ...]] = {k: v + EXTRA_COLUMNS[k] for k, v in IDENTITY_COLUMNS.items()}

FILES: dict[str, tuple[str, str]] = {  # object key -> (file stem, extension)
    "shop/customers": ("customers", "csv"),
    "shop/orders": ("orders", "csv"),
    "loyalty/members": ("members", "parquet"),
    "web/events": ("events", "jsonl"),
}
ID_PREFIX = {"shop/customers": "C", "shop/orders": "O", "loyalty/members": "M", "web/events": "E"}

JUNK_EMAILS: tuple[str, ...] = ("test@test.com", "N/A", "", "not-an-email")
JUNK_PHONES: tuple[str, ...] = ("0000000000", "N/A", "123")
