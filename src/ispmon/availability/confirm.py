"""The monitor's side of outages confirmed from several locations (`confirm_locations`, or an
explicit list of more than one location): this location's state machine decides only what this
location sees; the endpoint's one outage is opened and resolved by `store.locations` from every
location's current verdict. Mixed into `Monitor`.

While this location sees the endpoint DOWN (verified), every check rewrites its verdict, so the
decision is taken again with fresh verdicts from the others: whichever location completes the
quorum opens the outage, and pages for it; an UP verdict that leaves fewer than
`confirm_locations` DOWN resolves it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from ispmon.availability.outages import OutageDeclared, OutageResolved, Phase, with_outage_id
from ispmon.models import Severity, Status
from ispmon.store.locations import LocationVerdicts, Verdict

if TYPE_CHECKING:
    from ispmon.agents.registry import AgentRegistry
    from ispmon.availability.compact import CompactSpec
    from ispmon.availability.endpoints import EndpointSpec

log = structlog.get_logger("ispmon.availability.monitor")


def confirmed_across_locations(spec: EndpointSpec | CompactSpec) -> bool:
    return spec.confirm_locations > 1 or (spec.locations is not None and len(spec.locations) > 1)


class LocationConfirmation:
    agents: AgentRegistry | None
    agent_id: str | None
    location: str | None
    alerts: Any
    verdicts: LocationVerdicts | None

    def _confirmed(self, spec: EndpointSpec | CompactSpec) -> bool:
        return self.verdicts is not None and self.agents is not None and confirmed_across_locations(spec)

    async def _verdict(self, runtime: Any, event: OutageDeclared | OutageResolved | None) -> None:
        """Record this location's verdict (DOWN while its state is in an outage) and act on the
        decision. `event` is the transition that caused it, None for a refresh."""
        assert self.verdicts is not None and self.agents is not None
        spec, state = runtime.spec, runtime.state
        down = state.phase is Phase.OUTAGE
        now = datetime.now(UTC)
        probed = tuple(spec.locations) if spec.locations else tuple(sorted(self.agents.live_locations()))
        verdict = Verdict(
            spec.id,
            self.location or "default",
            self.agent_id or "",
            down,
            state.outage_started_at if down else None,
            spec.check_interval,
            spec.confirm_locations,
            probed,
            self.agents.dead_after,
        )
        declared = event if isinstance(event, OutageDeclared) else None
        if down and declared is None:
            declared = OutageDeclared(
                started_at=state.outage_started_at or now,
                declared_at=now,
                status=state.outage_status or Status.DOWN,
                severity=state.severity or Severity.MAJOR,
                error_kind=state.last_error_kind,
                error=state.last_error,
                failures=state.consecutive_failures,
                verified=True,
            )
        opening = None
        if declared is not None:
            opening = {
                "started_at": declared.started_at,
                "status": declared.status.value,
                "severity": declared.severity.value,
                "error_kind": declared.error_kind,
                "error": declared.error,
                "failures": declared.failures,
                "verified": declared.verified,
                "flapping": state.flapping,
            }
        lifecycle_source = declared if down else event
        lifecycle = (
            (lifecycle_source.kind, lifecycle_source.occurred_at, lifecycle_source.as_dict())
            if lifecycle_source is not None
            else None
        )
        resolved_at = event.resolved_at if isinstance(event, OutageResolved) else (None if down else now)
        try:
            decision = await self.verdicts.decide(
                verdict, opening=opening, resolved_at=resolved_at, event=lifecycle
            )
        except Exception as exc:  # the next check writes its verdict again
            log.error("location_verdict_failed", endpoint_id=spec.id, error=str(exc))
            return
        if decision.action == "opened" and decision.outage_id is not None and declared is not None:
            runtime.state = with_outage_id(runtime.state, decision.outage_id)
            log.warning(
                "outage_declared",
                endpoint_id=spec.id,
                outage_id=decision.outage_id,
                severity=declared.severity.value,
                status=declared.status.value,
                started_at=declared.started_at.isoformat(),
                locations=list(decision.down_locations),
                confirm_locations=spec.confirm_locations,
            )
            if self.alerts is not None:
                await self.alerts.outage_declared(spec, declared, decision.outage_id)
        elif decision.action == "joined" and decision.outage_id is not None:
            runtime.state = with_outage_id(runtime.state, decision.outage_id)
        elif decision.action == "waiting" and event is not None:
            log.info(
                "outage_not_confirmed",
                endpoint_id=spec.id,
                location=self.location,
                down_locations=list(decision.down_locations),
                confirm_locations=spec.confirm_locations,
            )
        elif decision.action == "resolved" and decision.row is not None:
            row = decision.row
            log.warning(
                "outage_resolved",
                endpoint_id=spec.id,
                outage_id=decision.outage_id,
                duration_seconds=round(row["duration_seconds"] or 0.0, 3),
                down_locations=list(decision.down_locations),
            )
            if self.alerts is not None and decision.outage_id is not None:
                await self.alerts.outage_resolved(
                    spec.id, decision.outage_id, row["resolved_at"], row["duration_seconds"] or 0.0
                )
