"""What the notify step reads and writes: pending alerts and per-notifier delivery state.

Delivery is remembered in two places, because one notifier must not wait for
another: per notifier in ``source_state`` (rows under ``notify:NAME``, key = alert
fingerprint) as soon as that notifier has sent, and as the alert's ``notified_at``
once every notifier that wants it has. Marking an alert notified drops its
per-notifier rows in the same transaction, so the state table only ever holds the
alerts still owed to someone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import bindparam, delete, insert, select, update

from tracker.records import Alert
from tracker.store.companies import now_utc
from tracker.store.core import Store
from tracker.store.schema import alerts, companies, series, source_state, sources

#: ``source_state`` rows of notifier NAME live under ``notify:NAME``, beside the
#: sources' own state.
STATE_PREFIX = "notify:"


def pending_alerts(store: Store, since: date, until: date) -> list[Alert]:
    """Open alerts not yet notified, first detected between ``since`` and ``until``.

    Ordered by first anomalous day, then id, so messages list them in a stable order.
    """
    query = (
        select(alerts.c.id, alerts.c.fingerprint, series.c.company_id.label("company"),
               companies.c.name.label("company_name"), series.c.metric,
               sources.c.name.label("source"), alerts.c.date, alerts.c.detected_on,
               alerts.c.confirmed_on, alerts.c.verdict, alerts.c.kind, alerts.c.change_pct,
               alerts.c.value_before, alerts.c.value_after, alerts.c.score, alerts.c.severity,
               alerts.c.status, alerts.c.event_id, alerts.c.sources_agreeing,
               alerts.c.sources_seen, alerts.c.sources_silent, alerts.c.sources_no_data,
               alerts.c.possible_source_error)
        .join(series, series.c.id == alerts.c.series_id)
        .join(sources, sources.c.id == alerts.c.source_id)
        .join(companies, companies.c.id == series.c.company_id)
        .where(alerts.c.notified_at.is_(None), alerts.c.status == "open",
               alerts.c.detected_on >= since, alerts.c.detected_on <= until)
        .order_by(alerts.c.date, alerts.c.id)
    )
    with store.reading("reading alerts to notify") as conn:
        return [Alert.from_mapping(row) for row in conn.execute(query).mappings()]


def sent_fingerprints(store: Store, notifiers: Sequence[str]) -> dict[str, set[str]]:
    """Per notifier, the fingerprints it sent whose alert is not yet fully notified."""
    keys = {STATE_PREFIX + n: n for n in notifiers}
    out: dict[str, set[str]] = {n: set() for n in notifiers}
    if not keys:
        return out
    with store.reading("reading notification state") as conn:
        for source, key in conn.execute(select(source_state.c.source, source_state.c.key)
                                        .where(source_state.c.source.in_(list(keys)))):
            out[keys[source]].add(key)
    return out


def record_sent(store: Store, notifier: str, fingerprints: Sequence[str]) -> None:
    """Remember, in one transaction, that ``notifier`` delivered these alerts."""
    stamp = now_utc()
    with store.transaction(f"recording what notifier {notifier} sent") as conn:
        conn.execute(insert(source_state), [
            {"source": STATE_PREFIX + notifier, "key": fp, "value": stamp.isoformat(),
             "updated_at": stamp} for fp in fingerprints])


def settle(store: Store, notified: Sequence[Alert], told: Sequence[Alert]) -> None:
    """In ONE transaction: stamp ``notified_at`` on the alerts every notifier has sent,
    remember what the notifications of both lists said (verdict, kind, severity) so
    that only a later change is sent again, and drop the per-notifier rows neither
    needs any more. Two transactions could be cut apart by a crash, and the next run
    would send a verdict again or forget that an alert was notified.
    """
    if not notified and not told:
        return
    said = [*notified, *told]
    with store.transaction("marking alerts notified") as conn:
        if notified:
            conn.execute(update(alerts).where(alerts.c.id.in_(bindparam("ids", expanding=True)))
                         .values(notified_at=now_utc()), {"ids": [a.id for a in notified]})
        conn.execute(update(alerts).where(alerts.c.id == bindparam("aid")).values(
            notified_verdict=bindparam("v"), notified_kind=bindparam("k"),
            notified_severity=bindparam("s")),
            [{"aid": a.id, "v": a.verdict, "k": a.kind, "s": a.severity} for a in said])
        keys = [a.fingerprint for a in notified] + [a.update_key for a in said]
        conn.execute(delete(source_state).where(
            source_state.c.source.startswith(STATE_PREFIX, autoescape=True),
            source_state.c.key.in_(bindparam("keys", expanding=True))), {"keys": keys})
