"""Events as kube-apiserver prints them in a Table (its `printEvent`), for `kubectl get events`.

The server always sends the wide form; kubectl shows the priority-0 columns (LAST SEEN, TYPE, REASON, OBJECT,
MESSAGE) and adds the others with `-o wide`. `events.k8s.io/v1` Events are printed through the same columns,
read from their own field names (`regarding`, `note`, `deprecated…`), as the apiserver does after converting them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

JsonObj = dict[str, Any]
Age = Callable[[str], str]

EVENT_GROUPS: Final = ("", "events.k8s.io")
# (name, priority, description), in the apiserver's order; descriptions are the Event API's field docs.
_COLUMNS: Final = (
    ("Last Seen", 0, "The time at which the most recent occurrence of this event was recorded."),
    ("Type", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
    ("Reason", 0, "This should be a short, machine understandable string that gives the reason for the transition "
                  "into the object's current status."),
    ("Object", 0, "The object that this event is about."),
    ("Subobject", 1, "If referring to a piece of an object instead of an entire object, this string should contain "
                     "a valid JSON/Go field access statement."),
    ("Source", 1, "The component reporting this event. Should be a short machine understandable string."),
    ("Message", 0, "A human-readable description of the status of this operation."),
    ("First Seen", 1, "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    ("Count", 1, "The number of times this event has occurred."),
    ("Name", 1, "Name must be unique within a namespace."),
)
UNKNOWN: Final = "<unknown>"


def column_definitions() -> list[JsonObj]:
    return [{"name": name, "type": "integer" if name == "Count" else "string",
             "format": "name" if name == "Name" else "", "description": description, "priority": priority}
            for name, priority, description in _COLUMNS]


def _as_core(event: JsonObj) -> JsonObj:
    """An `events.k8s.io/v1` Event under the core v1 field names (a core Event is returned as it is)."""
    if event.get("apiVersion") != "events.k8s.io/v1":
        return event
    return {
        "metadata": event.get("metadata") or {}, "type": event.get("type"), "reason": event.get("reason"),
        "message": event.get("note"), "involvedObject": event.get("regarding") or {},
        "firstTimestamp": event.get("deprecatedFirstTimestamp"), "lastTimestamp": event.get("deprecatedLastTimestamp"),
        "count": event.get("deprecatedCount"), "source": event.get("deprecatedSource") or {},
        "eventTime": event.get("eventTime"), "series": event.get("series"),
        "reportingComponent": event.get("reportingController"), "reportingInstance": event.get("reportingInstance"),
    }


def cells(event: JsonObj, age: Age) -> list[Any]:
    """The row's cells, in `_COLUMNS` order."""
    e = _as_core(event)

    def since(timestamp: Any) -> str:
        return age(timestamp) if isinstance(timestamp, str) and timestamp else UNKNOWN

    first = since(e.get("firstTimestamp")) if e.get("firstTimestamp") else since(e.get("eventTime"))
    last = since(e.get("lastTimestamp")) if e.get("lastTimestamp") else first
    count = e.get("count") or 1  # singleton events of the newer API carry no count
    series = e.get("series")
    if isinstance(series, dict):
        last, count = since(series.get("lastObservedTime")), series.get("count") or count
    involved = e.get("involvedObject") or {}
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = e.get("source") or {}
    component = source.get("component") or e.get("reportingComponent") or ""
    instance = source.get("host") or e.get("reportingInstance") or ""
    return [last, e.get("type") or "", e.get("reason") or "", target, involved.get("fieldPath") or "",
            f"{component}, {instance}" if instance else component, str(e.get("message") or "").strip(), first,
            int(count), (e.get("metadata") or {}).get("name", "")]
