"""Conditional row writes: a row replaced or deleted only if nobody changed it since it was read
(or created only if it did not exist), so instances that race never both win. Flow control makes
every write this way; retention and the watch list delete this way."""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient


async def write_if_unchanged(table: TableClient, entity: dict[str, Any], etag: str | None) -> str | None:
    """Replace the row if its ETag is still `etag` (create it when `etag` is None): the new
    ETag, or None when another writer got there first."""
    try:
        if etag is None:
            meta = await table.create_entity(entity)
        else:
            meta = await table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
    except (ResourceExistsError, ResourceNotFoundError):
        return None
    except HttpResponseError as exc:
        if exc.status_code in (409, 412):
            return None
        raise
    return meta["etag"]


async def delete_if_unchanged(table: TableClient, partition: str, row: str, etag: str | None) -> bool:
    """Delete the row if its ETag is still `etag` (whatever it is when `etag` is None): False if
    it changed. A row already gone counts as deleted (the SDK ignores a 404)."""
    condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
    try:
        await table.delete_entity(partition, row, **condition)
    except HttpResponseError as exc:
        if exc.status_code == 412:
            return False
        raise
    return True
