"""`bertclf serve` over real HTTP on 127.0.0.1: answers equal `predict`, limits give clear 4xx,
concurrent clients are served without error, SIGTERM shuts down cleanly."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bertclf
from tests.test_predict import data, finetuned  # noqa: F401  (module fixtures: a fine-tuned tiny model)

SRC = str(Path(__file__).resolve().parents[1] / "src")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port: int, method: str, path: str, body: Any = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=payload, headers={"content-type": "application/json", **(headers or {})})
    response = conn.getresponse()
    status, text = response.status, response.read()
    conn.close()
    return status, json.loads(text) if text else None


class Server:
    def __init__(self, model: Path, *args: str):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bertclf", "serve", str(model), "--port", str(self.port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": SRC})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if call(self.port, "GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
            assert self.proc.poll() is None, self.proc.stdout.read() if self.proc.stdout else ""
        raise AssertionError("the server did not come up in 60 s")

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        return self.proc.returncode, out


@pytest.fixture(scope="module")
def server(finetuned: Path) -> Iterator[Server]:  # noqa: F811
    # fp32: the answers are compared with bertclf.load's exact fp32 ones
    running = Server(finetuned, "--max-texts", "8", "--max-body-kb", "4", "--batch-size", "16",
                     "--precision", "fp32")
    yield running
    if running.proc.poll() is None:
        running.stop()


TEXTS = ["great wonderful film.", "awful boring mess.", "fine", "a great cast, a dull plot.",
         "I loved every minute of it", "not good at all", "", "superb!"]


def test_answers_equal_predict(server: Server, finetuned: Path) -> None:  # noqa: F811
    status, health = call(server.port, "GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["labels"] == ["neg", "pos"]
    status, answer = call(server.port, "POST", "/predict", {"texts": TEXTS})
    assert status == 200, answer
    want = bertclf.load(finetuned).predict(TEXTS)
    for got, mine in zip(answer["predictions"], want, strict=True):
        assert got["label"] == mine.label
        assert got["probability"] == pytest.approx(mine.probability, abs=1e-4)
        assert got["probabilities"] == pytest.approx(mine.probabilities, abs=1e-4)
    status, one = call(server.port, "POST", "/predict", {"text": TEXTS[0]})
    assert status == 200 and one["predictions"][0]["label"] == want[0].label


@pytest.mark.parametrize(("body", "raw", "status", "detail"), [
    ({"texts": ["x"] * 9}, None, 413, "9 texts in one request; at most 8"),
    ({"texts": ["x" * 5000]}, None, 413, "over 4,096 bytes"),
    ({"texts": []}, None, 422, "empty"),
    ({"texts": ["a"], "text": "b"}, None, 422, 'give "texts"'),
    ({}, None, 422, 'give "texts"'),
    ({"texts": [1]}, None, 422, "string"),
    ({"texts": ["a"], "top": 2}, None, 422, "Extra inputs are not permitted"),
    (None, b"{not json", 422, "JSON"),
])
def test_bad_requests_get_a_clear_4xx(server: Server, body: Any, raw: bytes | None, status: int,
                                      detail: str) -> None:
    got, answer = call(server.port, "POST", "/predict", body, raw)
    assert got == status and detail in str(answer["detail"]), answer


def test_a_chunked_body_over_the_limit_is_refused(server: Server) -> None:
    """The 413 reaches a client that sends its whole body before reading, even when the rest of
    the body comes after the server has seen enough (no broken pipe: the server drains it)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

    def chunks() -> Iterator[bytes]:
        yield from (b'{"texts": ["', b"y" * 3000, b"y" * 3000)  # over the 4,096-byte limit here
        for _ in range(3):
            time.sleep(0.2)  # the server has decided by now; it must still take the rest
            yield b"y" * 3000
        yield b'"]}'

    conn.request("POST", "/predict", body=chunks(), headers={"content-type": "application/json"},
                 encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413 and b"over 4,096 bytes" in response.read()
    conn.close()


def test_concurrent_clients_are_all_served(server: Server, finetuned: Path) -> None:  # noqa: F811
    """32 clients, 320 requests of 1 to 3 texts: every answer is a 200 and equals predict's."""
    rng = np.random.default_rng(0)
    requests = [[TEXTS[i] for i in rng.integers(0, len(TEXTS), rng.integers(1, 4))] for _ in range(320)]
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda texts: call(server.port, "POST", "/predict", {"texts": texts}),
                                requests))
    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:3]
    want = {t: p.label for t, p in zip(TEXTS, bertclf.load(finetuned).predict(TEXTS), strict=True)}
    for texts, (_, answer) in zip(requests, answers, strict=True):
        assert [p["label"] for p in answer["predictions"]] == [want[t] for t in texts]


def test_a_text_no_tokenizer_can_encode_fails_only_its_own_request(server: Server) -> None:
    """A lone surrogate is a valid JSON string but not Unicode text: its request gets a 422 naming
    it, and well-formed requests sent at the same time are all answered (it used to fail them
    with 500, as one batch)."""
    bad = b'{"texts": ["fine", "\\ud800 broken"]}'
    jobs = [("bad", None) if i % 4 == 0 else ("good", {"texts": TEXTS[i % 3: i % 3 + 2]}) for i in range(48)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda job: (job[0], call(server.port, "POST", "/predict", job[1],
                                                          bad if job[0] == "bad" else None)), jobs))
    for kind, (status, answer) in answers:
        if kind == "bad":
            assert status == 422 and "text 1 is not valid Unicode" in answer["detail"], answer
        else:
            assert status == 200, answer


def test_sigterm_shuts_down_gracefully(finetuned: Path) -> None:  # noqa: F811
    running = Server(finetuned)
    assert call(running.port, "POST", "/predict", {"texts": ["ok"]})[0] == 200
    code, out = running.stop()
    # uvicorn finishes, then re-raises SIGTERM so the exit status says what stopped it
    assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in out, out
    assert "Finished server process" in out
    assert "Traceback" not in out
