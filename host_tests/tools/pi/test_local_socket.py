"""tools/pi/local_socket.py: the Pi's Unix-socket interface, served to a real Agent (no broker)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

from signet import config as config_mod
from signet.agent import Agent
from signet.fsio import Files
from signet.signer import SoftwareSigner
from signet_tools.cli.main import main
from signet_tools.pi import kernel_clock, local_socket
from signet_tools.pi.local_socket import LocalSocketError, LocalSocketSource, request
from signet_tools.pi.platform import PiPlatform

pytestmark = pytest.mark.timeout(60)


class NoBroker:
    """A transport whose broker is never there: the records stay in the journal."""

    def set_callback(self, cb: Any) -> None:
        pass

    def connect(self, will_topic: str, will_payload: bytes) -> None:
        raise OSError("no broker in this test")

    def close(self) -> None:
        pass


def make_agent(tmp: Path, segments: int = 16) -> Agent:
    cfg = config_mod.parse(
        {
            "mqtt": {"host": "127.0.0.1"},
            "key": {"path": "unused"},
            "journal": {
                "dir": str(tmp),
                "segment_bytes": 2048,
                "segments": segments,
                "reserve_segments": 1,
            },
        }
    )
    platform = PiPlatform(tmp, clock_status=lambda: (kernel_clock.TIME_OK, 0))
    agent = Agent(cfg, platform, SoftwareSigner.generate("p256"), NoBroker(), Files(str(tmp)))
    agent.start()
    return agent


class Served:
    """A source polled from a thread, as the agent's loop would (request() blocks)."""

    def __init__(self, source: LocalSocketSource, agent: Agent) -> None:
        self.source = source
        self.agent = agent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.source.poll(self.agent)
            fds = self.source.fds()
            select.select(fds, [], [], 0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.source.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    agent = make_agent(tmp_path / "journal")
    source = LocalSocketSource(tmp_path / "run" / "agent.sock", src="till").open()
    agent.sources.append(source)  # polled by Served's thread, listed in agent.stats
    s = Served(source, agent)
    yield s
    s.close()


def journaled(agent: Agent) -> dict[int, dict[str, Any]]:
    """n -> decoded payload of every record in the agent's journal."""
    out = {}
    for n, rec in agent.recorder.journal.pending(0):
        envelope = cbor2.loads(bytes(rec))
        out[n] = cbor2.loads(envelope.value[2])
    return out


def test_records_each_kind_and_journals_it(served: Served) -> None:
    path = served.source.path
    a = request(path, {"kind": "rev", "amount": 250, "currency": "EUR", "ref": "R-1"})
    b = request(path, {"kind": "rev", "amount": -100, "currency": "JPY", "src": "refunds"})
    c = request(path, {"kind": "meter", "q": 1500, "unit": "Wh", "src": "meter1"})
    d = request(path, {"kind": "evt", "ev": "door_open", "msg": "service visit"})
    assert [x["ok"] for x in (a, b, c, d)] == [True] * 4
    ns = [a["n"], b["n"], c["n"], d["n"]]
    assert ns == sorted(ns) and len(set(ns)) == 4
    recs = journaled(served.agent)
    assert (recs[a["n"]]["am"], recs[a["n"]]["cur"], recs[a["n"]]["ref"]) == (250, "EUR", "R-1")
    assert recs[a["n"]]["src"] == "till"  # the source's configured src
    assert (recs[b["n"]]["am"], recs[b["n"]]["src"]) == (-100, "refunds")
    assert (recs[c["n"]]["k"], recs[c["n"]]["q"], recs[c["n"]]["unit"]) == ("meter", 1500, "Wh")
    assert (recs[d["n"]]["ev"], recs[d["n"]]["msg"]) == ("door_open", "service visit")
    stats = request(path, {"kind": "stats"})["stats"]
    assert stats["last_n"] == d["n"]
    assert served.source.counts["recorded"] == 4
    assert stats["sources"]["till"]["recorded"] == 4  # per-source counters for operators


def test_a_retried_rev_is_answered_with_its_first_n(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sale's (src, ref) is its idempotency key: a retry is not signed again."""
    path = served.source.path
    sale = {"kind": "rev", "amount": 250, "currency": "EUR", "ref": "R-1"}
    first = request(path, sale)
    assert first == {"ok": True, "n": first["n"]}
    last = served.agent.recorder.last_n
    assert request(path, sale) == {"ok": True, "n": first["n"], "repeat": True}
    sock = ["--socket", str(path)]
    rev = ["agent", "record", "rev", "--amount", "250", "--currency", "EUR", "--ref", "R-1"]
    assert main([*rev, *sock]) == 0
    assert capsys.readouterr().out == f"already recorded rev n={first['n']} (ref R-1)\n"
    assert served.agent.recorder.last_n == last
    # Another src is another till: its R-1 is another sale.
    other = request(path, {**sale, "src": "till2"})
    assert other == {"ok": True, "n": last + 1}
    # The same reference with another amount is refused, naming the original.
    conflict = request(path, {**sale, "amount": 300})
    assert conflict == {
        "ok": False,
        "error": f"ref_conflict: ref R-1 was recorded as n={first['n']} with 250 EUR",
    }
    rev[4] = "300"
    assert main([*rev, *sock]) == 1
    assert capsys.readouterr().err.startswith("signet: refused: ref_conflict: ref R-1 was")
    counts = served.source.counts
    assert (counts["recorded"], counts["repeats"], counts["refused:ref_conflict"]) == (2, 2, 2)
    assert [r["ref"] for r in journaled(served.agent).values() if r["k"] == "rev"] == [
        "R-1",
        "R-1",
    ]
    assert request(path, {"kind": "stats"})["stats"]["repeats"] == 2


@pytest.mark.parametrize(
    ("req", "expect"),
    [
        ({"kind": "rev", "amount": 2.5, "currency": "EUR"}, "rev.amount: must be an integer"),
        ({"kind": "rev", "amount": True, "currency": "EUR"}, "rev.amount: must be an integer"),
        ({"kind": "rev", "amount": "250", "currency": "EUR"}, "rev.amount: must be an integer"),
        ({"kind": "rev", "currency": "EUR"}, "rev.amount: missing"),
        ({"kind": "rev", "amount": 1, "currency": "EUR", "tip": 1}, "unknown field 'tip'"),
        ({"kind": "refund", "amount": 1}, "kind must be one of"),
        ({"kind": "meter", "q": 1, "unit": 5}, "meter.unit: must be a string"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_bad_requests_are_refused_without_costing_a_sequence(
    served: Served, req: Any, expect: str
) -> None:
    before = served.agent.stats["last_n"]
    answer = request(served.source.path, req)
    assert answer["ok"] is False
    assert answer["error"].startswith("bad_request: ")
    assert expect in answer["error"]
    assert served.agent.stats["last_n"] == before
    assert served.source.counts["refused:bad_request"] == 1


def test_bad_field_value_is_bad_record(served: Served) -> None:
    before = served.agent.stats["last_n"]
    answer = request(served.source.path, {"kind": "rev", "amount": 1, "currency": "eur"})
    assert answer == {
        "ok": False,
        "error": "bad_record: rev.cur: must be a 3-letter ISO 4217 code such as 'EUR', got 'eur'",
    }
    assert served.agent.stats["last_n"] == before


def test_journal_full_is_refused_at_the_source(tmp_path: Path) -> None:
    agent = make_agent(tmp_path / "journal", segments=3)  # 4 KiB outside a 2 KiB reserve
    source = LocalSocketSource(tmp_path / "agent.sock").open()
    s = Served(source, agent)
    try:
        answers = []
        for i in range(100):
            answers.append(
                request(
                    source.path,
                    {"kind": "rev", "amount": i, "currency": "EUR", "ref": "x" * 56 + f"{i:04d}"},
                )
            )
            if not answers[-1]["ok"]:
                break
        assert answers[0]["ok"] and not answers[-1]["ok"]
        assert answers[-1]["error"].startswith("journal_full")
        # every accepted one is in the journal, nothing was overwritten
        recs = journaled(agent)
        assert all(recs[a["n"]]["k"] == "rev" for a in answers[:-1])
        assert source.counts["refused:journal_full"] == 1
    finally:
        s.close()


def test_pipelined_requests_are_answered_in_order(served: Served) -> None:
    lines = [
        {"kind": "rev", "amount": i, "currency": "EUR"} if i % 3 else {"kind": "bogus"}
        for i in range(30)
    ]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(served.source.path))
        sock.sendall(b"".join(json.dumps(x).encode() + b"\n" for x in lines))
        sock.shutdown(socket.SHUT_WR)  # half-close: answers must still come
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    answers = [json.loads(x) for x in data.splitlines()]
    assert len(answers) == 30
    ok = [a for a in answers if a["ok"]]
    assert [a["ok"] for a in answers] == [bool(i % 3) for i in range(30)]
    assert [a["n"] for a in ok] == sorted(a["n"] for a in ok)
    recs = journaled(served.agent)
    assert [recs[a["n"]]["am"] for a in ok] == [i for i in range(30) if i % 3]


def test_overlong_line_closes_the_connection(served: Served) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(served.source.path))
        sock.sendall(b"{" + b" " * 5000)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert json.loads(data) == {"ok": False, "error": "too_long: over 1024 bytes"}
    assert served.source.counts["refused:too_long"] == 1
    # and the server still serves others
    assert request(served.source.path, {"kind": "evt", "ev": "ok_again"})["ok"]


@contextlib.contextmanager
def _every_client_slot_taken(served: Served) -> Iterator[None]:
    """MAX_CLIENTS idle connections hold every slot of the agent's socket while inside."""
    idle = []
    try:
        for _ in range(local_socket.MAX_CLIENTS):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(served.source.path))
            idle.append(s)
        yield
    finally:
        for s in idle:
            s.close()


def test_too_many_clients_get_busy(served: Served) -> None:
    with _every_client_slot_taken(served):
        # the idle ones hold every slot; wait until the server accepted them all
        deadline_answer = request(served.source.path, {"kind": "stats"}, timeout=10)
        assert deadline_answer == {"ok": False, "error": "busy: too many clients"}
    assert served.source.counts["refused:busy"] >= 1


def test_partial_line_does_not_block_poll(tmp_path: Path) -> None:
    agent = make_agent(tmp_path / "journal")
    source = LocalSocketSource(tmp_path / "agent.sock").open()
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(source.path))
            sock.sendall(b'{"kind": "evt", ')  # no newline: poll must return anyway
            for _ in range(5):
                source.poll(agent)
            sock.sendall(b'"ev": "late"}\n')
            sock.settimeout(10)
            answer = b""
            while not answer.endswith(b"\n"):
                source.poll(agent)
                r, _, _ = select.select([sock], [], [], 0.05)
                if r:
                    answer += sock.recv(4096)
        assert json.loads(answer)["ok"] is True
    finally:
        source.close()


def test_socket_file_mode_stale_and_in_use(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # bound, never listening, then closed: a stale file
    stale.close()
    first = LocalSocketSource(path).open()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        with pytest.raises(OSError) as info:
            LocalSocketSource(path).open()
        assert info.value.errno == errno.EADDRINUSE
        assert "already serving" in str(info.value)
    finally:
        first.close()
    assert not path.exists()  # close() removes the socket file
    path.write_text("not a socket")
    with pytest.raises(OSError, match="not a socket"):
        LocalSocketSource(path).open()
    assert path.read_text() == "not a socket"


def test_client_errors_when_the_agent_is_not_running(tmp_path: Path) -> None:
    missing = tmp_path / "none.sock"
    with pytest.raises(local_socket.NotDelivered, match="is the agent running"):
        request(missing, {"kind": "stats"})
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "stale.sock"))
    stale.close()
    with pytest.raises(LocalSocketError, match="the agent is not running"):
        request(tmp_path / "stale.sock", {"kind": "stats"})
    # A path that is no socket at all is named as such, not as a stale socket.
    (tmp_path / "plain").write_text("x")
    for not_a_socket in (tmp_path, tmp_path / "plain"):
        with pytest.raises(LocalSocketError, match=r"is not a socket: pass the agent's socket"):
            request(not_a_socket, {"kind": "stats"})


def test_cli_record_and_status(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    sock = str(served.source.path)
    code = main(
        [
            "agent",
            "record",
            "rev",
            "--amount",
            "250",
            "--currency",
            "EUR",
            "--ref",
            "T-9",
            "--socket",
            sock,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("recorded rev n=")
    n = int(out.split("n=")[1])
    assert journaled(served.agent)[n]["ref"] == "T-9"
    assert main(["agent", "record", "meter", "--q", "7", "--unit", "L", "--socket", sock]) == 0
    assert main(["agent", "record", "evt", "--ev", "Bad Token", "--socket", sock]) == 1
    assert "signet: refused: bad_record: evt.ev" in capsys.readouterr().err
    assert main(["agent", "status", "--socket", sock]) == 0
    assert json.loads(capsys.readouterr().out)["last_n"] == n + 1
    with pytest.raises(SystemExit) as info:  # money is never a float
        main(["agent", "record", "rev", "--amount", "2.50", "--currency", "EUR"])
    assert info.value.code == 2


def test_cli_record_without_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No agent: exit 3, 'not delivered, safe to retry' (it was exit 2, which a caller could
    not tell from 'sent, no answer')."""
    code = main(
        [
            "agent",
            "record",
            "rev",
            "--amount",
            "1",
            "--currency",
            "EUR",
            "--socket",
            str(tmp_path / "x.sock"),
        ]
    )
    assert code == 3
    err = capsys.readouterr().err
    assert err.startswith("signet: error: no agent socket at")
    assert err.endswith("; not recorded, safe to retry\n") and err.count("\n") == 1
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "stale.sock"))
    stale.close()
    rev = ["agent", "record", "rev", "--amount", "1", "--currency", "EUR", "--ref", "R-1"]
    assert main([*rev, "--socket", str(tmp_path / "stale.sock")]) == 3
    assert "the agent is not running (stale socket file)" in capsys.readouterr().err
    assert main(["agent", "status", "--socket", str(tmp_path / "stale.sock")]) == 3


class SilentAgent:
    """A socket server that reads one request line and then never answers, or closes
    without answering (an agent killed after it read the request)."""

    def __init__(self, path: Path, close: bool) -> None:
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(1)
        self.close_after_read = close
        self.received = b""
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            while not self.received.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    return
                self.received += chunk
            if not self.close_after_read:
                conn.recv(4096)  # until the client gives up and closes

    def stop(self) -> None:
        self._thread.join(30)
        self.server.close()


@pytest.mark.parametrize("close", [True, False], ids=["closed", "silent"])
def test_sent_but_unanswered_is_outcome_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], close: bool
) -> None:
    """The request went out whole and no answer came: the agent may have recorded it, so the
    caller must retry with the same ref: exit 4, never 3 (safe to retry) or 1 (refused)."""
    path = tmp_path / "agent.sock"
    silent = SilentAgent(path, close)
    rev = ["agent", "record", "rev", "--amount", "250", "--currency", "EUR"]
    code = main([*rev, "--ref", "R-7", "--socket", str(path), "--timeout", "0.5"])
    silent.stop()
    assert code == 4
    assert json.loads(silent.received) == {
        "kind": "rev",
        "amount": 250,
        "currency": "EUR",
        "ref": "R-7",
    }
    err = capsys.readouterr().err
    why = "closed the connection without an answer" if close else "did not answer within 0.5s"
    assert why in err and err.count("\n") == 1
    assert err.endswith("; it may have been recorded: retry with the same --ref\n")
    with pytest.raises(local_socket.OutcomeUnknown):
        silent = SilentAgent(tmp_path / "b.sock", close)
        try:
            request(tmp_path / "b.sock", {"kind": "stats"}, timeout=0.5)
        finally:
            silent.stop()


def test_without_a_ref_the_caller_is_told_a_retry_may_count_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.sock"
    silent = SilentAgent(path, close=True)
    rev = ["agent", "record", "rev", "--amount", "250", "--currency", "EUR"]
    assert main([*rev, "--socket", str(path)]) == 4
    silent.stop()
    assert "a retry without a ref may record it twice" in capsys.readouterr().err


def test_a_busy_agent_did_not_take_the_request(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    with _every_client_slot_taken(served):
        before = served.agent.recorder.last_n
        rev = ["agent", "record", "rev", "--amount", "1", "--currency", "EUR", "--ref", "B-1"]
        assert main([*rev, "--socket", str(served.source.path)]) == 3
        assert served.agent.recorder.last_n == before
    err = capsys.readouterr().err
    assert "busy: too many clients" in err and err.endswith("; not recorded, safe to retry\n")


AGENT_CLIENT_COMMANDS = [
    ["agent", "status"],
    ["agent", "record", "rev", "--amount", "1", "--currency", "EUR"],
    ["agent", "record", "meter", "--q", "1", "--unit", "Wh"],
    ["agent", "record", "evt", "--ev", "door_open"],
]


@pytest.mark.parametrize("command", AGENT_CLIENT_COMMANDS, ids=lambda c: "-".join(c[1:3]))
@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "-inf", "1e400", "1e10", "x"])
def test_a_bad_timeout_is_a_usage_error(
    served: Served, capsys: pytest.CaptureFixture[str], command: list[str], timeout: str
) -> None:
    """A negative, zero, non-finite or huge timeout used to reach socket.settimeout and end
    in a traceback; it is refused by argparse, naming the option, exit 2."""
    with pytest.raises(SystemExit) as info:
        main([*command, "--socket", str(served.source.path), f"--timeout={timeout}"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "error: argument --timeout: must be a number of seconds" in err
    assert served.agent.recorder.last_n == 1  # nothing was recorded: only the boot record


@pytest.mark.parametrize("value", ["0", "-1", "99999999999999999999999999", "-0"])
def test_extreme_amounts_and_quantities_are_answered_by_the_agent(
    served: Served, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """Integers argparse lets through (zero, negative, beyond 2^53) reach the agent, which
    records or refuses them with one line: never a traceback."""
    sock = str(served.source.path)
    for command in (
        ["agent", "record", "rev", "--amount", value, "--currency", "EUR"],
        ["agent", "record", "meter", "--q", value, "--unit", "Wh"],
    ):
        code = main([*command, "--socket", sock, "--timeout", "5"])
        captured = capsys.readouterr()
        assert code in (0, 1), captured
        assert "Traceback" not in captured.err
        if code == 1:
            assert captured.err.startswith("signet: refused: bad_record: ")


@pytest.mark.parametrize("count", ["0", "-5", "x"])
def test_bench_agent_count_must_be_positive(capsys: pytest.CaptureFixture[str], count: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bench", "agent", f"--count={count}"])
    assert info.value.code == 2
    assert "error: argument --count: must be " in capsys.readouterr().err
