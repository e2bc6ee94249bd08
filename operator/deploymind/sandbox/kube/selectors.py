"""Label and field selectors (`?labelSelector=app=web,tier!=db`, `?fieldSelector=metadata.name=x`), and the
structured label selectors of API objects (`matchLabels`, `matchExpressions`).

The grammar of k8s.io/apimachinery/pkg/labels: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`;
field selectors support `=`, `==`, `!=` on dotted paths. A selector that does not parse is a 400, as in a cluster.
"""

from __future__ import annotations

import re
from typing import Any

from deploymind.sandbox.kube.api_errors import ApiError, bad_request

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_EQUALITY = re.compile(rf"({_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)")
_SET = re.compile(rf"({_KEY})\s+(in|notin)\s*\(([^)]*)\)")
_EXISTS = re.compile(rf"(!?)\s*({_KEY})")
_FIELD = re.compile(r"([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)")


def _terms(selector: str) -> list[str]:
    """Split on commas outside parentheses (`a in (x,y),b` has two terms)."""
    terms, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    return [t.strip() for t in [*terms, current] if t.strip()]


def matches_labels(selector: str, labels: dict[str, str]) -> bool:
    """Whether `labels` satisfy every term of a label selector; raises a 400 ApiError if it is malformed."""
    for term in _terms(selector):
        if m := _SET.fullmatch(term):
            key, op, values = m.groups()
            wanted = {v.strip() for v in values.split(",") if v.strip()}
            if (key in labels and labels[key] in wanted) != (op == "in"):
                return False
        elif m := _EQUALITY.fullmatch(term):
            key, op, value = m.groups()
            if (labels.get(key) == value) != (op != "!="):
                return False
        elif m := _EXISTS.fullmatch(term):
            negated, key = m.groups()
            if (key in labels) == bool(negated):
                return False
        else:
            raise _malformed("label", selector)
    return True


def matches_fields(selector: str, obj: dict[str, Any]) -> bool:
    """Whether `obj` satisfies a field selector (`metadata.name=x,type!=Opaque`)."""
    for term in _terms(selector):
        m = _FIELD.fullmatch(term)
        if m is None:
            raise _malformed("field", selector)
        path, op, value = m.groups()
        current: Any = obj
        for part in path.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        actual = "" if current is None else str(current).lower() if isinstance(current, bool) else str(current)
        if (actual == value) != (op != "!="):
            return False
    return True


def _malformed(kind: str, selector: str) -> ApiError:
    return bad_request(f"unable to parse requirement: invalid {kind} selector {selector!r}; "
                       "use key=value, key!=value, key in (a,b), key or !key")


def matches_label_selector(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether `labels` satisfy a structured `metav1.LabelSelector` (matchLabels, matchExpressions); `{}` matches
    everything, as `LabelSelectorAsSelector` makes it."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        present = key in labels
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False  # an invalid selector selects nothing
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True
