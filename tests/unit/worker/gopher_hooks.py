"""Python transform hooks that test_transform.py loads by `module:function` name, as a user's image would."""

from __future__ import annotations

from sluice_worker.transform import Record, Row


def tag_region(record: Record, row: Row) -> Row:
    """Adds the store's region and the record's partition to the row."""
    return {
        **row,
        "region": "us-west" if row.get("store") == "sf" else "elsewhere",
        "partition": record.partition,
    }


def refuse_free_items(record: Record, row: Row) -> Row:
    """Rejects items with a zero price."""
    if row.get("price") == 0:
        raise ValueError("free items are not sold")
    return row


def forget_to_return(record: Record, row: Row) -> None:
    """Mutates the row but returns nothing: a bug the transform reports."""
    row["store"] = "lost"


not_a_function = 42
