"""Pod discovery for the local Prometheus: Debian builds Prometheus without kubernetes_sd, so
this serves HTTP service discovery from the API server instead. It lists running pods that
carry prometheus.io/scrape=true and answers Prometheus's http_sd_configs with their
address and labels. Standard library only; started and stopped by hack/lib/services.sh.

    python3 prometheus-sd.py LISTEN_ADDR:PORT APISERVER_URL CA CERT KEY
"""

import json
import ssl
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

listen, apiserver, ca, cert, key = sys.argv[1:6]
context = ssl.create_default_context(cafile=ca)
context.load_cert_chain(cert, key)


def targets() -> list[dict]:
    with urllib.request.urlopen(f"{apiserver}/api/v1/pods", context=context, timeout=10) as r:
        pods = json.load(r)["items"]
    groups = []
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status", {})
        notes = meta.get("annotations") or {}
        if notes.get("prometheus.io/scrape") != "true" or status.get("phase") != "Running" or not status.get("podIP"):
            continue
        labels = meta.get("labels") or {}
        groups.append(
            {
                "targets": [f"{status['podIP']}:{notes.get('prometheus.io/port', '8080')}"],
                "labels": {
                    "__metrics_path__": notes.get("prometheus.io/path", "/metrics"),
                    "namespace": meta["namespace"],
                    "pod": meta["name"],
                    "node": pod["spec"].get("nodeName", ""),
                    "endpoint": labels.get("kompile.dev/inference-endpoint", ""),
                },
            }
        )
    return groups


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            body, code = json.dumps(targets()).encode(), 200
        except Exception as err:  # noqa: BLE001 - report, keep serving
            body, code = json.dumps({"error": str(err)}).encode(), 503
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


host, port = listen.rsplit(":", 1)
ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
