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


# ---------------------------------------------------------------------------
# Sliced scoring for the evaluation suite (issue 9): one matching, many tables.
#
# ``match`` pairs detections with labels once and annotates both frames, so that
# precision, recall, F1 and delays can then be cut by kind, size band, set, class or
# noise level without matching again. Labels may carry ``counted`` (False: an event
# too small to score; a detection matching it is ignored, neither hit nor false
# alarm), ``tolerance_days`` and ``slack_days`` (per-label versions of the
# arguments, for monthly and annual series) and ``set``/``class`` columns.
# ---------------------------------------------------------------------------

#: Size bands by the count before the event (or, for an unmatched detection, its
#: ``value_before``): lower bound inclusive.
SIZE_BANDS = ((0.0, "<300"), (300.0, "300-5k"), (5_000.0, "5k-100k"), (100_000.0, ">100k"))
NOISE_BANDS = ((0.0, "<0.5%"), (0.005, "0.5-1%"), (0.01, "1-2%"), (0.02, ">=2%"))
FAMILIES = {"drop": "shift", "spike": "shift", "glitch": "shift", "drift_up": "drift",
            "drift_down": "drift"}
#: Rows of :func:`table` by kind: each kind, then pooled groups.
KIND_GROUPS = {"drop": ("drop",), "spike": ("spike",), "shift": SHIFT_KINDS,
               "glitch": ("glitch",), "drift_up": ("drift_up",), "drift_down": ("drift_down",),
               "drift": ("drift_up", "drift_down"), "all": KINDS}


def band(values: np.ndarray | pd.Series, bands: tuple = SIZE_BANDS) -> np.ndarray:
    """The band name of each value (``"?"`` where the value is missing)."""
    v = np.asarray(values, dtype=np.float64)
    lows = np.array([b[0] for b in bands])
    names = np.array([b[1] for b in bands] + ["?"], dtype=object)
    pos = np.searchsorted(lows, v, side="right") - 1
    pos = np.where(np.isfinite(v) & (pos >= 0), pos, len(bands))
    return names[pos]


@dataclass
class Matched:
    """Detections and labels, each annotated with its match.

    ``det`` gains ``label`` (row of ``lab`` or -1) and ``outcome``: ``tp`` (matched a
    counted label of the same kind), ``mistyped`` (matched a counted label of another
    kind of the same family: a glitch called a drop, a drop called a spike),
    ``ignored`` (matched an uncounted label) or ``fp``. ``lab`` gains ``det`` (row of
    ``det`` or -1), ``found_kind``, ``hit`` (same kind), ``delay_days`` (detected_on -
    start), ``verdict_days`` (confirmed_on - start), ``onset_error_days`` (|date -
    start|, drifts) and ``band``; both gain ``band`` (size) and ``set`` where missing.
    """

    det: pd.DataFrame
    lab: pd.DataFrame


def match(detections: pd.DataFrame, labels: pd.DataFrame, tolerance: int = 3,
          drift_slack: int = 60) -> Matched:
    """One-to-one matching per series, greedily by closeness of dates.

    A shift or glitch detection matches a shift or glitch label when its ``date`` is
    within the label's ``tolerance_days`` of ``start``. A drift detection matches a
    drift label when it became knowable (``detected_on``) between the onset
    (``start``) and ``slack_days`` after ``end``; among candidates the closest onset
    estimate (``date``) wins, and its distance is the onset error.
    """
    det = detections.reset_index(drop=True).copy()
    lab = labels.reset_index(drop=True).copy()
    for col in ("date", "detected_on", "confirmed_on"):
        if col in det:
            det[col] = pd.to_datetime(det[col])
    if "confirmed_on" not in det:
        det["confirmed_on"] = pd.NaT
    if "value_before" not in det:
        det["value_before"] = np.nan
    lab["start"] = pd.to_datetime(lab["start"])
    lab["end"] = pd.to_datetime(lab["end"])
    counted = (lab["counted"].astype(bool).to_numpy() if "counted" in lab
               else np.ones(len(lab), dtype=bool))
    tol = (lab["tolerance_days"].fillna(tolerance).to_numpy(dtype=np.float64)
           if "tolerance_days" in lab else np.full(len(lab), float(tolerance)))
    slack = (lab["slack_days"].fillna(drift_slack).to_numpy(dtype=np.float64)
             if "slack_days" in lab else np.full(len(lab), float(drift_slack)))
    slack = np.where(lab["kind"].astype(str).str.startswith("drift").to_numpy(),
                     np.where(slack > 0, slack, drift_slack), slack)
    day = np.timedelta64(1, "D")
    pairs = []
    if len(det) and len(lab):
        by_series: dict[object, list[int]] = {}
        for j, s in enumerate(lab["series"]):
            by_series.setdefault(s, []).append(j)
        starts = lab["start"].to_numpy()
        ends = lab["end"].to_numpy()
        fam_l = [FAMILIES.get(k, k) for k in lab["kind"]]
        for i, (s, kind, date, dto) in enumerate(zip(det["series"], det["kind"], det["date"],
                                                      det["detected_on"], strict=True)):
            fam = FAMILIES.get(kind, kind)
            for j in by_series.get(s, ()):
                if fam_l[j] != fam:
                    continue
                gap = abs((np.datetime64(date) - starts[j]) / day)
                if fam == "drift":
                    lo, hi = starts[j], ends[j] + slack[j] * day
                    if lo <= np.datetime64(dto) <= hi:
                        pairs.append((gap, i, j))
                elif gap <= tol[j]:
                    pairs.append((gap, i, j))
    d_lab = np.full(len(det), -1)
    l_det = np.full(len(lab), -1)
    for _, i, j in sorted(pairs):
        if d_lab[i] < 0 and l_det[j] < 0:
            d_lab[i], l_det[j] = j, i
    det["label"] = d_lab
    same = np.array([j >= 0 and lab["kind"].iat[j] == k for j, k in zip(d_lab, det["kind"],
                                                                      strict=True)], dtype=bool)
    cnt = np.array([j >= 0 and counted[j] for j in d_lab], dtype=bool)
    det["outcome"] = np.where(d_lab < 0, "fp", np.where(~cnt, "ignored",
                                                         np.where(same, "tp", "mistyped")))
    lab["det"] = l_det
    lab["counted"] = counted
    lab["found_kind"] = [det["kind"].iat[i] if i >= 0 else None for i in l_det]
    lab["hit"] = (lab["found_kind"] == lab["kind"]).to_numpy() & counted
    got = np.maximum(l_det, 0)
    def days(a: pd.Series, b: pd.Series) -> np.ndarray:
        out = ((a.to_numpy() - b.to_numpy()) / day).astype(np.float64)
        return np.where(l_det >= 0, out, np.nan)
    if len(det):
        lab["delay_days"] = days(det["detected_on"].iloc[got], lab["start"])
        lab["verdict_days"] = days(det["confirmed_on"].iloc[got], lab["start"])
        lab["onset_error_days"] = np.abs(days(det["date"].iloc[got], lab["start"]))
    else:
        lab["delay_days"] = lab["verdict_days"] = lab["onset_error_days"] = np.nan
    lab["band"] = band(lab["level"]) if "level" in lab else "?"
    own = band(det["value_before"])
    det["band"] = [lab["band"].iat[j] if j >= 0 else b for j, b in zip(d_lab, own, strict=True)]
    if "set" not in det:
        det["set"] = [lab["set"].iat[j] if j >= 0 and "set" in lab else "" for j in d_lab]
    if "set" not in lab:
        lab["set"] = ""
    if "class" in lab:
        det["class"] = [lab["class"].iat[j] if j >= 0 else "unlabelled" for j in d_lab]
    return Matched(det, lab)


def _prf(tp_det: int, n_det: int, tp_lab: int, n_lab: int) -> tuple[float, float, float]:
    p = tp_det / n_det if n_det else float("nan")
    r = tp_lab / n_lab if n_lab else float("nan")
    if n_det == 0 and n_lab:
        p = float("nan")
    f1 = 2 * p * r / (p + r) if (p + r) > 0 else (0.0 if n_lab and tp_lab == 0 else float("nan"))
    return p, r, f1


def table(m: Matched, by: str | None = None, kinds: tuple[str, ...] | None = None,
          groups: list | None = None) -> pd.DataFrame:
    """Precision, recall, F1 and median delays per value of ``by`` (a column of both frames).

    ``by=None`` (or ``"kind"``) gives one row per kind and pooled groups (``shift`` =
    drops and spikes, ``drift``, ``all``). Otherwise ``kinds`` restricts the rows to
    those kinds (``SHIFT_KINDS`` for a size-band table of shifts). Ignored detections
    and uncounted labels are left out of every count.
    """
    det = m.det[m.det["outcome"] != "ignored"]
    lab = m.lab[m.lab["counted"]]
    rows = []
    if by in (None, "kind"):
        items = [(g, ks, np.ones(len(det), bool), np.ones(len(lab), bool))
                 for g, ks in KIND_GROUPS.items()]
    else:
        ks = kinds or KINDS
        vals = groups if groups is not None else sorted(
            set(det[by].dropna().astype(str)) | set(lab[by].dropna().astype(str)))
        items = [(v, ks, (det[by].astype(str) == str(v)).to_numpy(),
                  (lab[by].astype(str) == str(v)).to_numpy()) for v in vals]
    for name, ks, dsel, lsel in items:
        d = det[dsel & det["kind"].isin(ks).to_numpy()]
        g = lab[lsel & lab["kind"].isin(ks).to_numpy()]
        if by not in (None, "kind") and groups is None and len(d) == 0 and len(g) == 0:
            continue
        tp_d = int((d["outcome"] == "tp").sum())
        tp_l = int(g["hit"].sum())
        p, r, f1 = _prf(tp_d, len(d), tp_l, len(g))
        hits = g[g["hit"]]
        rows.append({by or "kind": name, "labels": len(g), "detections": len(d), "tp": tp_l,
                     "precision": p, "recall": r, "f1": f1,
                     "median_delay": float(hits["delay_days"].median()) if len(hits) else np.nan,
                     "median_verdict": float(hits["verdict_days"].median())
                     if len(hits) and hits["verdict_days"].notna().any() else np.nan})
    return pd.DataFrame(rows)


def glitch_typing(m: Matched) -> tuple[float, int]:
    """Share of glitch labels found by a glitch detection among those found by any shift-family
    detection (a glitch reported as a drop or a spike is typed wrong), and their number."""
    g = m.lab[(m.lab["kind"] == "glitch") & (m.lab["det"] >= 0) & m.lab["counted"]]
    return (float((g["found_kind"] == "glitch").mean()) if len(g) else float("nan")), len(g)


def drift_onsets(m: Matched, within: int = 14) -> dict[str, float]:
    """Drift detection and dating: how many were found, and with the onset how close.

    ``share_within_all`` counts an undetected drift as a miss (the goal's reading);
    ``share_within_found`` is among detected ones only.
    """
    g = m.lab[m.lab["kind"].astype(str).str.startswith("drift") & m.lab["counted"]]
    hit = g[g["hit"]]
    ok = (hit["onset_error_days"] <= within).sum()
    nan = float("nan")
    return {"drifts": float(len(g)), "detected": float(len(hit)),
            "median_onset_error": float(hit["onset_error_days"].median()) if len(hit) else nan,
            "share_within_all": float(ok / len(g)) if len(g) else nan,
            "share_within_found": float(ok / len(hit)) if len(hit) else nan}


def quiet_days(matrix: pd.DataFrame, labels: pd.DataFrame) -> tuple[list, int]:
    """Series with no label at all, and their observed days."""
    labelled = set(labels["series"])
    quiet = [c for c in matrix.columns if c not in labelled]
    return quiet, int(matrix[quiet].notna().to_numpy().sum()) if quiet else 0


def false_alert_rate(detections: pd.DataFrame, quiet: list, days: int) -> tuple[float, int]:
    """Alerts (any kind) on quiet series per 10,000 of their observed days, and their number."""
    n = int(detections["series"].isin(set(quiet)).sum()) if len(detections) else 0
    return (1e4 * n / days if days else float("nan")), n


def fmt_table(df: pd.DataFrame) -> str:
    """Fixed-width text of a score table (3 decimals; counts as integers; '-' for NaN)."""
    def f(x: object) -> str:
        if isinstance(x, float):
            return "-" if np.isnan(x) else f"{x:.3f}"
        return str(x)
    return df.to_string(index=False, na_rep="-", formatters={c: f for c in df.columns
                                                             if df[c].dtype.kind == "f"})
