"""A real gRPC server and client (Python's grpcio) for tests/grpc.rs. No protobuf: the
methods take and return raw bytes, which is all a pass-through needs to carry.

usage: peer.py serve [TLS_DIR]                      prints "listening on PORT", then one line per event
       peer.py call ADDR METHOD ARG [--token T] [--timeout S] [--meta k=v]... [--prefix /P] [--cancel-after S]
                                           prints one JSON line: code, details, responses
Collect (client streaming) and Chat (bidirectional) take ARG as COUNTxSIZE: COUNT messages of SIZE
bytes, sent 20 ms apart so that each travels in a DATA frame of its own. The server prints
"got N BYTES" for each message it receives (N so far, BYTES their wire size so far, 5 bytes of
gRPC framing each), and "collected N" when a Collect call's stream ended ("cancelled N" when it
was reset instead).
"""

import json
import sys
import time
from concurrent import futures

import grpc

SERVICE = "test.Echo"


def unary(request, context):
    seen = {k: v for k, v in context.invocation_metadata()}
    return json.dumps({"body": request.decode(), "metadata": seen}).encode()


def count(request, context):
    for i in range(int(request)):
        yield str(i).encode()


def sleep(request, context):
    deadline = time.time() + float(request)
    while time.time() < deadline:
        if not context.is_active():
            print("cancelled", flush=True)
            return b""
        time.sleep(0.05)
    print("slept", flush=True)
    return b"slept"


def received(n, size):
    """The event line for the n-th message received, with the body's wire size so far."""
    print("got %d %d" % (n, size), flush=True)


def collect(requests, context):
    n, size = 0, 0
    for message in requests:
        n, size = n + 1, size + 5 + len(message)
        received(n, size)
    # grpcio may end the iteration quietly when the call is reset rather than
    # half-closed; a reset call turns inactive soon after, an ended one does not.
    deadline = time.time() + 0.3
    while time.time() < deadline:
        if not context.is_active():
            print("cancelled %d" % n, flush=True)
            return b""
        time.sleep(0.01)
    print("collected %d" % n, flush=True)
    return str(n).encode()


def chat(requests, context):
    n, size = 0, 0
    for message in requests:
        n, size = n + 1, size + 5 + len(message)
        received(n, size)
        yield str(n).encode()


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "nope: " + request.decode())


def serve(tls_dir=None):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Collect": grpc.stream_unary_rpc_method_handler(collect),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if tls_dir:
        with open(tls_dir + "/key.pem", "rb") as k, open(tls_dir + "/cert.pem", "rb") as c:
            credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("listening on %d" % port, flush=True)
    server.wait_for_termination()


def messages(arg):
    """COUNTxSIZE as that many messages of that size, 20 ms apart."""
    count, size = (int(v) for v in arg.split("x"))
    for i in range(count):
        if i:
            time.sleep(0.02)
        yield b"m" * size


def call(addr, method, arg, *options):
    metadata, timeout, prefix, cancel_after = [], None, "", None
    it = iter(options)
    for option in it:
        if option == "--token":
            metadata.append(("authorization", "Bearer " + next(it)))
        elif option == "--timeout":
            timeout = float(next(it))
        elif option == "--cancel-after":
            cancel_after = float(next(it))
        elif option == "--prefix":
            prefix = next(it)
        elif option == "--meta":
            key, value = next(it).split("=", 1)
            metadata.append((key, value))
    with grpc.insecure_channel(addr) as channel:
        path = "%s/%s/%s" % (prefix, SERVICE, method)
        try:
            if method == "Collect":
                stub = channel.stream_unary(path)
                responses = [stub(messages(arg), metadata=metadata, timeout=timeout).decode()]
            elif method == "Chat":
                stub = channel.stream_stream(path)
                responses = []
                try:
                    for r in stub(messages(arg), metadata=metadata, timeout=timeout):
                        responses.append(r.decode())
                except grpc.RpcError as e:
                    # What arrived before the status is part of the result.
                    print(json.dumps({"code": e.code().name, "details": e.details(), "responses": responses}))
                    return
            elif method == "Count":
                stub = channel.unary_stream(path)
                responses = [r.decode() for r in stub(arg.encode(), metadata=metadata, timeout=timeout)]
            elif cancel_after is not None:
                call = channel.unary_unary(path).future(arg.encode(), metadata=metadata, timeout=timeout)
                time.sleep(cancel_after)
                call.cancel()
                responses = [call.result().decode()]
            else:
                stub = channel.unary_unary(path)
                responses = [stub(arg.encode(), metadata=metadata, timeout=timeout).decode()]
            result = {"code": "OK", "details": None, "responses": responses}
        except grpc.FutureCancelledError:
            result = {"code": "CANCELLED", "details": None, "responses": []}
        except grpc.RpcError as e:
            result = {"code": e.code().name, "details": e.details(), "responses": []}
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(*sys.argv[2:])
    else:
        call(*sys.argv[2:])
