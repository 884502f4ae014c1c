"""NeuraForge load test: realistic users of the local stack (or a staging stack).

Users:
  * SubmitterUser submits tasks (each with its own token) and polls each to its end,
    keeping to the submission limit the RateLimit headers announce;
  * FollowerUser follows a submitted task's Server-Sent Events to their end;
  * ReviewerUser takes the oldest open review ticket, assigns it to itself and resolves it.

Tokens come from the environment: LOAD_TOKENS is a JSON object mapping a role
("submitter", "observer", "reviewer") to a list of bearer tokens (`infra/dev load` mints
them). A 429 the server announced (Retry-After) and a 409 from a ticket another reviewer
took first are expected answers, not failures: the user waits or moves on.

With LOAD_MARKER_FILE set (`infra/dev load` sets it to the log the local exporter follows),
the run marks itself in the metrics: an EMF gauge `neuraforge_load_test_users` (the run's
users) every 10 s while it lasts and 0 when it ends, which the API dashboard draws as an
annotation and a panel, so a run is visible beside the latency and backlog it caused.
"""

import itertools
import json
import os
import random
import threading
import time

import gevent
from locust import HttpUser, between, events, task

TOKENS = json.loads(os.environ.get("LOAD_TOKENS", "{}"))
_next = {role: itertools.cycle(tokens) for role, tokens in TOKENS.items() if tokens}
_lock = threading.Lock()
# Tasks submitted during the run, for followers to follow.
SUBMITTED = []

PROMPTS = [
    "Revenue this quarter was 1200 * 1.15 thousand. Summarise the quarter for the board.",
    "Costs fell 3 percent. Revenue grew 12 percent. Write a tagline about it.",
    "Compare 2 suppliers on price and risk and recommend one.",
    "Forecast revenue of 300 + 45 and draft a tagline for the quarter",
]
TERMINAL = {"completed", "failed", "awaiting_review"}


def token_for(role):
    with _lock:
        tokens = _next.get(role)
        if tokens is None:
            raise RuntimeError(f"LOAD_TOKENS has no {role!r} tokens")
        return next(tokens)


def retry_after(response):
    try:
        return float(response.headers.get("Retry-After", "1"))
    except ValueError:
        return 1.0


def seconds_to_reset(response):
    """`RateLimit: "task_submission";r=<left>;t=<seconds>` → (left, seconds) or None."""
    header = response.headers.get("RateLimit", "")
    parts = dict(p.split("=", 1) for p in header.split(";") if "=" in p)
    try:
        return int(parts["r"]), float(parts["t"])
    except (KeyError, ValueError):
        return None


class SubmitterUser(HttpUser):
    weight = 3
    wait_time = between(1, 3)

    def on_start(self):
        self.headers = {"Authorization": f"Bearer {token_for('submitter')}"}

    @task
    def submit_and_follow_status(self):
        body = {"prompt": random.choice(PROMPTS)}
        with self.client.post(
            "/api/v1/submit_task", json=body, headers=self.headers,
            name="POST /api/v1/submit_task", catch_response=True,
        ) as response:
            if response.status_code == 429:
                response.success()  # announced: wait as told
                time.sleep(retry_after(response))
                return
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            task_id = response.json()["task_id"]
            limit = seconds_to_reset(response)
        with _lock:
            SUBMITTED.append(task_id)
            del SUBMITTED[:-100]
        for _ in range(30):
            status = self.client.get(
                f"/api/v1/tasks/{task_id}", headers=self.headers,
                name="GET /api/v1/tasks/{task_id}",
            )
            if status.status_code == 200 and status.json().get("status") in TERMINAL:
                break
            time.sleep(1)
        # Keep to the submission limit: with none left, wait for the window to reset.
        if limit and limit[0] == 0:
            time.sleep(limit[1])


class FollowerUser(HttpUser):
    weight = 1
    wait_time = between(1, 2)

    def on_start(self):
        self.headers = {"Authorization": f"Bearer {token_for('observer')}", "Accept": "text/event-stream"}

    @task
    def follow_a_task(self):
        with _lock:
            task_id = random.choice(SUBMITTED) if SUBMITTED else None
        if task_id is None:
            return
        with self.client.get(
            f"/api/v1/tasks/{task_id}/events", headers=self.headers, stream=True, timeout=30,
            name="GET /api/v1/tasks/{task_id}/events", catch_response=True,
        ) as response:
            if response.status_code == 429:
                response.success()
                time.sleep(retry_after(response))
                return
            if response.status_code != 200:
                response.failure(f"{response.status_code}")
                return
            deadline = time.monotonic() + 20
            for line in response.iter_lines():
                if time.monotonic() > deadline:
                    break
                if line.startswith(b"event: ") and line[7:] in (b"task_completed", b"task_failed", b"review_requested"):
                    break


class ReviewerUser(HttpUser):
    weight = 1
    wait_time = between(2, 4)

    def on_start(self):
        self.headers = {"Authorization": f"Bearer {token_for('reviewer')}"}

    @task
    def work_the_queue(self):
        listed = self.client.get(
            "/api/v1/reviews?status_filter=open&limit=5", headers=self.headers, name="GET /api/v1/reviews",
        )
        if listed.status_code != 200:
            return
        tickets = listed.json()
        if not tickets:
            return
        ticket_id = tickets[0]["ticket_id"]
        for action, body in (
            ("assign", {}),
            ("resolve", {"status": "resolved", "outcome": "approve", "summary": "Checked under load."}),
        ):
            with self.client.post(
                f"/api/v1/reviews/{ticket_id}/{action}", json=body, headers=self.headers,
                name=f"POST /api/v1/reviews/{{ticket_id}}/{action}", catch_response=True,
            ) as response:
                # Another reviewer took it first, or separation of duties: move on.
                if response.status_code in (403, 409, 429):
                    response.success()
                    return
                if response.status_code != 200:
                    response.failure(f"{response.status_code}: {response.text[:200]}")
                    return


MARKER_FILE = os.environ.get("LOAD_MARKER_FILE")
MARKER_EVERY_SECONDS = 10


def write_marker(users):
    """One EMF document, as the functions write their gauges (`shared::telemetry::emf_gauges`)."""
    doc = {
        "function": "load-test",
        "neuraforge_load_test_users": users,
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": os.environ.get("METRICS_NAMESPACE", "NeuraForge"),
                    "Dimensions": [["function"]],
                    "Metrics": [{"Name": "neuraforge_load_test_users"}],
                }
            ],
        },
    }
    # One write of one line: appends from other writers of the file stay whole lines.
    with open(MARKER_FILE, "a", encoding="utf-8") as out:
        out.write(json.dumps(doc, separators=(",", ":")) + "\n")


@events.test_start.add_listener
def start_marker(environment, **_):
    if not MARKER_FILE:
        return

    def beat():
        while True:
            runner = environment.runner
            write_marker(getattr(runner, "target_user_count", None) or runner.user_count)
            gevent.sleep(MARKER_EVERY_SECONDS)

    environment.load_marker = gevent.spawn(beat)


@events.test_stop.add_listener
def stop_marker(environment, **_):
    beat = getattr(environment, "load_marker", None)
    if beat is not None:
        beat.kill()
        write_marker(0)


@events.test_start.add_listener
def check_tokens(environment, **_):
    missing = [r for r in ("submitter", "observer", "reviewer") if not TOKENS.get(r)]
    if missing:
        raise SystemExit(f"LOAD_TOKENS has no tokens for {', '.join(missing)}")
