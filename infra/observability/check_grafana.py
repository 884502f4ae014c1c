"""Proves Grafana's provisioning through its HTTP API (ci.yml, observability job): every
dashboard of dashboards/ loaded, under its uid and title; the Prometheus data source present and
answering; Prometheus scraping the exporter; and no provisioning error in Grafana's log.
One line per check; exits 1 on the first failure.

    python3 infra/observability/check_grafana.py [--grafana URL] [--prometheus URL] [--log FILE]
"""

import argparse
import base64
import json
import pathlib
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]


def get(url, auth=None):
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(auth.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def fail(message):
    print(f"check_grafana: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--grafana", default="http://127.0.0.1:3000")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--auth", default="admin:compose-only-password")
    parser.add_argument("--log", help="Grafana's log, searched for provisioning errors")
    parser.add_argument("--wait-seconds", type=int, default=120)
    args = parser.parse_args()

    deadline = time.monotonic() + args.wait_seconds
    expected = {}
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        expected[dashboard["uid"]] = dashboard["title"]
    while True:
        try:
            found = {d["uid"]: d["title"] for d in get(f"{args.grafana}/api/search?type=dash-db", args.auth)}
        except OSError as error:
            found = {}
            reason = str(error)
        else:
            reason = f"loaded {sorted(found)}"
        if all(found.get(uid) == title for uid, title in expected.items()):
            break
        if time.monotonic() > deadline:
            fail(f"Grafana did not load every dashboard of dashboards/ ({sorted(expected)}): {reason}")
        time.sleep(2)
    print(f"ok  {len(expected)} dashboards provisioned: {', '.join(sorted(expected.values()))}")

    sources = get(f"{args.grafana}/api/datasources", args.auth)
    prometheus = [s for s in sources if s["uid"] == "neuraforge-prometheus"]
    if not prometheus:
        fail(f"no neuraforge-prometheus data source: {[s['uid'] for s in sources]}")
    health = get(f"{args.grafana}/api/datasources/uid/neuraforge-prometheus/health", args.auth)
    if health.get("status") != "OK":
        fail(f"the Prometheus data source is not healthy: {health}")
    print("ok  data source neuraforge-prometheus answers")

    while True:
        targets = get(f"{args.prometheus}/api/v1/targets")["data"]["activeTargets"]
        if targets and all(t["health"] == "up" for t in targets):
            break
        if time.monotonic() > deadline:
            fail(f"Prometheus does not scrape the exporter: {[(t['scrapeUrl'], t['health'], t.get('lastError')) for t in targets]}")
        time.sleep(2)
    print("ok  Prometheus scrapes the exporter")
    rules = get(f"{args.prometheus}/api/v1/rules")["data"]["groups"]
    if not rules:
        fail("Prometheus loaded no rule group")
    print(f"ok  Prometheus loaded {len(rules)} rule groups")

    if args.log:
        errors = [
            line
            for line in pathlib.Path(args.log).read_text(errors="replace").splitlines()
            if "level=error" in line and "provision" in line.lower()
        ]
        if errors:
            fail("provisioning errors in Grafana's log:\n" + "\n".join(errors))
        print("ok  no provisioning error in Grafana's log")


if __name__ == "__main__":
    main()
