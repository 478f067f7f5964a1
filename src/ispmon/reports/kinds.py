"""The report kinds by name: a new kind is one module with a `KIND` and one line here."""

from __future__ import annotations

from ispmon.reports import alerts, availability, network, outages, usage
from ispmon.reports.base import ReportKind

KINDS: dict[str, ReportKind] = {
    k.name: k
    for k in (
        availability.KIND,
        outages.KIND,
        network.KIND,
        usage.KIND,
        alerts.KIND,
    )
}
