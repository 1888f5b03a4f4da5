"""Running the request's one command: once per Idempotency-Key, then read-your-writes."""

from __future__ import annotations

from collections.abc import Callable

from api import idempotency
from api.context import services
from api.errors import SavedButUnconfirmedError
from membership import Receipt
from projections.engine import store
from projections.engine.outages import is_transient

READ_YOUR_WRITES_TIMEOUT_S = 5.0


def execute(command: Callable[[], Receipt]) -> Receipt:
    """Run the request's one command (once per Idempotency-Key), then wait until every read model
    includes it, so any following read shows it.

    If that cannot be confirmed in time, SavedButUnconfirmedError: a 503 that says what was saved
    (and a retry with the same Idempotency-Key picks the receipt up instead of running it again).
    """
    receipt = idempotency.saved_receipt()
    replayed = receipt is not None
    if receipt is None:
        idempotency.attempting()
        receipt = command()
    try:
        if not replayed:
            idempotency.remember(receipt)
        store.wait_for(services().read_db, receipt.position, READ_YOUR_WRITES_TIMEOUT_S, str(receipt.organization_id))
    except (store.ReadModelLaggingError, store.OrganizationDegradedError) as error:
        raise SavedButUnconfirmedError(receipt, error) from error
    except Exception as error:
        if is_transient(error):
            raise SavedButUnconfirmedError(receipt, error) from error
        raise
    return receipt
