"""Escalation policies: who is told, and when, as an alert stays open.

A policy is a list of steps by elapsed time since ``notify_from`` (the caller's anchor, normally
the outage's start, so "60 min" means an hour of outage), e.g. 0 min email the on-call, 15 min
SMS, 60 min Slack #noc and the manager; then optionally a reminder to the last step's channels
every ``repeat_every_minutes``. Acknowledging or resolving stops everything.

Steps are indexed from 0 (messages show them from 1: index 1 is "escalation step 2");
``last_step`` -1 means none sent yet (the alerts table's default), ``last_reminder`` 0 none yet
(reminders count from 1). The caller stores the highest step and reminder it sent; these
functions are pure and only say what is due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ispmon.alerts.rules import MAX_MINUTES, Slug
from ispmon.validation import unstorable_text


class EscalationStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    after_minutes: float = Field(ge=0, le=MAX_MINUTES, allow_inf_nan=False)
    channels: list[Slug] = Field(min_length=1, max_length=20)


class EscalationPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: Slug
    name: str | None = Field(default=None, min_length=1, max_length=200)
    steps: list[EscalationStep] = Field(min_length=1, max_length=20)
    repeat_every_minutes: float | None = Field(default=None, ge=1, le=MAX_MINUTES, allow_inf_nan=False)
    max_reminders: int | None = Field(default=None, ge=1, le=10000)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        bad = unstorable_text(data) if isinstance(data, dict) else None
        if bad:
            raise ValueError(f"{bad}: must not contain NUL characters or invalid UTF-8")
        return data

    @model_validator(mode="after")
    def _check_order(self) -> EscalationPolicy:
        for index in range(1, len(self.steps)):
            before, after = self.steps[index - 1].after_minutes, self.steps[index].after_minutes
            if after <= before:
                raise ValueError(
                    f"steps[{index}].after_minutes: must be greater than the previous step's"
                    f" ({after:g} <= {before:g})"
                )
        if self.max_reminders is not None and self.repeat_every_minutes is None:
            raise ValueError("max_reminders: only applies with repeat_every_minutes")
        return self


@dataclass(frozen=True)
class DueNotification:
    """Send `channels` now: the step with index `step` (0-based), or its reminder number `reminder` (1..)."""

    step: int
    channels: tuple[str, ...]
    reminder: int = 0

    @property
    def key(self) -> str:
        """The part of the outbox idempotency key that tells this notification from the others."""
        return f"step{self.step}" if self.reminder == 0 else f"step{self.step}-r{self.reminder}"


def _reminder_base(policy: EscalationPolicy, notify_from: datetime) -> datetime:
    return notify_from + timedelta(minutes=policy.steps[-1].after_minutes)


def due_notifications(
    policy: EscalationPolicy,
    notify_from: datetime,
    now: datetime,
    last_step: int,
    last_reminder: int,
    acknowledged: bool,
    resolved: bool,
) -> list[DueNotification]:
    """Everything due at `now` not sent yet, in order.

    After a clock jump or a suspension all overdue steps come at once (each one is a different
    audience), but of the overdue reminders only the newest: they all say the same thing. The
    caller records its number, so the skipped ones are never sent later.
    """
    if acknowledged or resolved:
        return []
    elapsed = now - notify_from
    due = [
        DueNotification(index, tuple(step.channels))
        for index, step in enumerate(policy.steps)
        if index > last_step and elapsed >= timedelta(minutes=step.after_minutes)
    ]
    last = len(policy.steps) - 1
    reached = due[-1].step if due else last_step
    if reached < last or policy.repeat_every_minutes is None:
        return due
    # Integer division of timedeltas is exact (microseconds): a reminder due at 10:30:00 is due then.
    newest = (now - _reminder_base(policy, notify_from)) // timedelta(minutes=policy.repeat_every_minutes)
    if policy.max_reminders is not None:
        newest = min(newest, policy.max_reminders)
    if newest > last_reminder and newest >= 1:
        due.append(DueNotification(last, tuple(policy.steps[-1].channels), newest))
    return due


def next_due_at(
    policy: EscalationPolicy,
    notify_from: datetime,
    last_step: int,
    last_reminder: int,
    acknowledged: bool,
    resolved: bool,
) -> datetime | None:
    """When the next notification falls due (possibly already past), or None: nothing more to send."""
    if acknowledged or resolved:
        return None
    if last_step < len(policy.steps) - 1:
        return notify_from + timedelta(minutes=policy.steps[max(last_step + 1, 0)].after_minutes)
    if policy.repeat_every_minutes is None:
        return None
    following = max(last_reminder, 0) + 1
    if policy.max_reminders is not None and following > policy.max_reminders:
        return None
    return _reminder_base(policy, notify_from) + following * timedelta(minutes=policy.repeat_every_minutes)


def simple_policy(channels: list[str]) -> EscalationPolicy:
    """One step at 0 min, no reminders: what a rule that names channels directly means.

    No channels (an empty ALERT_NOTIFICATION_CHANNELS) is a policy without steps, which pages
    nobody, rather than an error: the alert is still recorded, and the engine logs why."""
    if not channels:
        return EscalationPolicy.model_construct(id="default", steps=[])
    return EscalationPolicy(id="default", steps=[EscalationStep(after_minutes=0, channels=channels)])
