"""Text and JSON for app logs on the packet timeline: the merged timeline table, the diagnosis
as prose, and the JSON additions (`logs`, `timeline`, app findings).

JSON additions (to `tcpstall correlate --json` / `tcpstall analyze --json` when --log is given):

    findings[]   + {kind: "app_stall" | "app_timeout", id: "app-N", summary: the causal chain,
                    caused_by: [ids of lost segments / plugin findings], evidence: [log lines],
                    numbers: {side, log ("file:line"), log_text, app_ms, app_start, app_end, zone,
                              cause: "hol" | "rwnd" | "retries" | null, chain: [steps], and per cause:
                              hol: lost_id, lost_seq_raw, lost_len, sent_at, sent_by, held_bytes, hold_ms,
                                   delivered_at, delivered_after_ms, retransmit_after_ms, trigger,
                                   thin_stream, send_interval_ms, explained_ms
                              rwnd: rwnd_id, window, rtt_ms, bytes, limited_ms, model_ms, model_error_pct,
                                    app_timeout_ms, window_needed, rcvbuf_log
                              retries: retries_id, retransmissions, first_send, first_rto_retransmission,
                                       app_failed_after_s, tcp_retries2, predicted_abort_after_s,
                                       abort_error_pct, default_abort_after_s, faster[]}}
    logs[]       {path, source, side, events, lines, garbage, garbage_lines, formats, zoned, zoneless,
                  tz (given, "+08:00"), tz_inferred, display_zone, warnings[]}
    timeline[]   {time (A's clock), source ("A" | "B" | "log A" | "log B"), frame, log, line, text, marks[], gap}
    diagnosis    {incidents, explained, unexplained}
"""
from __future__ import annotations

from typing import List, Optional, Sequence

from tabulate import tabulate

from ..applog import format_offset
from ..diagnose import Diagnosis, clock, zone_label
from .json import finding_dict


def timeline_table(rows: Sequence, zone: Optional[int] = None, max_rows: int = 300,
                   two_captures: Optional[bool] = None) -> str:
    """The merged timeline: one clock (A's, shown in `zone`), every row marked by its source."""
    if not rows:
        return "timeline: nothing to show (no app incident and no capture finding)"
    table = []
    for r in rows[:max_rows]:
        where = (f"{r.frame}" if r.frame is not None else (f"{r.log}:{r.line_no}" if r.log else ""))
        text = r.text if len(r.text) <= 110 else r.text[:109] + "…"
        table.append([clock(r.time, zone), r.source, where, text, "; ".join(r.marks)])
    two = two_captures if two_captures is not None else any(r.source in ("B", "log B") for r in rows)
    what = "packets of A and B, log lines of each host" if two else "packets and log lines"
    out = [f"timeline ({'capture A' if two else 'the capture'}'s clock, {zone_label(zone)}; {what}):",
           tabulate(table, headers=["time", "source", "frame / line", "event", "what"],
                    tablefmt="simple", disable_numparse=True)]
    if len(rows) > max_rows:
        out.append(f"… {len(rows) - max_rows} more rows (--json lists them all)")
    return "\n".join(out)


def diagnosis_text(diagnosis: Diagnosis) -> str:
    """The app findings as prose: one paragraph per incident, the chain spelled out."""
    if not diagnosis.findings:
        return "diagnosis: the logs show no stall or timeout"
    out = [f"diagnosis: {len(diagnosis.findings)} app incident(s), {diagnosis.explained} explained by TCP"]
    for f in diagnosis.findings:
        out.append("")
        out.append(f"[{f.id}] {f.kind}" + (f"  (caused by {', '.join(f.caused_by)})" if f.caused_by else ""))
        chain = (f.numbers or {}).get("chain") or [f.summary]
        if not f.caused_by:
            out.append(f"  {f.summary}")
            continue
        out.append(f"  {chain[0]}")
        for step in chain[1:]:
            out.append(f"    {step}" if step.startswith("→") else f"    ← {step}")
    return "\n".join(out)


def logs_json(logs: Sequence) -> List[dict]:
    out = []
    for lg in logs:
        st = lg.read.stats
        out.append({
            "path": lg.read.path, "source": lg.source, "side": lg.side, "events": len(lg.events),
            "lines": st.lines, "garbage": st.garbage, "garbage_lines": list(st.garbage_lines),
            "formats": dict(st.formats), "zoned": st.zoned, "zoneless": st.zoneless,
            "tz": None if lg.read.tz is None else format_offset(lg.read.tz),
            "tz_inferred": None if lg.read.tz_inferred is None else format_offset(lg.read.tz_inferred),
            "display_zone": zone_label(lg.zone), "warnings": list(lg.warnings)})
    return out


def timeline_json(rows: Sequence) -> List[dict]:
    return [{"time": round(r.time, 6), "source": r.source, "frame": r.frame, "log": r.log, "line": r.line_no,
             "text": r.text, "marks": list(r.marks), "gap": r.gap} for r in rows]


def diagnosis_json(diagnosis: Diagnosis) -> dict:
    return {"incidents": len(diagnosis.incidents), "explained": diagnosis.explained,
            "unexplained": diagnosis.unexplained}


def with_logs_json(doc: dict, report) -> dict:
    """A command's JSON document plus the app findings (in the one finding shape,
    `render.json.finding_dict`), `diagnosis`, `logs` and `timeline`."""
    doc = dict(doc)
    added = [finding_dict(f) for f in report.diagnosis.findings]
    doc["findings"] = list(doc.get("findings", [])) + added
    doc.update(diagnosis=diagnosis_json(report.diagnosis), logs=logs_json(report.logs),
               timeline=timeline_json(report.rows))
    return doc
