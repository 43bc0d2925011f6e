"""What the web admin tests share."""

from __future__ import annotations

import json
from typing import Any


class Answer:
    """A finished response: status, headers and body."""

    def __init__(self, code: int, headers: Any, body: bytes) -> None:
        self.code = code
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return None if not values else ", ".join(values)

    def json(self) -> Any:
        """The JSON body; a response without the JSON content type fails the test."""
        assert self.header("content-type") == "application/json; charset=utf-8", (self.code, self.body)
        return json.loads(self.body)
