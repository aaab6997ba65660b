"""A small LSP client over stdio for the tests and bench/lsp_latency.py: it starts
``python -m flowspec.cli lsp`` and speaks JSON-RPC with Content-Length framing, as an
editor does. Everything the server writes to stdout must be a framed message (the reader
fails on anything else)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class Client:
    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.stderr = tempfile.TemporaryFile()
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowspec.cli", "lsp", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=full_env,
            cwd=ROOT,
        )
        self.next_id = 0
        self.responses: dict[int, Any] = {}
        self.notes: queue.Queue = queue.Queue()
        self.bad_output: list[bytes] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            header = out.readline()
            if not header:
                break
            if not header.startswith(b"Content-Length:"):
                self.bad_output.append(header)
                continue
            n = int(header.split(b":")[1])
            while out.readline() not in (b"\r\n", b"\n", b""):
                pass
            msg = json.loads(out.read(n))
            if "id" in msg and "method" not in msg:
                with self.cond:
                    self.responses[msg["id"]] = msg
                    self.cond.notify_all()
            elif "method" in msg and "id" in msg:  # a request from the server: answer null
                self._send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
            else:
                self.notes.put(msg)

    def _send(self, msg: dict) -> None:
        body = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: Any, timeout: float = 20) -> Any:
        self.next_id += 1
        rid = self.next_id
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        with self.cond:
            if not self.cond.wait_for(lambda: rid in self.responses, timeout):
                raise TimeoutError(f"no answer to {method}; stderr:\n{self.stderr_text()}")
            msg = self.responses.pop(rid)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg["result"]

    def initialize(self, options: dict | None = None) -> dict:
        result = self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": ROOT.as_uri(),
                "capabilities": {},
                "initializationOptions": options or {},
            },
        )
        self.notify("initialized", {})
        return result

    def diagnostics(self, uri: str, timeout: float = 20) -> list[dict]:
        """The next diagnostics published for ``uri``."""
        end = time.monotonic() + timeout
        while True:
            msg = self.notes.get(timeout=max(0.01, end - time.monotonic()))
            if msg["method"] == "textDocument/publishDiagnostics" and msg["params"]["uri"] == uri:
                return msg["params"]["diagnostics"]

    def open(self, uri: str, text: str, version: int = 1) -> list[dict]:
        self.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": uri,
                    "languageId": "flowspec",
                    "version": version,
                    "text": text,
                }
            },
        )
        return self.diagnostics(uri)

    def change(self, uri: str, text: str, version: int) -> list[dict]:
        self.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]},
        )
        return self.diagnostics(uri)

    def at(self, method: str, uri: str, line: int, character: int, **extra: Any) -> Any:
        return self.request(
            method,
            {
                "textDocument": {"uri": uri},
                "position": {"line": line, "character": character},
                **extra,
            },
        )

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def close(self) -> int:
        try:
            self.request("shutdown", None, timeout=10)
            self.notify("exit", None)
            return self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
