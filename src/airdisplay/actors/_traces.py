"""Traces across a reminder: the turn that sets one is remembered, and its firing links back to it.

Used only with tracing on (airdisplay/tracing.py). The table holds one span context per pending reminder
set while tracing was on, in memory only: after a restart a reminder fires in a trace without the link.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.trace import SpanContext

from .. import tracing
from ._records import ReminderRecord, TurnWrite

#: (actor type, actor id, reminder name) -> the span context of the turn that set the reminder.
ReminderTraces = dict[tuple[str, str, str], SpanContext]


def remember_traces(traces: ReminderTraces, write: TurnWrite) -> None:
    """After a turn's write is durable: note the running trace for each reminder it set, forget removed
    ones. (A fired reminder's entry was taken when it fired.)"""
    for name in write.reminders_removed:
        traces.pop((write.actor_type, write.actor_id, name), None)
    if write.reminders_set:
        found = tracing.current()
        for record in write.reminders_set:
            if found is None:
                traces.pop(record.key, None)
            else:
                traces[record.key] = found


@contextmanager
def fired_span(record: ReminderRecord, setter: SpanContext | None) -> Iterator[None]:
    """A new trace for a reminder's firing (what it changes is published inside it), linked to the trace
    that set the reminder when that is known."""
    with tracing.span(
        f"reminder {record.name}",
        new_trace=True,
        links=[setter] if setter is not None else (),
        attributes={"actor.type": record.actor_type, "actor.id": record.actor_id},
    ):
        yield
