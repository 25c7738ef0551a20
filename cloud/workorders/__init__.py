"""Work orders: faults reported by people or raised by alarms, assigned to contractor teams' technicians,
moved through their lifecycle against SLA clocks, escalated before deadlines, verified by the device.
docs/work-orders.md describes the rules for people; docs/architecture.md how an alarm becomes an order."""

# The data layer (cloud.crud's operations) names these while it loads, and loading the rest of
# this package loads the data layer: so they come first.
from cloud.workorders.signals import DEFAULT_POLICY, FaultPolicy, FaultSignal, alarm_key  # isort: split

from cloud.workorders.alarm_policy import (
    GATEWAY_OFFLINE,
    apply_signal,
    apply_sync_alarms,
    fault_levels,
    gateway_down_since,
    offline_during_outage,
)
from cloud.workorders.assignment import auto_assign
from cloud.workorders.attachments import add_attachment, read_attachment
from cloud.workorders.checks import check_gateways, verify_cleared
from cloud.workorders.escalation import escalate_due
from cloud.workorders.lifecycle import TRANSITIONS, add_entry, report_fault, transition, update_levels, writable_order
from cloud.workorders.sla import LEVELS, SLA_HOURS, priority_of, sla_elapsed, start_clocks
from cloud.workorders.views import list_orders, order_detail, order_views, read_order, visible_order

__all__ = [
    "DEFAULT_POLICY",
    "GATEWAY_OFFLINE",
    "LEVELS",
    "SLA_HOURS",
    "TRANSITIONS",
    "FaultPolicy",
    "FaultSignal",
    "add_attachment",
    "add_entry",
    "alarm_key",
    "apply_signal",
    "apply_sync_alarms",
    "auto_assign",
    "check_gateways",
    "escalate_due",
    "fault_levels",
    "gateway_down_since",
    "list_orders",
    "offline_during_outage",
    "order_detail",
    "order_views",
    "priority_of",
    "read_attachment",
    "read_order",
    "report_fault",
    "sla_elapsed",
    "start_clocks",
    "transition",
    "update_levels",
    "verify_cleared",
    "visible_order",
    "writable_order",
]
