"""Reports: availability (SLA), outages, network, usage and alerts over a period, as JSON, CSV
(streamed) or PDF, on request (``GET /reports/{kind}``, ``ispmon report``) or on a schedule
(``[[report_schedules]]``, sent through the alert channels' outbox).

Pure logic lives here (kinds, histograms, maintenance time, renderers, schedules); queries live
in ``ispmon.store.endpoint_rollups`` and ``ispmon.store.reports``.
"""
