"""Scoring detections against labels (synthetic or hand-annotated real series).

Matching is one-to-one per series and kind family with a day tolerance: a shift
or glitch detection matches a label when its date is within ``tolerance`` days of
the label's first observed day; a drift detection matches when it is reported
between the drift's start and ``drift_slack`` days after its end (drifts are
recognised late by nature). The headline numbers are the ones the issue targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

SHIFT_KINDS = ("drop", "spike")
KINDS = ("drop", "spike", "glitch", "drift_up", "drift_down")


@dataclass
class Scores:
    """Per-kind table plus the targeted headline figures."""

    per_kind: pd.DataFrame
    big_shift_recall: float
    big_shift_precision: float
    classification_accuracy: float
    median_alert_delay_days: float
    median_verdict_delay_days: float
    median_drift_delay_days: float
    false_alerts_per_10k_quiet_days: float
    extra: dict[str, float] = field(default_factory=dict)


def _match(det: pd.DataFrame, lab: pd.DataFrame, tolerance: int, drift_slack: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """For each detection the matched label index (or -1), greedily by closeness."""
    det_match = np.full(len(det), -1)
    lab_match = np.full(len(lab), -1)
    if det.empty or lab.empty:
        return det_match, lab_match
    lab_by = {s: g for s, g in lab.groupby("series")}
    pairs = []
    for i, (s, kind, date, dto) in enumerate(zip(det["series"], det["kind"], det["date"],
                                                  det["detected_on"], strict=True)):
        g = lab_by.get(s)
        if g is None:
            continue
        for j, lk, ls, le in zip(g.index, g["kind"], g["start"], g["end"], strict=True):
            if kind.startswith("drift") != lk.startswith("drift"):
                continue
            if kind.startswith("drift"):
                if lk == kind and ls <= dto <= le + pd.Timedelta(days=drift_slack):
                    pairs.append((abs((dto - le).days), i, j))
            else:
                gap = abs((date - ls).days)
                if gap <= tolerance:
                    pairs.append((gap, i, j))
    for _, i, j in sorted(pairs):
        if det_match[i] < 0 and lab_match[j] < 0:
            det_match[i], lab_match[j] = j, i
    return det_match, lab_match


def score(detections: pd.DataFrame, labels: pd.DataFrame, matrix: pd.DataFrame,
          tolerance: int = 3, drift_slack: int = 60, big_pct: float = 10.0,
          big_level: float = 500.0) -> Scores:
    """Precision/recall/F1 per kind, glitch-vs-shift accuracy, delays, quiet false-alert rate."""
    det = detections.reset_index(drop=True)
    lab = labels.reset_index(drop=True)
    dm, lm = _match(det, lab, tolerance, drift_slack)
    rows = []
    for k in KINDS:
        d_k = (det["kind"] == k).to_numpy()
        l_k = (lab["kind"] == k).to_numpy()
        tp_d = int(sum(1 for i in np.flatnonzero(d_k) if dm[i] >= 0 and lab["kind"][dm[i]] == k))
        tp_l = int(sum(1 for j in np.flatnonzero(l_k) if lm[j] >= 0 and det["kind"][lm[j]] == k))
        p = tp_d / d_k.sum() if d_k.sum() else float("nan")
        r = tp_l / l_k.sum() if l_k.sum() else float("nan")
        f1 = 2 * p * r / (p + r) if p + r > 0 else float("nan")
        rows.append({"kind": k, "labels": int(l_k.sum()), "detections": int(d_k.sum()),
                     "precision": p, "recall": r, "f1": f1})
    per_kind = pd.DataFrame(rows)
    is_shift_lab = lab["kind"].isin(SHIFT_KINDS).to_numpy()
    big = is_shift_lab & (lab["size_pct"].abs() >= big_pct).to_numpy() & (
        lab["level"] >= big_level).to_numpy()
    big_hit = [lm[j] >= 0 and det["kind"][lm[j]] == lab["kind"][j] for j in np.flatnonzero(big)]
    shift_det = det["kind"].isin(SHIFT_KINDS).to_numpy() & (det["value_before"] >= big_level
                                                            ).to_numpy()
    ok_det = [dm[i] >= 0 and lab["kind"][dm[i]] == det["kind"][i]
              for i in np.flatnonzero(shift_det)]
    cls = [(lab["kind"][j] == "glitch") == (det["kind"][lm[j]] == "glitch")
           for j in np.flatnonzero(lab["kind"].isin((*SHIFT_KINDS, "glitch")).to_numpy())
           if lm[j] >= 0]
    alert_delay, verdict_delay, drift_delay = [], [], []
    for j in np.flatnonzero(lm >= 0):
        d = det.loc[lm[j]]
        if lab["kind"][j] in SHIFT_KINDS and d["kind"] == lab["kind"][j]:
            alert_delay.append((d["detected_on"] - lab["start"][j]).days)
            if pd.notna(d["confirmed_on"]):
                verdict_delay.append((d["confirmed_on"] - lab["start"][j]).days)
        elif lab["kind"][j].startswith("drift"):
            drift_delay.append((d["detected_on"] - lab["start"][j]).days)
    quiet = [c for c in matrix.columns if c not in set(lab["series"])]
    quiet_days = int(matrix[quiet].notna().to_numpy().sum()) if quiet else 0
    quiet_alerts = int(det["series"].isin(set(quiet)).sum())
    nan = float("nan")
    return Scores(
        per_kind=per_kind,
        big_shift_recall=float(np.mean(big_hit)) if big_hit else float("nan"),
        big_shift_precision=float(np.mean(ok_det)) if ok_det else float("nan"),
        classification_accuracy=float(np.mean(cls)) if cls else float("nan"),
        median_alert_delay_days=float(np.median(alert_delay)) if alert_delay else float("nan"),
        median_verdict_delay_days=float(np.median(verdict_delay)) if verdict_delay else nan,
        median_drift_delay_days=float(np.median(drift_delay)) if drift_delay else float("nan"),
        false_alerts_per_10k_quiet_days=1e4 * quiet_alerts / quiet_days if quiet_days else nan,
        extra={"big_shift_labels": float(big.sum()), "quiet_series": float(len(quiet)),
               "quiet_days": float(quiet_days), "quiet_alerts": float(quiet_alerts)},
    )


def report(s: Scores) -> str:
    """Plain-text summary (what benchmarks/detect_eval.py prints)."""
    lines = [s.per_kind.to_string(index=False, float_format=lambda x: f"{x:.3f}"), ""]
    lines += [
        f"shifts >=10% at companies >=500: recall {s.big_shift_recall:.3f} "
        f"precision {s.big_shift_precision:.3f} (n={int(s.extra['big_shift_labels'])})",
        f"glitch-vs-shift classification accuracy: {s.classification_accuracy:.3f}",
        f"median delay: first alert {s.median_alert_delay_days:.1f} d, verdict "
        f"{s.median_verdict_delay_days:.1f} d, drift {s.median_drift_delay_days:.1f} d",
        f"false alerts per 10,000 quiet company-days: {s.false_alerts_per_10k_quiet_days:.3f} "
        f"({int(s.extra['quiet_alerts'])} alerts over {int(s.extra['quiet_days'])} days, "
        f"{int(s.extra['quiet_series'])} quiet series)",
    ]
    return "\n".join(lines)
