"""What the web admin tests share."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from mgcpswitch.web.auth import hash_password


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


#: What a 401 from the admin offers, in order.
CHALLENGES = ['Basic realm="mgcpswitch"', 'Bearer realm="mgcpswitch"']


def users_file(testcase: Any) -> str:
    """
    A users file in a temporary directory (removed after the test) with
    one admin, C{alice} / C{wonderland}, hashed cheaply for the tests.
    """
    directory = tempfile.mkdtemp(prefix="mgcpswitch-users-")
    testcase.addCleanup(shutil.rmtree, directory, True)
    path = os.path.join(directory, "users")
    with open(path, "w") as f:
        f.write("# the admins\n\nalice:" + hash_password("wonderland", iterations=1000) + "\n")
    return path
