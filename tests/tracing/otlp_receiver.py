"""An OTLP/HTTP trace receiver for tests/tracing.rs.

Listens on 127.0.0.1 (port 0 unless given), prints `listening on HOST:PORT`, then decodes
every POST body with the official OTLP protobufs (the `opentelemetry-proto` package) and
prints each span as one JSON line on stdout. Anything it cannot decode is answered 400
and reported as a `{"error": ...}` line, so a test sees a malformed export.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


def any_value(v):
    kind = v.WhichOneof("value")
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(v, kind)
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    return None


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def emit(record):
    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = ExportTraceServiceRequest()
        try:
            if self.headers.get("Content-Type") != "application/x-protobuf":
                raise ValueError("content type " + str(self.headers.get("Content-Type")))
            request.ParseFromString(body)
        except Exception as e:  # noqa: BLE001 - any decoding failure is the test's finding
            emit({"error": str(e), "path": self.path})
            self.answer(400, b"")
            return
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    emit(
                        {
                            "path": self.path,
                            "resource": resource,
                            "scope": scope_spans.scope.name,
                            "name": span.name,
                            "kind": Span.SpanKind.Name(span.kind),
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "start_ns": span.start_time_unix_nano,
                            "end_ns": span.end_time_unix_nano,
                            "attributes": attributes(span.attributes),
                            "status": Status.StatusCode.Name(span.status.code),
                        }
                    )
        self.answer(200, ExportTraceServiceResponse().SerializeToString())

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    host, port = server.server_address[:2]
    emit_line = f"listening on {host}:{port}\n"
    sys.stdout.write(emit_line)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
