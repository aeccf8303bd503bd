"""`signet audit verify`: check an audit bundle with nothing but the log's public key.

The checks, in order; the first failure decides the outcome (docs/AUDIT.md, "Verifying a
bundle"):

1. the bundle's format (bundle.decode);
2. the checkpoint: signed by the log's key, of the bundle's origin;
3. the keys: each public key hashes to its device id;
4. the signed report: signed by the log's key, bound to the checkpoint (size, root), of the
   machine the keys belong to; its rules are what the replay needs, hence before records;
5. every record, in bundle order: log order (indexes increase, inside the checkpoint's
   tree); strict encoding and signature (the gateway's verifier); the key's revocation and
   rotation limits; the sequence rules (the replay: no second copy, no second payload for a
   number); the inclusion proof against the checkpoint;
6. the receipts: count and digest of (log index, receive time) against the report's;
7. each consistency proof the bundle carries, to the checkpoint;
8. each checkpoint the auditor gives: same size, same root; smaller, a consistency entry of
   the bundle for it; larger: cannot be checked from this bundle;
9. the figures: the replayed report against the signed one, by JSON path.

Signature and proof checks run in worker processes (record_checks.py); the replay runs here,
in the order the records come back.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import multiprocessing
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from signet_gateway.ingest.sequencer import NEW, HookFailed
from signet_gateway.ingest.writer import SIG_ITEM
from signet_gateway.log.checkpoint import Checkpoint, open_checkpoint
from signet_gateway.log.note import NoteError, Verifier
from signet_gateway.log.verification import ProofError, verify_consistency
from signet_gateway.mcr.report import Period, ReportError
from signet_gateway.store.model import iso_ms
from signet_gateway.store.schema import TIERS
from signet_gateway.verify.cose_decode import decode_envelope
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_gateway.verify.refusals import Refused

from . import record_checks
from .bundle import Bundle, BundleError, BundleKey, decode, split_proof
from .replay import Replay, Rules
from .signed_report import canonical_json, open_report, receipts_digest

__all__ = [
    "Failure",
    "GatewayKeyError",
    "Outcome",
    "cyclic_collector_off",
    "default_jobs",
    "first_difference",
    "parse_gateway_key",
    "verify_bundle",
]

CHUNK: Final = 2000  # records per worker task
PARALLEL_MIN: Final = 4 * CHUNK  # fewer records: workers cost more than they save
ABSENT: Final = "(absent)"

Progress = Callable[[int, int], None]


class GatewayKeyError(ValueError):
    """--gateway-key is neither a verifier key line nor an Ed25519 PEM public key."""


def parse_gateway_key(text: str) -> Verifier | bytes:
    """A vkey line (``origin+keyid+base64``, as `signet gateway key` prints) -> Verifier; a PEM
    public key -> the raw 32-byte Ed25519 key (its name is the bundle's origin)."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = load_pem_public_key(text.encode())
        except ValueError as exc:
            raise GatewayKeyError(f"not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise GatewayKeyError("the PEM key is not an Ed25519 public key (the log's key is)")
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        return Verifier.from_vkey(text)
    except NoteError as exc:
        raise GatewayKeyError(str(exc)) from None


@dataclass
class Failure:
    check: str  # bundle, checkpoint, keys, report, record, receipts, consistency, given, figure
    message: str
    record: dict[str, Any] | None = None  # number, log_index, device, n, reason
    figure: dict[str, Any] | None = None  # name, expected (recomputed), found (signed)

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check, "message": self.message, "record": self.record,
                "figure": self.figure}  # fmt: skip


@dataclass
class Outcome:
    failure: Failure | None = None
    origin: str | None = None
    size: int | None = None
    root: bytes | None = None
    device: str | None = None
    period: dict[str, Any] | None = None
    records: int = 0
    consistency: int = 0
    compared: list[str] = field(default_factory=list)  # given checkpoints and their verdicts
    passed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "origin": self.origin,
            "checkpoint": None
            if self.size is None or self.root is None
            else {"size": self.size, "root": base64.b64encode(self.root).decode()},
            "device": self.device,
            "period": self.period,
            "records": self.records,
            "consistency_proofs": self.consistency,
            "checkpoints_compared": self.compared,
            "passed": self.passed,
            "failure": None if self.failure is None else self.failure.as_json(),
        }


class _Failed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def verify_bundle(
    data: bytes,
    gateway_key: Verifier | bytes,
    checkpoints: Sequence[tuple[str, bytes]] = (),
    *,
    jobs: int = 1,
    progress: Progress | None = None,
) -> Outcome:
    """Every check of the module docstring; ``checkpoints``: (name, note) the auditor holds."""
    outcome = Outcome()
    try:
        with cyclic_collector_off():
            _verify(data, gateway_key, checkpoints, jobs, progress, outcome)
    except _Failed as failed:
        outcome.failure = failed.failure
    return outcome


@contextlib.contextmanager
def cyclic_collector_off() -> Iterator[None]:
    """Hundreds of thousands of long-lived objects (the bundle, payload maps) and no cycles
    among them: the cyclic collector's full passes cost 5-9 % of the time and free nothing."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _fail(check: str, message: str, **extra: Any) -> _Failed:
    return _Failed(Failure(check, message, **extra))


def _verify(
    data: bytes,
    gateway_key: Verifier | bytes,
    given: Sequence[tuple[str, bytes]],
    jobs: int,
    progress: Progress | None,
    out: Outcome,
) -> None:
    try:
        bundle = decode(data)
    except BundleError as exc:
        raise _fail("bundle", f"bundle: {exc}") from None
    out.origin = bundle.origin
    out.passed.append("bundle")
    verifier = _verifier(gateway_key, bundle.origin)
    try:
        cp = open_checkpoint(bundle.checkpoint, [verifier], origin=verifier.name).checkpoint
    except NoteError as exc:
        raise _fail("checkpoint", f"checkpoint: {exc}") from None
    out.size, out.root = cp.size, cp.root
    out.passed.append("checkpoint")
    _check_keys(bundle.keys)
    out.passed.append("keys")
    content, rules = _open_report(bundle, verifier, cp)
    out.device, out.period = content["device"], content["period"]
    out.passed.append("report")
    try:
        replay = Replay(bundle.keys, bundle.findings, rules)
    except sqlite3.Error as exc:  # a key row or a finding the gateway's tables refuse
        raise _fail("keys", f"the bundle's keys or findings are not a gateway's: {exc}") from None
    try:
        _check_records(bundle, cp, replay, jobs, progress)
        out.records = len(bundle.records)
        out.passed.append("records")
        pairs = [(r.log_index, r.received_ms) for r in bundle.records]
        signed = content["records"]
        if signed.get("count") != len(pairs):
            raise _fail(
                "receipts",
                f"the report covers {signed.get('count')} records, the bundle holds"
                f" {len(pairs)}: records were removed or added",
            )
        if signed.get("receipts") != receipts_digest(pairs):
            raise _fail(
                "receipts",
                "the receipts digest (log indexes and receive times) differs from the"
                " report's: a record's receive time or log index was changed",
            )
        out.passed.append("receipts")
        known = _check_consistency(bundle, verifier, cp)
        out.consistency = len(known)
        out.passed.append("consistency")
        _compare_given(given, verifier, cp, known, out)
        out.passed.append("checkpoints")
        period = content["period"]
        recomputed = replay.report(
            content["device"], period.get("from"), period.get("to"), content["as_of_ms"]
        )
    finally:
        replay.close()
    expected = json.loads(canonical_json(recomputed))
    diff = first_difference(expected, content["report"], "report")
    if diff is not None:
        name, want, found = diff
        raise _fail(
            "figure",
            f"figure {name}: recomputed {json.dumps(want)}, the signed report says"
            f" {json.dumps(found)}",
            figure={"name": name, "expected": want, "found": found},
        )
    out.passed.append("figures")


def _verifier(gateway_key: Verifier | bytes, origin: str) -> Verifier:
    if isinstance(gateway_key, Verifier):
        if gateway_key.name != origin:
            raise _fail(
                "checkpoint",
                f"the bundle is from log {origin!r}; the key given is for log {gateway_key.name!r}",
            )
        return gateway_key
    try:
        return Verifier.from_public_key(origin, gateway_key)
    except NoteError as exc:
        raise _fail("bundle", f"bundle origin: {exc}") from None


def _check_keys(keys: Sequence[BundleKey]) -> None:
    if not keys:
        raise _fail("keys", "the bundle holds no key")
    for i, key in enumerate(keys):
        try:
            public = DevicePublicKey.from_sec1(key.public_key, key.curve)  # type: ignore[arg-type]
        except (Refused, ValueError) as exc:
            raise _fail("keys", f"keys[{i}] ({key.kid}): not a public key: {exc}") from None
        if public.device_id != key.kid:
            raise _fail("keys", f"keys[{i}]: the public key hashes to {public.device_id},"
                        f" not {key.kid}")  # fmt: skip
        if key.tier not in TIERS or (key.tier == "hardware") != (key.evidence_kind is not None):
            raise _fail("keys", f"keys[{i}] ({key.kid}): tier {key.tier!r} with evidence kind"
                        f" {key.evidence_kind!r}: the hardware tier needs verified evidence,"
                        " and only it")  # fmt: skip
        if any(other.kid == key.kid for other in keys[:i]):
            raise _fail("keys", f"keys[{i}] ({key.kid}) is in the bundle twice")
        if key.machine != keys[0].machine:
            raise _fail("keys", f"keys[{i}] ({key.kid}) is of machine {key.machine}, not"
                        f" {keys[0].machine}")  # fmt: skip


def _open_report(
    bundle: Bundle, verifier: Verifier, cp: Checkpoint
) -> tuple[dict[str, Any], Rules]:
    try:
        content = open_report(bundle.report, verifier)
    except NoteError as exc:
        raise _fail("report", f"report: {exc}") from None
    bound = {"size": cp.size, "root": base64.b64encode(cp.root).decode()}
    if content["checkpoint"] != bound:
        raise _fail(
            "report",
            f"report: bound to checkpoint {json.dumps(content['checkpoint'])}, the bundle's is"
            f" {json.dumps(bound)}",
        )
    machine = bundle.keys[0].machine
    if content["device"] != machine:
        raise _fail("report", f"report: for device {content['device']}, the keys are of"
                    f" machine {machine}")  # fmt: skip
    try:
        rules = Rules.from_json(content["rules"])
    except ValueError as exc:
        raise _fail("report", f"report: {exc}") from None
    period = content["period"]
    if (
        not isinstance(period, dict)
        or sorted(period) != ["from", "to"]
        or not all(v is None or isinstance(v, str) for v in period.values())
        or type(content["as_of_ms"]) not in (int, type(None))
        or not isinstance(content["records"], dict)
        or not isinstance(content["report"], dict)
    ):
        raise _fail("report", "report: period, as_of_ms, records or report malformed")
    try:
        Period.parse(period["from"], period["to"])
    except ReportError as exc:
        raise _fail("report", f"report: period: {exc}") from None
    return content, rules


def _results(bundle: Bundle, cp: Checkpoint, jobs: int) -> Iterator[list[record_checks.Checked]]:
    keys = {bytes.fromhex(k.kid): (k.public_key, k.curve) for k in bundle.keys}
    chunks = [
        [(r.log_index, r.raw, r.proof) for r in bundle.records[i : i + CHUNK]]
        for i in range(0, len(bundle.records), CHUNK)
    ]
    if jobs <= 1 or len(bundle.records) < PARALLEL_MIN:
        record_checks.start(keys, cp.size, cp.root)
        for chunk in chunks:
            yield record_checks.check(chunk)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=record_checks.start,
        initargs=(keys, cp.size, cp.root),
    )
    try:
        yield from pool.map(record_checks.check, chunks)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_records(
    bundle: Bundle, cp: Checkpoint, replay: Replay, jobs: int, progress: Progress | None
) -> None:
    records = bundle.records
    limits = {k.kid: (k.revoked_ms, k.last_n) for k in bundle.keys}
    apply = replay.apply
    size = cp.size
    previous = -1
    number = 0
    for results in _results(bundle, cp, jobs):
        for refusal, parts, problem in results:
            index, received_ms, raw, _ = records[number]
            if index <= previous:
                raise _bad_record(
                    number,
                    index,
                    None,
                    None,
                    f"log index {index} does not follow"
                    f" {previous}: records out of log order, or repeated",
                )
            if index >= size:
                raise _bad_record(
                    number,
                    index,
                    None,
                    None,
                    f"log index {index} is outside the checkpoint's tree of {size}",
                )
            previous = index
            if parts is None:
                raise _bad_record(number, index, _kid_of(raw), None, str(refusal))
            kid, payload, length, payload_hash = parts
            n = payload["n"]
            revoked_ms, last_n = limits[kid]
            if revoked_ms is not None and received_ms >= revoked_ms:
                raise _bad_record(
                    number,
                    index,
                    kid,
                    n,
                    f"received {iso_ms(received_ms)}, at or"
                    f" after its key's revocation ({iso_ms(revoked_ms)}): the"
                    " gateway refuses such records",
                )
            if last_n is not None and n > last_n:
                raise _bad_record(
                    number,
                    index,
                    kid,
                    n,
                    f"numbered above its key's last n ({last_n}) before a rotation",
                )
            end = len(raw) - SIG_ITEM
            try:
                verdict = apply(
                    kid, payload, raw[end - length : end], payload_hash, raw, received_ms
                )
            except (HookFailed, sqlite3.Error) as exc:
                raise _bad_record(
                    number,
                    index,
                    kid,
                    n,
                    f"the gateway's sequence and aggregation code refused it: {exc}",
                ) from None
            if verdict != NEW:
                raise _bad_record(
                    number,
                    index,
                    kid,
                    n,
                    f"a {verdict} of an earlier record of the"
                    f" bundle with n={n}: the log holds each stored record once",
                )
            if problem is not None:
                raise _bad_record(number, index, kid, n, problem)
            number += 1
        try:
            replay.flush()
        except (HookFailed, sqlite3.Error) as exc:
            raise _fail(
                "record",
                f"records before #{number}: the gateway's aggregation code refused them: {exc}",
            ) from None
        if progress is not None:
            progress(number, len(records))


def _bad_record(number: int, index: int, device: str | None, n: int | None, reason: str) -> _Failed:
    """The failure naming record #number of the bundle (its device and n where known). Built
    only on failure: the loop above runs once per record and must stay lean."""
    shown = f", device {device}, n={n}" if device else ""
    where = {"number": number, "log_index": index, "device": device, "n": n, "reason": reason}
    return _fail("record", f"record #{number} (log index {index}{shown}): {reason}", record=where)


def _kid_of(raw: bytes) -> str | None:
    try:
        return decode_envelope(raw).kid.hex()
    except Refused:
        return None


def _check_consistency(bundle: Bundle, verifier: Verifier, cp: Checkpoint) -> dict[int, bytes]:
    """Each consistency entry verified; returns size -> root of the earlier checkpoints."""
    known: dict[int, bytes] = {}
    for i, entry in enumerate(bundle.consistency):
        try:
            old = open_checkpoint(entry.checkpoint, [verifier], origin=verifier.name).checkpoint
        except NoteError as exc:
            raise _fail("consistency", f"consistency[{i}]: checkpoint: {exc}") from None
        try:
            verify_consistency(old.size, cp.size, old.root, cp.root, split_proof(entry.proof))
        except ProofError as exc:
            raise _fail(
                "consistency",
                f"consistency[{i}]: the checkpoint of size {cp.size} does not extend the one of"
                f" size {old.size}: {exc}",
            ) from None
        known[old.size] = old.root
    return known


def _compare_given(
    given: Sequence[tuple[str, bytes]],
    verifier: Verifier,
    cp: Checkpoint,
    known: dict[int, bytes],
    out: Outcome,
) -> None:
    for name, note in given:
        try:
            other = open_checkpoint(note, [verifier], origin=verifier.name).checkpoint
        except NoteError as exc:
            raise _fail("given", f"checkpoint {name}: {exc}") from None
        if other.size == cp.size:
            if other.root != cp.root:
                raise _fail("given", f"split view: checkpoint {name} and the bundle's are both of"
                            f" size {cp.size} with different roots")  # fmt: skip
            out.compared.append(f"{name}: size {other.size}, the same root")
        elif other.size < cp.size:
            root = known.get(other.size)
            if root is None:
                raise _fail(
                    "given",
                    f"checkpoint {name} (size {other.size}) is older than the bundle's"
                    f" ({cp.size}) and the bundle has no consistency proof from it: export again"
                    f" with --consistency-from {other.size}",
                )
            if root != other.root:
                raise _fail(
                    "given",
                    f"split view: checkpoint {name} (size {other.size}) has another root than"
                    " the log's checkpoint of that size, which the bundle's extends",
                )
            out.compared.append(f"{name}: size {other.size}, extended by the bundle's")
        else:
            raise _fail(
                "given",
                f"checkpoint {name} (size {other.size}) is newer than the bundle's ({cp.size}):"
                f" this bundle cannot show they are consistent; ask for a bundle exported at or"
                f" after size {other.size} with --consistency-from {cp.size}",
            )


def first_difference(expected: Any, found: Any, path: str) -> tuple[str, Any, Any] | None:
    """The first place (JSON path, in ``expected``'s order) where two JSON values differ."""
    if isinstance(expected, dict) and isinstance(found, dict):
        for key in [*expected, *(k for k in found if k not in expected)]:
            if key not in found:
                return f"{path}.{key}", expected[key], ABSENT
            if key not in expected:
                return f"{path}.{key}", ABSENT, found[key]
            diff = first_difference(expected[key], found[key], f"{path}.{key}")
            if diff is not None:
                return diff
        return None
    if isinstance(expected, list) and isinstance(found, list):
        for i, (a, b) in enumerate(zip(expected, found, strict=False)):
            diff = first_difference(a, b, f"{path}[{i}]")
            if diff is not None:
                return diff
        if len(expected) != len(found):
            return f"{path}.length", len(expected), len(found)
        return None
    if type(expected) is not type(found) or expected != found:
        return path, expected, found
    return None


def default_jobs() -> int:
    """Every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
