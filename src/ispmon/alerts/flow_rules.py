"""Flow rules (``kind = "flow"``): threshold rules on the flow collector's minute figures.

Metrics, per selected subject and per 1-minute bucket of flow time:

* ``to_bps`` / ``from_bps``: bits per second towards (destination in) or from (source in) the
  subject: a customer (attributed by its ``prefixes``, longest match) or a listed prefix.
  ``to_bps`` on a customer is its download, ``from_bps`` its upload (the usage routes' names).
* ``to_pps`` / ``from_pps``: the same in packets per second.
* ``unknown_exporter_pps``: export packets per second from undeclared sources (all of them
  together), measured over each minute of arrival time.

Selectors: ``customers`` (ids) and ``prefixes`` (CIDR, at most /24 for IPv4 and /48 for IPv6,
the flow aggregates' own prefix length, so a prefix is a whole number of aggregate keys); none of
either watches every customer. ``unknown_exporter_pps`` takes no selector. Only ``above`` limits a
flow rule (a flood is a rate above a limit). ``for_checks`` and ``clear_checks`` count minutes.

This module only validates; `ispmon.flows.alerting` computes the figures and feeds the engine.
"""

from __future__ import annotations

import ipaddress
from typing import Any

PREFIX_METRICS = ("to_bps", "from_bps", "to_pps", "from_pps")
UNKNOWN_METRIC = "unknown_exporter_pps"
FLOW_METRICS = (*PREFIX_METRICS, UNKNOWN_METRIC)
# The flow aggregates keep /24 (IPv4) and /48 (IPv6) prefixes: a longer one cannot be told apart.
MAX_PREFIX_LEN = {4: 24, 6: 48}


def check_prefix(value: str) -> str:
    """A rule's prefix in canonical form; ValueError (naming nothing: pydantic adds the index)."""
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(str(exc)[:120]) from None
    limit = MAX_PREFIX_LEN[network.version]
    if network.prefixlen > limit:
        raise ValueError(
            f"at most /{limit} for IPv{network.version}: flows are aggregated by /{limit}, "
            "so a longer prefix cannot be measured (watch the customer instead)"
        )
    return str(network)


def check_flow_rule(rule: Any) -> None:
    """Validate a flow rule (called from `AlertRule`'s model validator; raises ValueError
    'field: message')."""
    for name in ("endpoints", "tags", "devices", "interfaces"):
        if getattr(rule, name):
            raise ValueError(f"{name}: a flow rule selects customers or prefixes, not {name}")
    if rule.metric not in FLOW_METRICS:
        raise ValueError(f"metric: a flow rule watches one of {', '.join(FLOW_METRICS)}")
    if rule.below is not None:
        raise ValueError("below: a flow rule fires above a rate (give above)")
    if rule.above is None:
        raise ValueError("above: a flow rule needs the rate it fires above")
    if rule.above < 0:
        raise ValueError("above: a rate, 0 or more")
    if rule.metric == UNKNOWN_METRIC:
        for name in ("customers", "prefixes"):
            if getattr(rule, name):
                raise ValueError(f"{name}: {UNKNOWN_METRIC} counts every undeclared source; no selector")
    for index, prefix in enumerate(rule.prefixes):
        if prefix in rule.prefixes[:index]:
            raise ValueError(f"prefixes[{index}]: {prefix!r} is listed twice")
