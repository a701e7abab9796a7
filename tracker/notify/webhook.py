"""``webhook``: one Slack-compatible JSON POST per run summarising the new alerts.

The body is ``{"text": ..., "blocks": [...]}``: Slack (and Mattermost, Rocket.Chat,
Discord's ``/slack`` endpoint) render the blocks and use ``text`` for the push
notification; a generic receiver gets the same JSON, plus the alert records under
``"alerts"`` with ``include_alerts = true``.

The URL (a secret, normally from ``url_env``), the secret headers, retries and the
translation of failures are the shared JSON POST's (:mod:`tracker.notify.post`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from tracker.notify.base import (
    NotifyContext,
    alert_details,
    alert_line,
    company_label,
    count,
    day_text,
    event_headline,
    event_line,
    events,
    headline,
    join_names,
    ordered,
    pct,
)
from tracker.notify.post import JsonPostNotifier, PostSettings
from tracker.records import Alert

_SLACK_TEXT_MAX = 3000  # characters of one section or context text
_HEADER_MAX = 150  # characters of a header block
_MESSAGE_TEXT_MAX = 40_000  # Slack truncates the top-level text beyond this
#: The most characters each kind of block may carry, by its ``type``.
_BLOCK_LIMITS = {"header": _HEADER_MAX, "section": _SLACK_TEXT_MAX, "context": _SLACK_TEXT_MAX}
_ENTITY_MAX = len("&amp;")


class WebhookSettings(PostSettings):
    include_alerts: bool = Field(False, description="Add the alert records as 'alerts'")


def slack_escape(text: str) -> str:
    """Slack's three control characters as entities, so data is only ever shown.

    Slack reads ``<!channel>``, ``<@U123>`` and ``<http://x|label>`` anywhere in a
    message (the top-level ``text`` as much as a block), so a company name could page
    a whole channel or disguise a link. ``&`` first, or the entities would be doubled.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cap(text: str, limit: int) -> str:
    """Truncate escaped text to ``limit`` characters, keeping line breaks (``clip``
    folds them) and never cutting an entity in half (``&am…`` would show as such)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - _ENTITY_MAX + 1))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _slack_safe(node: Any, limit: int = _MESSAGE_TEXT_MAX) -> Any:
    """The Slack part of a message with every string escaped, then capped to the limit
    of the block it is in.

    One pass over the finished message rather than an escape per place data is
    interpolated: a field added later is covered too (the top-level ``text`` once was
    not). Our own strings (block types, ``*bold*``, arrows) survive escaping
    unchanged or as entities Slack shows as written, and caps apply to what is sent,
    which escaping makes longer.
    """
    if isinstance(node, str):
        return _cap(slack_escape(node), limit)
    if isinstance(node, list):
        return [_slack_safe(item, limit) for item in node]
    if isinstance(node, dict):
        limit = _BLOCK_LIMITS.get(node.get("type"), limit)  # type: ignore[arg-type]
        return {key: _slack_safe(value, limit) for key, value in node.items()}
    return node


def _record(alert: Alert) -> dict[str, Any]:
    """An alert as plain JSON values (dates as ISO strings, NaN as null).

    ``fresh`` is left out: it is about the run's exit code, and everything sent is news.
    """
    out: dict[str, Any] = {}
    for key, value in alert.as_dict().items():
        if key == "fresh":
            continue
        if hasattr(value, "isoformat"):
            value = day_text(value)
        elif isinstance(value, float) and value != value:  # NaN
            value = None
        out[key] = value
    return out


def build_payload(
    alerts: Sequence[Alert], context: NotifyContext, max_alerts: int,
    include_alerts: bool = False,
) -> dict[str, Any]:
    """The JSON body: ``text`` (fallback, notification), ``blocks`` (Slack layout)."""
    items = ordered(alerts)
    shown, rest = items[:max_alerts], len(items) - max_alerts
    title = headline(items) if items else event_headline(context.events)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": False,
                                    "text": f"tracker: {title}"}},
    ]
    for alert in shown:
        line = (
            f"*{company_label(alert)}*: *{alert.kind}* "
            f"{pct(alert.change_pct)}, {count(alert.value_before)} → "
            f"{count(alert.value_after)} on {day_text(alert.date)}"
        )
        details = ", ".join(alert_details(alert))
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"{line}\n{details}"}})
    notes = [
        f"{join_names(names)} moved together (event `{eid}`): "
        "likely a platform-wide change, not the companies themselves"
        for eid, names in events(items).items()
    ]
    notes += [event_line(e) for e in context.events]
    if rest > 0:
        notes.append(f"and {rest} more: `tracker alerts --since "
                     f"{min(day_text(a.date) for a in items)}`")
    if context.report_url:
        notes.append(f"Report: {context.report_url}")  # escaped later: no <link|text>
    if notes:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": n} for n in notes[:10]]})
    text_lines = [f"tracker: {title}", *(alert_line(a) for a in shown),
                  *(event_line(e) for e in context.events)]
    if rest > 0:
        text_lines.append(f"and {rest} more (tracker alerts)")
    if context.report_url:
        text_lines.append(f"Report: {context.report_url}")
    payload: dict[str, Any] = _slack_safe({"text": "\n".join(text_lines), "blocks": blocks})
    if include_alerts:  # records for machines: exact values, as every JSON output
        payload["alerts"] = [_record(a) for a in items]
    return payload


class WebhookNotifier(JsonPostNotifier):
    """POST one JSON message per run to a Slack-compatible incoming webhook."""

    name = "webhook"
    Settings = WebhookSettings
    announces_events = True
    settings: WebhookSettings

    def send(self, alerts: Sequence[Alert], context: NotifyContext) -> None:
        s = self.settings
        self.post(build_payload(alerts, context, s.max_alerts, s.include_alerts), len(alerts))
