"""The Pi's local interface: the machine's own software reports revenue to the agent.

A Unix stream socket (mode 0660: the agent's user and group only) speaking JSON lines. One
request per line, one answer per line, in order, on the same connection:

    {"kind": "rev", "amount": 250, "currency": "EUR", "ref": "R-1"}   -> {"ok": true, "n": 42}
    the same again (a retry after a lost answer)         -> {"ok": true, "n": 42, "repeat": true}
    {"kind": "meter", "q": 1500, "unit": "Wh", "src": "meter1"}       -> {"ok": true, "n": 43}
    {"kind": "evt", "ev": "door_open", "msg": "service"}              -> {"ok": true, "n": 44}
    {"kind": "stats"}                                       -> {"ok": true, "stats": {...}}
    anything refused                       -> {"ok": false, "error": "journal_full: ..."}

`amount` is an integer in minor units (250 = 2.50 EUR), never a float. Optional fields:
rev "ref" and "src" (default: the source's configured src, "local"); meter "src"; evt "msg".
The answer's "n" is the sequence number of the signed record, journaled (durable) before the
answer is sent. A rev's (src, ref) is its idempotency key: a rev whose key the agent recorded
among its last journal.ref_window sales is not signed again; the answer carries the original
n and "repeat": true, or ref_conflict if the amount or currency differ.

Errors start with a code: bad_request (not JSON, unknown kind or field, wrong type),
too_long (a line over 1024 bytes; the connection is closed), busy (too many clients; the
request was not read, so it is safe to send again), or the agent's refusal reason
(journal_full, bad_record, ...). Every refusal is counted in `counts`.

LocalSocketSource is an agent source: Agent.step() calls poll(agent), which accepts, reads
and answers whatever is ready and never blocks. `request()` is the client side used by
`signet agent record`; when it gets no answer it says which of two things happened, because
a caller must retry them differently (docs/AGENT.md, "Recording from the machine's software"):
NotDelivered (the request never reached the agent: nothing was recorded) or OutcomeUnknown
(it was sent, and the agent may have recorded it before it died or went silent).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

from signet.agent import RecordRefused

MAX_LINE = 1024
MAX_CLIENTS = 8
MAX_REQUESTS_PER_POLL = 16
MAX_OUTBUF = 65536
IDLE_TIMEOUT_S = 60.0
SOCKET_MODE = 0o660

_KINDS: dict[str, tuple[dict[str, type], dict[str, type]]] = {
    # kind: (required fields, optional fields)
    "rev": ({"amount": int, "currency": str}, {"ref": str, "src": str}),
    "meter": ({"q": int, "unit": str}, {"src": str}),
    "evt": ({"ev": str}, {"msg": str}),
    "stats": ({}, {}),
}


class LocalSocketError(Exception):
    """The client got no answer from the agent: NotDelivered or OutcomeUnknown."""


class NotDelivered(LocalSocketError):
    """The request never reached the agent (no socket, nobody listening, no permission, or
    the line could not be sent whole): nothing was recorded, sending it again is safe."""


class OutcomeUnknown(LocalSocketError):
    """The request was sent whole but no answer came (timeout, connection lost, the agent
    died): it may have been recorded. Retry with the same ref (an idempotency key)."""


class BadRequest(ValueError):
    pass


def parse_request(line: bytes) -> dict[str, Any]:
    """One JSON request line -> a checked dict; BadRequest says what is wrong."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("not a JSON object") from None
    if not isinstance(obj, dict):
        raise BadRequest("not a JSON object")
    kind = obj.get("kind")
    if kind not in _KINDS:
        raise BadRequest(f"kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    required, optional = _KINDS[kind]
    for name in obj:
        if name != "kind" and name not in required and name not in optional:
            raise BadRequest(f"{kind}: unknown field {name!r}")
    for name in required:
        if name not in obj:
            raise BadRequest(f"{kind}.{name}: missing")
    for name, typ in {**required, **optional}.items():
        if name in obj:
            value = obj[name]
            # bool is an int in Python and a float is no amount of money: both refused.
            if type(value) is not typ:
                want = "an integer (minor units)" if typ is int else "a string"
                raise BadRequest(f"{kind}.{name}: must be {want}, got {value!r}")
    return obj


def dispatch(agent: Any, req: dict[str, Any], default_src: str = "local") -> dict[str, Any]:
    """Carry out one parsed request on the agent; the answer object."""
    kind = req["kind"]
    if kind == "stats":
        return {"ok": True, "stats": agent.stats}
    if kind == "rev":
        n = agent.record_revenue(
            req["amount"], req["currency"], req.get("src", default_src), ref=req.get("ref")
        )
        if agent.recorder.repeated:  # a retry: the original record's n, nothing signed
            return {"ok": True, "n": n, "repeat": True}
    elif kind == "meter":
        n = agent.record_meter(req["q"], req["unit"], src=req.get("src"))
    else:
        n = agent.record_event(req["ev"], msg=req.get("msg"))
    return {"ok": True, "n": n}


def refusal_text(exc: Exception) -> str:
    """'reason: detail' for an agent refusal (RecordRefused has .reason) or a bad field."""
    reason = getattr(exc, "reason", None)
    detail = str(exc)
    if reason:
        return detail if detail.startswith(str(reason)) else f"{reason}: {detail}"
    return f"bad_record: {detail}"


class _Client:
    __slots__ = ("inbuf", "last_active", "outbuf", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.last_active = time.monotonic()


class LocalSocketSource:
    """Serve the local interface at `path`; call poll(agent) from the agent's loop."""

    def __init__(self, path: str | os.PathLike[str], src: str = "local", log: Any = None) -> None:
        self.path = Path(path)
        self.src = src  # "src" of a rev record whose request names none
        self._log = log
        self._server: socket.socket | None = None
        self._clients: list[_Client] = []
        self.counts: dict[str, int] = {"requests": 0, "recorded": 0, "refused": 0, "repeats": 0}

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> LocalSocketSource:
        """Bind and listen. OSError if another agent already serves this path."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)  # the socket file is created 0660, never briefly wider
        try:
            server.bind(str(self.path))
        except OSError:
            server.close()
            raise
        finally:
            os.umask(old)
        os.chmod(self.path, SOCKET_MODE)
        server.listen(MAX_CLIENTS)
        server.setblocking(False)
        self._server = server
        return self

    def _remove_stale(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise OSError(errno.EEXIST, f"{self.path} exists and is not a socket; not touching it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except ConnectionRefusedError:
            self.path.unlink()  # left by an agent that did not stop cleanly
            return
        except OSError:
            return  # let bind() report it
        finally:
            probe.close()
        raise OSError(errno.EADDRINUSE, f"another agent is already serving {self.path}")

    def close(self) -> None:
        for client in self._clients:
            client.sock.close()
        self._clients.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
            self.path.unlink(missing_ok=True)

    def fds(self) -> list[int]:
        """Sockets worth waking up for (PiPlatform.add_fd_source)."""
        if self._server is None:
            return []
        return [self._server.fileno(), *(c.sock.fileno() for c in self._clients)]

    # -- the source ----------------------------------------------------------------------

    def poll(self, agent: Any) -> None:
        """Accept, read, answer what is ready now. Never blocks."""
        if self._server is None:
            return
        self._accept()
        budget = MAX_REQUESTS_PER_POLL
        now = time.monotonic()
        for client in list(self._clients):
            if not self._read(client):
                self._drop(client)
                continue
            while budget > 0:
                newline = client.inbuf.find(b"\n")
                if newline < 0:
                    break
                line = bytes(client.inbuf[:newline])
                del client.inbuf[: newline + 1]
                budget -= 1
                self._answer(client, self._handle(agent, line))
            if len(client.inbuf) > MAX_LINE:
                self._refuse("too_long")
                self._answer(client, {"ok": False, "error": f"too_long: over {MAX_LINE} bytes"})
                self._flush(client)
                self._drop(client)
                continue
            if not self._flush(client) or now - client.last_active > IDLE_TIMEOUT_S:
                self._drop(client)

    def _accept(self) -> None:
        assert self._server is not None
        for _ in range(MAX_CLIENTS):
            try:
                sock, _addr = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            if len(self._clients) >= MAX_CLIENTS:
                self._refuse("busy")
                with contextlib.suppress(OSError):
                    sock.send(b'{"ok": false, "error": "busy: too many clients"}\n')
                sock.close()
                continue
            self._clients.append(_Client(sock))

    def _read(self, client: _Client) -> bool:
        """Pull what is readable; False when the peer has gone."""
        while len(client.inbuf) <= MAX_LINE * MAX_REQUESTS_PER_POLL:
            try:
                data = client.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            if not data:
                # Half-closed: still answer whole lines it sent (`echo ... | nc -U -N`).
                return b"\n" in client.inbuf
            client.inbuf += data
            client.last_active = time.monotonic()
        return True

    def _handle(self, agent: Any, line: bytes) -> dict[str, Any]:
        self.counts["requests"] += 1
        try:
            req = parse_request(line)
        except BadRequest as exc:
            self._refuse("bad_request")
            return {"ok": False, "error": f"bad_request: {exc}"}
        try:
            answer = dispatch(agent, req, self.src)
        except (RecordRefused, ValueError) as exc:  # journal_full, bad_record
            reason = getattr(exc, "reason", None) or "bad_record"
            self._refuse(str(reason))
            return {"ok": False, "error": refusal_text(exc)}
        if answer.get("repeat"):
            self.counts["repeats"] += 1
        elif "n" in answer:
            self.counts["recorded"] += 1
        return answer

    def _refuse(self, reason: str) -> None:
        self.counts["refused"] += 1
        key = "refused:" + reason
        self.counts[key] = self.counts.get(key, 0) + 1
        if self._log is not None:
            self._log(f"local socket: refused a request ({reason})")

    def _answer(self, client: _Client, obj: dict[str, Any]) -> None:
        client.outbuf += json.dumps(obj, default=str).encode() + b"\n"

    def _flush(self, client: _Client) -> bool:
        """Send what the socket takes; False when the peer is gone or never reads."""
        while client.outbuf:
            try:
                sent = client.sock.send(client.outbuf)
            except (BlockingIOError, InterruptedError):
                return len(client.outbuf) <= MAX_OUTBUF
            except OSError:
                return False
            del client.outbuf[:sent]
        # A half-closed client that has been answered in full is done.
        return True

    def _drop(self, client: _Client) -> None:
        client.sock.close()
        self._clients.remove(client)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def request(
    path: str | os.PathLike[str], req: dict[str, Any], timeout: float = 10.0
) -> dict[str, Any]:
    """Send one request to a running agent and return its answer (client side).

    Raises NotDelivered when the agent cannot have seen the request, OutcomeUnknown when it
    may have acted on it without answering.
    """
    where = str(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        _connect(sock, where)
        sent = False
        try:
            # The agent reads whole lines only: unless the newline went out, it cannot have
            # acted on the request. A busy agent answers and closes at once: its answer is
            # still ours to read.
            with contextlib.suppress(OSError):
                sock.sendall(json.dumps(req).encode() + b"\n")
                sent = True
            answer = _read_line(sock)
        except TimeoutError:
            if not sent:
                raise NotDelivered(
                    f"could not send to the agent at {where} within {timeout:g}s"
                ) from None
            raise OutcomeUnknown(
                f"the agent at {where} did not answer within {timeout:g}s"
            ) from None
        except OSError as exc:
            if not sent:
                raise NotDelivered(f"lost the connection to {where} while sending: {exc}") from None
            raise OutcomeUnknown(f"lost the connection to {where}: {exc}") from None
    finally:
        sock.close()
    try:
        obj = json.loads(answer)
    except ValueError:
        if not sent:
            raise NotDelivered(
                f"the agent at {where} closed the connection before the request was sent"
            ) from None
        raise OutcomeUnknown(
            f"the agent at {where} closed the connection without an answer"
        ) from None
    if not isinstance(obj, dict):
        raise OutcomeUnknown(f"unexpected answer from {where}: {obj!r}")
    return obj


def _connect(sock: socket.socket, where: str) -> None:
    """Connect, or NotDelivered naming what is wrong with the path."""
    try:
        sock.connect(where)
    except FileNotFoundError:
        raise NotDelivered(
            f"no agent socket at {where}: is the agent running? "
            "(systemctl status signet-agent; or pass --socket PATH)"
        ) from None
    except ConnectionRefusedError:
        if not _is_socket(where):  # a directory or a regular file refuses the same way
            raise NotDelivered(
                f"{where} is not a socket: pass the agent's socket (--socket PATH)"
            ) from None
        raise NotDelivered(
            f"nothing listens on {where}: the agent is not running (stale socket file)"
        ) from None
    except PermissionError:
        raise NotDelivered(
            f"permission denied on {where}: the socket is mode 0660; add this user to "
            "the agent's group (usermod -aG signet USER) and log in again"
        ) from None
    except OSError as exc:  # a connect timeout included: the request was not sent
        raise NotDelivered(f"cannot connect to {where}: {exc.strerror or exc}") from None


def _read_line(sock: socket.socket) -> bytes:
    """Bytes up to and including the first newline, or up to end of stream."""
    answer = bytearray()
    while not answer.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return bytes(answer)
