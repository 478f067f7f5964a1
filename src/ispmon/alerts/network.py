"""SNMP devices and interfaces, and customers' quotas, as subjects of threshold alerts.

An alert row names its subject in ``endpoint_id``: ``device:<device id>`` for a device's own
figures (``device_unreachable``) and ``interface:<device id>:<ifName>`` for an interface's, so an
alert follows the interface through an ifIndex renumbering, as its history does. `NetSubject`
carries what the engine reads from a subject (id, name, tags, never a canary) and the device's
`parent` endpoint: while that endpoint is down, the device's and its interfaces' alerts are
recorded suppressed (``dependency:<endpoint id>``), as a dependent endpoint's are.
A customer's quota alert names ``customer:<customer id>`` (`CustomerSubject`).
Flow rules name ``customer:<customer id>``, ``prefix:<prefix>`` or ``flows:unknown-exporters``
(`FlowSubject`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NetSubject:
    id: str
    name: str
    tags: tuple[str, ...]
    device_id: str
    interface: str | None = None
    canary: bool = False
    parent: str | None = None


def device_subject(device_id: str, name: str, tags: tuple[str, ...], parent: str | None = None) -> NetSubject:
    return NetSubject(f"device:{device_id}", name, tags, device_id, parent=parent)


def interface_subject(
    device_id: str, device_name: str, tags: tuple[str, ...], interface: str, parent: str | None = None
) -> NetSubject:
    return NetSubject(
        f"interface:{device_id}:{interface}", f"{device_name} {interface}", tags, device_id, interface, parent=parent
    )


@dataclass(frozen=True, slots=True)
class CustomerSubject:
    id: str
    name: str
    customer_id: str
    tags: tuple[str, ...] = ()
    canary: bool = False
    parent: str | None = None


def customer_subject(customer_id: str, name: str) -> CustomerSubject:
    return CustomerSubject(f"customer:{customer_id}", name, customer_id)


@dataclass(frozen=True, slots=True)
class FlowSubject:
    id: str
    name: str
    tags: tuple[str, ...] = ()
    canary: bool = False
    parent: str | None = None


def flow_customer_subject(customer_id: str) -> FlowSubject:
    return FlowSubject(f"customer:{customer_id}", f"customer {customer_id}")


def flow_prefix_subject(prefix: str) -> FlowSubject:
    return FlowSubject(f"prefix:{prefix}", f"prefix {prefix}")


UNKNOWN_EXPORTERS = FlowSubject("flows:unknown-exporters", "undeclared flow exporters")
