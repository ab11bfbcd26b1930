"""A raw HTTP/2 client for tests/http2.rs: builds frame sequences by hand (HPACK by the
`hpack` package that comes with Python's `h2`), sends them to the gateway and prints, as one
JSON line, what came back. A library client would refuse to send most of these.

usage: frames.py HOST PORT SCENARIO [ARGS...]
"""

import json
import socket
import struct
import sys
import time

import hpack
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def block(fields):
    """An HPACK block with every field a literal without indexing, names as given (letter case too)."""
    out = b""
    for name, value in fields:
        name, value = name.encode(), value.encode()
        out += b"\x00" + bytes(hpack.hpack.encode_integer(len(name), 7)) + name
        out += bytes(hpack.hpack.encode_integer(len(value), 7)) + value
    return out


def string(raw, huffman=False):
    """An HPACK string literal (RFC 7541 §5.2), Huffman-coded or raw."""
    if huffman:
        raw = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(raw)
    length = bytearray(hpack.hpack.encode_integer(len(raw), 7))
    if huffman:
        length[0] |= 0x80
    return bytes(length) + raw


def indexed_literal(name, value):
    """A literal with incremental indexing and a new name: the field joins the dynamic table."""
    return b"\x40" + string(name.encode()) + string(value.encode())


def indexed(index):
    """A field by its index in the static and dynamic tables."""
    out = bytearray(hpack.hpack.encode_integer(index, 7))
    out[0] |= 0x80
    return bytes(out)


def arg(text):
    """A command-line argument with Python escapes (\\x00, \\r) turned into bytes."""
    return text.encode("latin-1").decode("unicode_escape")


def request(path, extra=(), method="GET", authority="gw.test"):
    return [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)] + list(extra)


class Conn:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.buf = b""
        self.frames = []
        self.closed = False
        self.settings = {}
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = 65536
        self.send(PREFACE + frame(SETTINGS, 0, 0))

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def read(self, seconds, until=None):
        """Reads frames for up to `seconds`, or until `until(frames)` holds or the peer closes."""
        deadline = time.time() + seconds
        while not self.closed and time.time() < deadline:
            if until and until(self.frames):
                return
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            self.buf += data
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + length:
                    break
                kind, flags = self.buf[3], self.buf[4]
                stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                payload = self.buf[9 : 9 + length]
                self.buf = self.buf[9 + length :]
                self.on_frame(kind, flags, stream, payload)

    def on_frame(self, kind, flags, stream, payload):
        entry = {"type": kind, "flags": flags, "stream": stream}
        if kind == SETTINGS and not flags & ACK:
            for i in range(0, len(payload), 6):
                key, value = struct.unpack(">HI", payload[i : i + 6])
                self.settings[key] = value
            self.send(frame(SETTINGS, ACK, 0))
        elif kind == HEADERS:
            fields = self.decoder.decode(payload)  # no padding or priority sent by the gateway
            entry["fields"] = {k: v for k, v in fields}
        elif kind == RST_STREAM:
            entry["code"] = int.from_bytes(payload[:4], "big")
        elif kind == GOAWAY:
            entry["code"] = int.from_bytes(payload[4:8], "big")
            entry["debug"] = payload[8:].decode("latin-1")
        elif kind == DATA:
            entry["len"] = len(payload)
        self.frames.append(entry)

    def outcome(self, stream):
        """What happened to `stream`: its status, a reset's code, or a GOAWAY's."""
        for f in self.frames:
            if f["stream"] == stream and f["type"] == HEADERS:
                return {"status": int(f["fields"][":status"])}
            if f["stream"] == stream and f["type"] == RST_STREAM:
                return {"reset": f["code"]}
        return {"goaway": self.goaway()} if self.goaway() is not None else {}

    def goaway(self):
        codes = [f["code"] for f in self.frames if f["type"] == GOAWAY]
        return codes[0] if codes else None

    def answered(self, stream):
        return lambda frames: any(f["stream"] == stream and f["type"] in (HEADERS, RST_STREAM) for f in frames) or any(
            f["type"] == GOAWAY for f in frames
        )


def hello(conn):
    """The preface and SETTINGS only: what does the gateway say?"""
    conn.read(3, lambda frames: any(f["type"] == GOAWAY for f in frames))
    return {"goaway": conn.goaway(), "closed": conn.closed}


def field(conn, name, value):
    """A request with one extra field on stream 1 (escapes allowed), then a plain one on stream 3."""
    name, value = arg(name), arg(value)
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, block(request("/health", [(name, value)]))))
    conn.read(5, conn.answered(1))
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 3, block(request("/health"))))
    conn.read(5, conn.answered(3))
    return {"first": conn.outcome(1), "second": conn.outcome(3)}


def huffman(conn, name, value):
    """As `field`, with the extra field's name and value Huffman-coded."""
    name, value = arg(name).encode("latin-1"), arg(value).encode("latin-1")
    fields = block(request("/health")) + b"\x00" + string(name, True) + string(value, True)
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, fields))
    conn.read(5, conn.answered(1))
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 3, block(request("/health"))))
    conn.read(5, conn.answered(3))
    return {"first": conn.outcome(1), "second": conn.outcome(3)}


def table(conn, name):
    """Stream 1 puts `x-lower: kept` and then NAME: 1 into the dynamic table; stream 3 sends
    NAME again by its index (62), stream 5 `x-lower` by its index (63)."""
    first = block(request("/health")) + indexed_literal("x-lower", "kept") + indexed_literal(name, "1")
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, first))
    conn.read(5, conn.answered(1))
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 3, block(request("/health")) + indexed(62)))
    conn.read(5, conn.answered(3))
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 5, block(request("/health")) + indexed(63)))
    conn.read(5, conn.answered(5))
    return {"first": conn.outcome(1), "second": conn.outcome(3), "third": conn.outcome(5)}


def split(conn, name, value):
    """As `field`, with stream 1's header block cut in three: HEADERS and two CONTINUATIONs, the
    extra field in the last."""
    data = block(request("/health", [(name, value)]))
    cut = len(data) - len(block([(name, value)])) // 2
    conn.send(
        frame(HEADERS, END_STREAM, 1, data[:10])
        + frame(CONTINUATION, 0, 1, data[10:cut])
        + frame(CONTINUATION, END_HEADERS, 1, data[cut:])
    )
    conn.read(5, conn.answered(1))
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 3, block(request("/health"))))
    conn.read(5, conn.answered(3))
    return {"first": conn.outcome(1), "second": conn.outcome(3)}


def rapid_reset(conn, count):
    """HEADERS then RST_STREAM(CANCEL) at once, `count` times (CVE-2023-44487)."""
    burst = b""
    for i in range(int(count)):
        stream = 1 + 2 * i
        burst += frame(HEADERS, END_STREAM | END_HEADERS, stream, block(request("/health")))
        burst += frame(RST_STREAM, 0, stream, struct.pack(">I", 8))
    sent = conn.send(burst)
    conn.read(5, lambda frames: any(f["type"] == GOAWAY for f in frames))
    return {"sent": sent, "goaway": conn.goaway(), "closed_or_goaway": conn.closed or conn.goaway() is not None}


def continuation_flood(conn, count):
    """A HEADERS frame never ended, followed by `count` CONTINUATION frames of 16 KiB of fields."""
    conn.send(frame(HEADERS, 0, 1, block(request("/health"))))
    piece = block([("x-flood-%d" % i, "a" * 1000) for i in range(16)])
    sent = 0
    for i in range(int(count)):
        if not conn.send(frame(CONTINUATION, 0, 1, piece)):
            break
        sent += 1
    conn.read(5, lambda frames: any(f["type"] == GOAWAY for f in frames))
    return {"sent": sent, "goaway": conn.goaway(), "debug": next((f["debug"] for f in conn.frames if f["type"] == GOAWAY), None)}


def oversized(conn, size):
    """One request whose header list is `size` bytes (in 16 KiB frames), then a plain one."""
    value = "a" * 1000
    fields = [("x-big-%d" % i, value) for i in range(int(size) // 1000)]
    data = block(request("/health", fields))
    chunks = [data[i : i + 16384] for i in range(0, len(data), 16384)]
    out = frame(HEADERS, END_STREAM | (END_HEADERS if len(chunks) == 1 else 0), 1, chunks[0])
    for i, chunk in enumerate(chunks[1:], 1):
        out += frame(CONTINUATION, END_HEADERS if i == len(chunks) - 1 else 0, 1, chunk)
    conn.send(out)
    conn.read(5, conn.answered(1))
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 3, block(request("/health"))))
    conn.read(5, conn.answered(3))
    return {"first": conn.outcome(1), "second": conn.outcome(3)}


def concurrency(conn, count):
    """`count` streams opened and left open (a body announced, never sent)."""
    conn.read(1, lambda frames: bool(conn.settings))
    out = b""
    for i in range(int(count)):
        out += frame(HEADERS, END_HEADERS, 1 + 2 * i, block(request("/health", [("content-length", "10")], "POST")))
    conn.send(out)
    conn.read(3)
    refused = sorted(f["stream"] for f in conn.frames if f["type"] == RST_STREAM and f["code"] == 7)
    return {"max_concurrent_streams": conn.settings.get(3), "refused": refused, "goaway": conn.goaway()}


def window_flood(conn, count):
    """`count` WINDOW_UPDATE frames of 1 byte on the connection, then a request."""
    conn.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)) * int(count))
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, block(request("/health"))))
    conn.read(10, conn.answered(1))
    return {"first": conn.outcome(1), "goaway": conn.goaway()}


def window_overflow(conn):
    """A WINDOW_UPDATE that takes the connection's window past 2^31-1 (RFC 9113 §6.9.1)."""
    conn.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF)))
    conn.read(5, lambda frames: any(f["type"] == GOAWAY for f in frames))
    return {"goaway": conn.goaway()}


def ping_flood(conn, count):
    """`count` PINGs sent without reading the PONGs (the gateway must not queue them without bound)."""
    conn.sock.setblocking(False)
    ping = frame(PING, 0, 0, b"12345678")
    burst = ping * 1000
    sent = 0
    deadline = time.time() + 5
    pending = b""
    while sent < int(count) and time.time() < deadline:
        if not pending:
            pending = burst
            sent += 1000
        try:
            n = conn.sock.send(pending)
            pending = pending[n:]
        except BlockingIOError:
            time.sleep(0.001)  # the gateway stopped reading: that is the bound
        except OSError:
            break
    conn.sock.setblocking(True)
    return {"sent": sent, "blocked": sent < int(count)}


def main():
    host, port, scenario, *args = sys.argv[1:]
    conn = Conn(host, port)
    result = globals()[scenario](conn, *args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
