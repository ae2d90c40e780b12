"""The recommendation's HTML report: model latency against cost per inference, Pareto front
marked, and the ranked table. `python -m kompile.recommender.report` writes it (and the rows as
JSON) to object storage from a Job that holds the credentials, which the operator never does.
"""

from __future__ import annotations

import html
import json
import math
import os
import sys

from pydantic import Field

from kompile.api.common import KModel
from kompile.api.recommendation import Recommendation

WIDTH, HEIGHT, MARGIN = 720, 420, 70


class ReportRequest(KModel):
    uri: str = Field(description="s3:// prefix the report is written under.")
    title: str
    percentile: str
    rows: list[Recommendation]


def _scale(values: list[float], lo: int, hi: int, log: bool):
    """A function from value to pixel; logarithmic when the values span more than a decade."""
    f = (lambda v: math.log10(v)) if log else (lambda v: v)
    vmin, vmax = min(f(v) for v in values), max(f(v) for v in values)
    if vmax == vmin:
        vmin, vmax = vmin - 1, vmax + 1
    return lambda v: lo + (f(v) - vmin) / (vmax - vmin) * (hi - lo)


def plot(rows: list[Recommendation], percentile: str) -> str:
    """An SVG scatter of latency (y) against cost per inference (x); the Pareto front joined."""
    priced = [r for r in rows if r.cost_per_inference]
    if not priced:
        return "<p>No row has a cost per inference (no HardwareTarget costPerHour, or nothing served).</p>"
    costs, latencies = [r.cost_per_inference for r in priced], [r.model_latency for r in priced]
    x = _scale(costs, MARGIN, WIDTH - 20, log=max(costs) / min(costs) > 10)
    y = _scale(latencies, HEIGHT - MARGIN, 20, log=min(latencies) > 0 and max(latencies) / min(latencies) > 10)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
        'font-size="12">',
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - 10}" y2="{HEIGHT - MARGIN}" stroke="black"/>',
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{MARGIN}" y2="10" stroke="black"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 25}" text-anchor="middle">cost per inference</text>',
        f'<text x="18" y="{HEIGHT / 2}" transform="rotate(-90 18 {HEIGHT / 2})" text-anchor="middle">'
        f"model latency {html.escape(percentile)}, ms</text>",
    ]
    # The axes' ends, labelled with the smallest and largest value plotted.
    for value in (min(costs), max(costs)):
        parts.append(f'<text x="{x(value):.1f}" y="{HEIGHT - MARGIN + 16}" text-anchor="middle">{value:.3g}</text>')
    for value in (min(latencies), max(latencies)):
        parts.append(f'<text x="{MARGIN - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.3g}</text>')
    front = sorted((r for r in priced if r.pareto_optimal), key=lambda r: r.cost_per_inference)
    if len(front) > 1:
        points = " ".join(f"{x(r.cost_per_inference):.1f},{y(r.model_latency):.1f}" for r in front)
        parts.append(f'<polyline points="{points}" fill="none" stroke="#d62728" stroke-dasharray="4 3"/>')
    for r in priced:
        cx, cy = x(r.cost_per_inference), y(r.model_latency)
        colour = "#d62728" if r.pareto_optimal else "#1f77b4"
        label = f"{r.endpoint_name} ({r.cost_per_inference:.3g}, {r.model_latency:.1f} ms)"
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="{colour}"><title>{html.escape(label)}</title></circle>'
        )
        parts.append(f'<text x="{cx + 9:.1f}" y="{cy - 8:.1f}">{html.escape(r.endpoint_name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


COLUMNS = (
    ("EndpointName", "endpoint_name"),
    ("InstanceType", "instance_type"),
    ("HardwareTarget", "hardware_target"),
    ("InitialInstanceCount", "initial_instance_count"),
    ("CostPerHour", "cost_per_hour"),
    ("CostPerInference", "cost_per_inference"),
    ("MaxInvocations", "max_invocations"),
    ("ModelLatency", "model_latency"),
    ("InferenceSpecificationName", "inference_specification_name"),
    ("CpuUtilization", "cpu_utilization"),
    ("MemoryUtilization", "memory_utilization"),
    ("ModelSetupTime", "model_setup_time"),
    ("ParetoOptimal", "pareto_optimal"),
)


def cell(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 0.01 and value else f"{value:.2f}"
    return str(value)


def table(rows: list[Recommendation]) -> list[list[str]]:
    """The rows as the seed's table prints them, header first."""
    return [[name for name, _ in COLUMNS]] + [[cell(getattr(r, field)) for _, field in COLUMNS] for r in rows]


def render(request: ReportRequest) -> str:
    cells = table(request.rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells[1:])
    title = html.escape(request.title)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head>
<body><h1>{title}</h1>
<p>Ranked by cost per inference (cost per hour / (MaxInvocations x 60)); red points are Pareto-optimal:
no other configuration is both cheaper per inference and faster.</p>
{plot(request.rows, request.percentile)}
<table><tr>{head}</tr>{body}</table>
</body></html>
"""


def main() -> int:
    from kompile.api.result import failure_line, write_termination_message
    from kompile.storage import ObjectStore, S3Location, StorageError

    request = ReportRequest.model_validate_json(os.environ["KOMPILE_REPORT"])
    base = S3Location.parse(request.uri if request.uri.endswith("/") else request.uri + "/")
    store = ObjectStore()
    try:
        rows = json.dumps([r.wire() for r in request.rows], indent=2).encode()
        store.write(base.child("recommendations.json"), rows)
        store.write(base.child("report.html"), render(request).encode(), content_type="text/html")
    except StorageError as err:
        write_termination_message(failure_line("ReportNotWritten", str(err)))
        return 2
    uri = str(base.child("report.html"))
    print(uri)
    write_termination_message(uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
