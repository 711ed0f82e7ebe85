"""Links to rows that may be gone: a foreign key without a database constraint (db_constraint=False)
points at rows the retention engine removes with a raw DELETE, so reading it may find nothing."""

from django.core.exceptions import ObjectDoesNotExist


def linked(row, field: str):
    """`row.<field>`, or None when it links nowhere (never set, or its row was removed since)."""
    try:
        return getattr(row, field)
    except ObjectDoesNotExist:
        return None
