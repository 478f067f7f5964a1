"""A scheduled report travels the real path: due at its firing, rendered, recorded with its outbox
rows, sent by the real sender through apprise to a real SMTP server (aiosmtpd) with the PDF
attached; a second pass, a restart or a second agent sends nothing more."""

from __future__ import annotations

import io
from datetime import timedelta

import pypdf

from ispmon.alerts.channels import ChannelRegistry, parse_channel
from ispmon.alerts.notifier import AppriseNotifier
from ispmon.alerts.sender import DeliveryPolicy, Sender
from ispmon.reports import runner
from ispmon.reports.schedules import ReportSchedule
from ispmon.store import endpoint_rollups
from ispmon.store.database import Database
from ispmon.store.notifications import NotificationRepo
from tests.integration.alerts.test_alert_delivery import SMTP_PASSWORD, SMTP_USER, Clock, MailSink
from tests.integration.alerts.test_alert_delivery import smtp as smtp
from tests.integration.reports.timeline import DAY, SLA_DAY, START, script_day

FIRED = START + DAY + timedelta(hours=6)  # 06:00 the next day: the daily schedule's firing


async def test_a_daily_sla_pdf_arrives_by_mail_once(db: Database, smtp: MailSink) -> None:
    await script_day(db)
    await endpoint_rollups.rollup(db.pool, START + 2 * DAY)
    schedule = ReportSchedule(
        id="daily-sla", kind="availability", cron="0 6 * * *", period="day", format="pdf", channels=["mgmt"]
    )
    url = f"mailto://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{smtp.port}?to=boss@example.net&from=ispmon@example.net"
    registry = ChannelRegistry([parse_channel("mgmt", url)])
    policy = DeliveryPolicy(timeout=10.0)
    sender = Sender(NotificationRepo(db.pool), registry, AppriseNotifier(timeout=10.0), policy, Clock())

    assert await runner.send_due(db, [schedule], FIRED + timedelta(minutes=1)) == [("daily-sla", START)]
    # The next pass, a restarted daemon or another agent: the period is recorded, nothing new.
    assert await runner.send_due(db, [schedule], FIRED + timedelta(minutes=2)) == []
    assert await sender.run_once() == 1
    assert await sender.run_once() == 0

    [message] = smtp.messages
    assert message["Subject"] == "Availability report 2026-03-02 to 2026-03-03"
    body = message.get_body(preferencelist=("plain", "html"))
    overall = 100 * (2 * 86400 - 3600 - 2700) / (2 * 86400 - 3600)  # web and dns together
    assert body is not None and f"sla percent: {overall:.3f}" in body.get_content()
    [part] = list(message.iter_attachments())
    assert part.get_filename() == "ispmon-availability-20260302-20260303.pdf"
    assert part.get_content_type() == "application/pdf"
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(part.get_content())).pages)
    assert f"{SLA_DAY:.3f}" in text
    row = await db.pool.fetchrow("SELECT state, event, channel FROM notifications")
    assert tuple(row) == ("sent", "report", "mgmt")


async def test_a_crash_before_the_commit_sends_the_period_later(db: Database) -> None:
    await script_day(db)
    schedule = ReportSchedule(id="w", kind="outages", cron="0 6 * * *", period="day", format="csv", channels=["c"])
    await db.pool.execute(
        """CREATE FUNCTION crash() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'crash'; END $$;
           CREATE TRIGGER crash BEFORE INSERT ON notifications FOR EACH ROW EXECUTE FUNCTION crash()"""
    )
    try:
        await runner.send_due(db, [schedule], FIRED)
    except Exception as exc:
        assert "crash" in str(exc)
    else:
        raise AssertionError("the trigger did not fire")
    assert await db.pool.fetchval("SELECT count(*) FROM report_runs") == 0  # not marked sent
    await db.pool.execute("DROP TRIGGER crash ON notifications")
    assert await runner.send_due(db, [schedule], FIRED + timedelta(minutes=1)) == [("w", START)]
    assert await db.pool.fetchval("SELECT count(*) FROM notifications") == 1


async def test_the_daemons_report_loop_rolls_up_prunes_and_queues(db: Database) -> None:
    import asyncio
    from datetime import UTC, datetime

    await script_day(db)  # March 2026: older than a retention of 200 days, newer than 400
    now = datetime.now(UTC)
    schedule = ReportSchedule(id="d", kind="outages", cron="* * * * *", period="day", format="json", channels=["c"])
    woken = asyncio.Event()
    task = asyncio.create_task(runner.report_loop(db, 400, [schedule], woken.set, interval=0.2))
    try:
        await asyncio.wait_for(woken.wait(), 60)
        assert await db.pool.fetchval("SELECT count(*) FROM endpoint_rollups WHERE step_s = 86400") == 2
        row = await db.pool.fetchrow("SELECT report_schedule, report_period FROM notifications")
        assert row["report_schedule"] == "d"
        assert row["report_period"] == now.replace(hour=0, minute=0, second=0, microsecond=0) - DAY
    finally:
        task.cancel()
    task2 = asyncio.create_task(runner.report_loop(db, 200, [], None, interval=0.2))
    try:
        for _ in range(300):
            if await db.pool.fetchval("SELECT count(*) FROM endpoint_rollups") == 0:
                break
            await asyncio.sleep(0.1)
        assert await db.pool.fetchval("SELECT count(*) FROM endpoint_rollups") == 0  # ROLLUP_RETENTION_DAYS
    finally:
        task2.cancel()
