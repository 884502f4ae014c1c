"""Start a moto server (DynamoDB, SQS) on loopback and print its port.

Used by `infra/dev up` (fixed port) and by the Rust test harness (port 0: a
free port). With --watch-stdin the server stops when its standard input
closes, so a test process that dies never leaves a server behind.

DynamoDB requests are served one at a time. Real DynamoDB makes every
conditional write atomic and every transaction serializable; moto handles
concurrent requests on threads without isolating its check from its write,
so two racing transactions could both pass their conditions. Serializing
DynamoDB requests gives the emulator the guarantees the service has, so tests
of concurrent conditional writes test our code, not moto's threads. SQS
requests (long polls among them) stay concurrent.

Serialized, moto never cancels a transaction with `TransactionConflict`, which
real DynamoDB does when transactions overlap. Tests ask for one on demand:
`POST /_neuraforge/transaction-conflicts {"table": NAME, "count": N}` makes the
next N `TransactWriteItems` that touch that table fail as DynamoDB's would
(`TransactionCanceledException`, reason `TransactionConflict` on that table's
items), without running them.
"""

import argparse
import io
import json
import signal
import sys
import threading

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

DYNAMODB_LOCK = threading.Lock()


def serialize_dynamodb(app):
    """WSGI middleware: one DynamoDB request at a time (see the module docstring)."""

    def wrapped(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with DYNAMODB_LOCK:
                return list(app(environ, start_response))
        return app(environ, start_response)

    return wrapped


CONFLICTS = {}
CONFLICTS_LOCK = threading.Lock()
CONTROL_PATH = "/_neuraforge/transaction-conflicts"


def _table(item):
    """The table a TransactItems entry (Put, Update, Delete, ConditionCheck) names."""
    return next(iter(item.values()), {}).get("TableName")


def _respond(start_response, status, body, content_type="application/x-amz-json-1.0"):
    data = json.dumps(body).encode() if body is not None else b""
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def inject_conflicts(app):
    """WSGI middleware: the transaction conflicts tests ask for (see the module docstring)."""

    def wrapped(environ, start_response):
        if environ.get("PATH_INFO") == CONTROL_PATH and environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            request = json.loads(environ["wsgi.input"].read(length) or b"{}")
            with CONFLICTS_LOCK:
                table = request["table"]
                CONFLICTS[table] = CONFLICTS.get(table, 0) + int(request.get("count", 1))
            return _respond(start_response, "200 OK", {"pending": CONFLICTS[table]}, "application/json")
        if environ.get("HTTP_X_AMZ_TARGET") == "DynamoDB_20120810.TransactWriteItems":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(raw)
            items = json.loads(raw or b"{}").get("TransactItems", [])
            hit = None
            with CONFLICTS_LOCK:
                for table in {_table(i) for i in items}:
                    if CONFLICTS.get(table, 0) > 0:
                        CONFLICTS[table] -= 1
                        hit = table
                        break
            if hit is not None:
                reasons = [
                    {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
                    if _table(i) == hit
                    else {"Code": "None"}
                    for i in items
                ]
                codes = ", ".join(r["Code"] for r in reasons)
                return _respond(
                    start_response,
                    "400 Bad Request",
                    {
                        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                        "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
                        "CancellationReasons": reasons,
                    },
                )
        return app(environ, start_response)

    return wrapped


class SerializedMotoServer(ThreadedMotoServer):
    def _server_entry(self) -> None:
        app = inject_conflicts(serialize_dynamodb(DomainDispatcherApplication(create_backend_app)))
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--watch-stdin", action="store_true")
    args = parser.parse_args()

    server = SerializedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.watch_stdin:
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
