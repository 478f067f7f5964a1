"""Alerts shared by several agents on one database: the rows are the truth, an engine's memory a copy.

An endpoint's alerts are opened and resolved by the agent that owns the endpoint; escalation steps,
reminders and re-suppression are written by the agent that holds the singleton lease; either may
change hands while an alert is open, and acknowledgements come through any agent's API. So:

* `refresh_open` brings the copies up to date at each tick (every agent): one small query of open
  ids and their updated_at, then the full rows of those that changed only; alerts resolved
  elsewhere leave memory;
* `lock_open` is where every write to an open alert starts: the row, locked for the transaction,
  read afresh, or None when it was resolved meanwhile (then nothing is written or sent);
* `open_of_outage` / `open_of_rule` look in the database, so an agent that gained an endpoint with
  an open alert resolves it although it never held it in memory;
* `down_elsewhere`, read with the refresh: the endpoints with an open DOWN outage, for the
  dependency walk over parents this agent does not check (its own copy of their state is stale).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ispmon.alerts.state import OpenAlert

if TYPE_CHECKING:
    import asyncpg

    from ispmon.store.alerts import AlertRepo


class SharedAlerts:
    # Provided by AlertEngine.
    alerts: AlertRepo
    open: dict[int, OpenAlert]
    _versions: dict[int, datetime]
    down_elsewhere: frozenset[str]

    async def refresh_open(self) -> None:
        self.down_elsewhere = frozenset(await self.alerts.down_endpoints())
        versions = await self.alerts.open_versions()
        for alert_id in [i for i in self.open if i not in versions]:
            self._forget(alert_id)  # resolved by another agent (or this one, already forgotten)
        stale = [i for i, at in versions.items() if self._versions.get(i) != at or i not in self.open]
        if stale:
            for row in await self.alerts.open_rows(stale):
                self._remember(OpenAlert.from_row(row), row["updated_at"])

    async def lock_open(self, conn: asyncpg.Connection, alert_id: int) -> OpenAlert | None:
        row = await self.alerts.lock_open(conn, alert_id)
        if row is None:
            self._forget(alert_id)
            return None
        return self._remember(OpenAlert.from_row(row), row["updated_at"])

    async def open_of_outage(self, outage_id: int) -> list[OpenAlert]:
        rows = await self.alerts.open_for_outage(outage_id)
        return [self._remember(OpenAlert.from_row(r), r["updated_at"]) for r in rows]

    async def open_of_rule(self, rule_id: str, endpoint_id: str) -> list[OpenAlert]:
        rows = await self.alerts.open_for_rule(rule_id, endpoint_id)
        return [self._remember(OpenAlert.from_row(r), r["updated_at"]) for r in rows]

    def _remember(self, alert: OpenAlert, version: datetime | None) -> OpenAlert:
        self.open[alert.id] = alert
        if version is not None:
            self._versions[alert.id] = version
        return alert

    def _forget(self, alert_id: int) -> None:
        self.open.pop(alert_id, None)
        self._versions.pop(alert_id, None)
