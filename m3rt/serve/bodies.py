"""Big JSON bodies counted before they are parsed, and parsed off the event loop.

What a body parses into grows with its values, not its bytes: every value is a Python object of its own (8 MB
of `[[],[],...]` parse into about 180 MB, in a second of C code that holds the GIL, so no other thread, the
event loop included, runs meanwhile). A request has at most a few values per text, so a body with more values
than `most_values(--max-texts-per-request)` is refused with 413 before it is parsed. They are counted at C
speed, in time bounded by that limit: strings (whose commas and brackets are text, not values) are matched
only once their quotes show that there are few of them. The routes' APIRouters use JSONRoute.
"""

from __future__ import annotations

import json
import re

from fastapi.routing import APIRoute
from starlette.requests import Request

from m3rt.serve.errors import Kind, ServeError

# A JSON string, once its escaped backslashes and quotes are gone.
STRING = re.compile(rb'"[^"]*"')
# Bodies up to this size are parsed in place, as FastAPI does (cheaper than a worker thread, and quick whatever
# they hold).
INLINE_BYTES = 64 << 10


def most_values(max_texts: int) -> int:
    """The values of a body of at most `max_texts` texts: a text, or a pair of texts in its own list, and the
    commas between them take up to three, and a route's other fields a few."""
    return 4 * max_texts + 64


def count_values(body: bytes, most: int) -> int:
    """How many values `body` parses into at most (its `,` `[` `{` outside strings, plus one); past `most`, a
    number over `most`, found without matching more than about 4 x `most` strings."""
    # An escape is a backslash and the character after it, paired left to right as the parser pairs them.
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    quotes = plain.count(b'"')  # two a string, and a string is a value or a key: values >= quotes / 4
    if quotes > 4 * most:
        return max(most + 1, quotes // 4)
    outside = STRING.sub(b"", plain)
    return outside.count(b",") + outside.count(b"[") + outside.count(b"{") + 1


def is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


class ParsedRequest(Request):
    """A request whose big JSON body parse() counts and parses on a worker thread; json() then returns it (or
    raises its parse error, which FastAPI answers as it answers its own)."""

    async def parse(self) -> None:
        if not is_json(self.headers.get("content-type", "")):
            return  # FastAPI reads the body as JSON only then
        body = await self.body()
        if len(body) <= INLINE_BYTES:
            return
        ctx = self.app.state.m3rt
        max_texts = ctx.settings.max_texts_per_request
        most = most_values(max_texts)
        found = await ctx.admission.in_thread(self, count_values, body, most)
        if found > most:
            raise ServeError(Kind.TOO_LARGE, f"body: over {most} JSON values (about {found}), more than a request of "
                                             f"at most {max_texts} texts (--max-texts-per-request) holds; send "
                                             "texts (not token ids), fewer in one request")
        try:
            self._parsed = await ctx.admission.in_thread(self, json.loads, body)
        except ServeError:  # the client left, or the drain deadline passed
            raise
        except Exception as e:  # noqa: BLE001 - not valid JSON: FastAPI's answer
            self._parse_error = e

    async def json(self):
        if hasattr(self, "_parse_error"):
            raise self._parse_error
        if hasattr(self, "_parsed"):
            return self._parsed
        return await super().json()


class JSONRoute(APIRoute):
    def get_route_handler(self):
        handler = super().get_route_handler()

        async def parse_then_handle(request: Request):
            request = ParsedRequest(request.scope, request.receive)
            await request.parse()
            return await handler(request)

        return parse_then_handle
