"""Read models whose definition changed since their active generation was built, and what to do.

Each generation records the fingerprints of the definition it was built with (`Projection.fingerprint`:
tables, indexes and `version`; `columns_fingerprint`: the tables' columns alone). When a deploy
changes a definition:

- **same columns** (an index, or handlers that write differently, marked by raising `version`):
  the old tables still fit the code. The process running the projections rebuilds the read model
  blue/green by itself (`rebuild_outdated`) while every reader keeps using the old tables, and
  switches when the new ones have caught up;
- **other columns**: the code can neither read nor write the old tables. `membership serve` and
  `membership worker` refuse to start with one line naming the rebuild to run, which builds the
  new generation beside the old one while the previous release keeps serving.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from membership import Organizations
from membership.database import Database
from projections.engine import tracking
from projections.engine.catalog import PROJECTIONS
from projections.engine.rebuild import RETIRED_GRACE_S, Rebuild
from projections.engine.sql import ReadDatabase

log = logging.getLogger(__name__)
LOCK = "definition-rebuild"  # one process rebuilds; the others keep serving


class DefinitionChangedError(Exception):
    """A read model's columns changed: the service cannot use its tables until it is rebuilt."""


@dataclass(frozen=True)
class Outdated:
    name: str
    generation: int  # the active one, built with the old definition
    columns_changed: bool


def outdated(db: ReadDatabase) -> list[Outdated]:
    """Read models whose active generation was built with another definition than today's."""
    with db.snapshot() as cursor:
        generations = tracking.all_generations(db, cursor)
    return [
        Outdated(g.name, g.generation, g.columns_fingerprint != PROJECTIONS[g.name].columns_fingerprint())
        for g in generations
        if g.state == tracking.ACTIVE
        and g.name in PROJECTIONS
        and g.fingerprint is not None
        and g.fingerprint != PROJECTIONS[g.name].fingerprint()
    ]


def check_startable(db: ReadDatabase) -> list[str]:
    """The read models to rebuild while serving; DefinitionChangedError (one line) if any cannot be."""
    changed = outdated(db)
    unusable = sorted(o.name for o in changed if o.columns_changed)
    if unusable:
        raise DefinitionChangedError(
            f"the tables of the {', '.join(unusable)} read model{'s' if len(unusable) > 1 else ''} changed;"
            f" run: membership projections rebuild {' '.join(unusable)}"
        )
    return sorted(o.name for o in changed)


def rebuild_outdated(
    organizations: Organizations,
    db: ReadDatabase,
    database: Database | None = None,
    retired_grace_s: float = RETIRED_GRACE_S,
) -> list[str]:
    """Rebuild, blue/green, every read model whose definition changed but whose tables still fit;
    returns the names rebuilt (none if another process is already at it, or has just done it)."""
    with db.exclusive(LOCK) as mine:
        # Looked up under the lock: a process that held it may have rebuilt them meanwhile.
        names = [o.name for o in outdated(db) if not o.columns_changed] if mine else []
        if not names:
            return []
        log.info("the definition of %s changed: rebuilding while serving the old tables", ", ".join(names))
        generations = Rebuild(organizations, db, names, retired_grace_s=retired_grace_s, database=database).run()
        log.info("rebuilt: %s", ", ".join(f"{name} (generation {gen})" for name, gen in sorted(generations.items())))
    return names
