"""Custom search attributes, so operators can find and filter jobs in the Temporal UI."""

from __future__ import annotations

import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

log = logging.getLogger(__name__)

JOB_STATUS = SearchAttributeKey.for_keyword("SwarmkeepStatus")
TENANT = SearchAttributeKey.for_keyword("SwarmkeepTenant")
SUBTASKS_TOTAL = SearchAttributeKey.for_int("SwarmkeepSubtasksTotal")
SUBTASKS_DONE = SearchAttributeKey.for_int("SwarmkeepSubtasksDone")

ALL: dict[str, int] = {
    JOB_STATUS.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    TENANT.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    SUBTASKS_TOTAL.name: IndexedValueType.INDEXED_VALUE_TYPE_INT,
    SUBTASKS_DONE.name: IndexedValueType.INDEXED_VALUE_TYPE_INT,
}


def dev_server_flags() -> list[str]:
    """`temporal server start-dev` flags that register the attributes at start-up."""
    names: dict[int, str] = {
        IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD: "Keyword",
        IndexedValueType.INDEXED_VALUE_TYPE_INT: "Int",
    }
    return [flag for name, kind in ALL.items() for flag in ("--search-attribute", f"{name}={names[kind]}")]


async def register(client: Client, namespace: str) -> bool:
    """Add whichever attributes the namespace lacks (idempotent); True when all of them are there."""
    try:
        request = ListSearchAttributesRequest(namespace=namespace)
        existing = await client.operator_service.list_search_attributes(request)
        missing = {name: kind for name, kind in ALL.items() if name not in existing.custom_attributes}
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)  # type: ignore[arg-type]
            )
            log.info("registered search attributes %s in namespace %s", sorted(missing), namespace)
        return True
    except Exception as error:  # jobs still run, only without the UI columns
        log.warning("search attributes are not available in namespace %s: %s", namespace, error)
        return False
