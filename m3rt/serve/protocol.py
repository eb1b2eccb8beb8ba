"""Connection hygiene under uvicorn's HTTP protocol: limits uvicorn's settings do not give.

uvicorn has limit_concurrency, timeout_keep_alive (after a response only) and, with h11 alone, a limit on an
incomplete event's size. Its httptools parser takes headers of any size, and a connection that sends nothing
or a slow trickle of headers stays open for good. `guarded(base, settings)` is uvicorn's protocol class with:
- past --limit-concurrency connections, the one idle longest closed to make room (one with no request in the
  app and none arriving, quietly, as keep-alive closes it; else one still sending its headers, with 503 JSON), so
  that sockets that send nothing cannot lock out a load balancer's /health; with none idle (every connection has
  a request in the app), the new connection may still ask for /health (a few such probes at once, each closed
  after its answer: a load balancer can tell a busy server from a dead one) and anything else on it is answered
  503 JSON; past those few, the new connection is answered 503 JSON and closed at once;
- a connection that sends nothing closed after --timeout-keep-alive;
- a request's line and headers: past --max-header-bytes 431, not complete within --timeout-headers of their
  first byte 408 (JSON both, then the connection is closed).
Bodies (their size and deadline) are watched by the Gate middleware, which can answer with the app's errors.
"""

from __future__ import annotations

import json
import struct

from m3rt.serve.errors import Kind

# Connections past the limit, when none can be closed, that may ask for /health and nothing else.
HEALTH_PROBES = 8
PROBE_ROUTES = {(b"GET", b"/health")}

PHRASES = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large",
           503: "Service Unavailable"}


def raw_response(kind: Kind, message: str) -> bytes:
    info = kind.value
    body = json.dumps({"error": message, "error_type": info.tei}).encode()
    head = (f"HTTP/1.1 {info.status} {PHRASES.get(info.status, '')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


def base_protocol() -> type:
    """uvicorn's fast httptools protocol when installed, else its h11 one."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


def guarded(base: type, settings) -> type:
    limit, max_header = settings.limit_concurrency, settings.max_header_bytes
    idle_s, headers_s = settings.timeout_keep_alive, settings.timeout_headers

    # This server's open connections (not those it is closing), the one active least recently first: a dict as
    # an ordered set. uvicorn's own set also holds those it is closing, for a moment.
    by_activity: dict = {}
    probes: set = set()  # connections past the limit let in to ask for /health only
    busy = (f"over {limit} connections (--limit-concurrency), each with a request in progress; only /health is "
            "answered until one ends; retry")
    headers_late = (Kind.TIMEOUT, f"request headers not complete within {headers_s:g} s (--timeout-headers)")
    headers_big = (Kind.HEADERS_TOO_LARGE, f"request line and headers over {max_header} bytes (--max-header-bytes)")

    class Guarded(base):
        def connection_made(self, transport):
            super().connection_made(transport)
            self.m3rt_header_bytes, self.m3rt_tail, self.m3rt_timer, self.m3rt_probe = 0, b"", None, None
            if len(by_activity) >= limit and not self.m3rt_make_room():
                if len(probes) >= HEALTH_PROBES:
                    self.m3rt_refuse(Kind.UNHEALTHY, busy)
                    return
                probes.add(self)
                self.m3rt_probe = b""
                self.m3rt_arm(headers_s, headers_late)
                return
            by_activity[self] = None
            self.m3rt_arm(idle_s, None)

        def connection_lost(self, exc):
            by_activity.pop(self, None)
            probes.discard(self)
            self.m3rt_disarm()
            super().connection_lost(exc)

        def m3rt_make_room(self) -> bool:
            """Close the connection idle longest: one waiting for a request, else one still sending its headers."""
            for sending_headers in (False, True):
                other = next((c for c in by_activity if c is not self and c.m3rt_waiting(sending_headers)), None)
                if other is None:
                    continue
                if sending_headers:
                    other.m3rt_refuse(Kind.UNHEALTHY, f"over {limit} connections (--limit-concurrency) and this "
                                                      "one was the slowest to send its request; retry")
                else:  # quietly, as keep-alive closes a connection
                    other.m3rt_close()
                return True
            return False

        def m3rt_waiting(self, sending_headers: bool) -> bool:
            """No request of this connection is in the app, and none is arriving (unless `sending_headers`): no
            header bytes read, none waiting in the socket (a client that just connected has sent its request)."""
            if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
                return False
            return sending_headers or (self.m3rt_header_bytes == 0 and not getattr(self, "pipeline", None)
                                       and not _bytes_waiting(self.transport))

        def m3rt_probe_received(self, data) -> None:
            """A connection past the limit: its request line and headers read here first; /health goes on to the
            app (the connection closed after its answer), anything else is answered 503."""
            if self.m3rt_probe is True or self.transport.is_closing():
                return  # its /health request is in the app; nothing more is read from it
            head = self.m3rt_probe + data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                if len(head) > max_header:
                    self.m3rt_refuse(*headers_big)
                else:
                    self.m3rt_probe = head
                return
            method, _, rest = head.partition(b" ")
            if (method, rest.partition(b" ")[0].partition(b"?")[0]) not in PROBE_ROUTES:
                self.m3rt_refuse(Kind.UNHEALTHY, busy)
                return
            self.m3rt_probe = True
            self.m3rt_disarm()
            super().data_received(head[:end + 4])

        def on_response_complete(self):
            super().on_response_complete()
            if self.m3rt_probe is not None and not self.transport.is_closing():
                self.m3rt_close()

        def data_received(self, data):
            if self.m3rt_probe is not None:
                self.m3rt_probe_received(data)
                return
            by_activity.pop(self, None)
            by_activity[self] = None  # the most recently active now
            reading_headers = self.cycle is None or not self.cycle.more_body
            if reading_headers:
                if self.m3rt_header_bytes == 0:
                    self.m3rt_tail = b""
                    self.m3rt_arm(headers_s, headers_late)
                # The header block ends at the first blank line: count up to it, before the parser sees any.
                end = (self.m3rt_tail + data).find(b"\r\n\r\n")
                self.m3rt_header_bytes += len(data) if end < 0 else end + 4 - len(self.m3rt_tail)
                self.m3rt_tail = data[-3:]
                if self.m3rt_header_bytes > max_header:
                    self.m3rt_refuse(*headers_big)
                    return
            cycle = self.cycle
            super().data_received(data)
            if self.cycle is not cycle:  # a request's headers are complete: its body is the Gate's
                self.m3rt_header_bytes = 0
                self.m3rt_disarm()

        def send_400_response(self, msg: str) -> None:  # uvicorn's is text/plain
            self.m3rt_refuse(Kind.BAD_REQUEST, msg)

        def m3rt_arm(self, seconds: float, answer) -> None:
            self.m3rt_disarm()
            self.m3rt_timer = self.loop.call_later(seconds, self.m3rt_expire, answer)

        def m3rt_disarm(self) -> None:
            if self.m3rt_timer is not None:
                self.m3rt_timer.cancel()
                self.m3rt_timer = None

        def m3rt_expire(self, answer) -> None:
            self.m3rt_timer = None
            if self.transport.is_closing():
                return
            if answer is None:  # nothing was ever sent: close quietly, as keep-alive does
                self.m3rt_close()
            elif self.cycle is None or not self.cycle.more_body:
                self.m3rt_refuse(*answer)

        def m3rt_refuse(self, kind: Kind, message: str) -> None:
            self.transport.write(raw_response(kind, message))
            self.m3rt_close()

        def m3rt_close(self) -> None:
            self.m3rt_disarm()
            by_activity.pop(self, None)
            probes.discard(self)
            self.transport.close()

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded


def _bytes_waiting(transport) -> int:
    """Bytes received on the transport's socket and not read yet (0 where the system cannot say)."""
    sock = transport.get_extra_info("socket")
    try:
        import fcntl
        import termios

        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except (ImportError, OSError, AttributeError, ValueError):
        return 0
