"""After a page's command: wait until the read models show it (read-your-writes), as the API does."""

from __future__ import annotations

import logging

from membership import Receipt
from projections.engine import store
from web.context import services

log = logging.getLogger("web")
READ_YOUR_WRITES_TIMEOUT_S = 5.0


def settled(receipt: Receipt) -> bool:
    """True once every read model shows the command; False if they lag (or hold the organization back) past
    the timeout. What was saved is saved either way: the page goes on, and may say the lists will catch up."""
    try:
        store.wait_for(services().read_db, receipt.position, READ_YOUR_WRITES_TIMEOUT_S, str(receipt.organization_id))
    except (store.ReadModelLaggingError, store.OrganizationDegradedError) as error:
        log.warning("saved at %s in %s; the lists do not show it yet: %s", receipt.position, receipt.organization_id, error)
        return False
    return True
