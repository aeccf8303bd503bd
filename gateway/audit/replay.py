"""Recompute a machine's figures from its records with the gateway's own code.

The one way figures are re-derived (docs/AUDIT.md, "What is recomputed"): a scratch SQLite
database in memory, never the operator's, with the store's schema and the aggregate tables;
the bundle's keys inserted as enrolled and its attested findings (duplicates,
equivocations, refusals: what the log cannot show) inserted; then every record, in log
order with its receive time, through ``ingest.sequencer.Sequencer`` with the aggregator's
hooks, exactly as the writer applies them; then ``mcr.report.build_report`` as
`signet report` calls it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from signet_gateway.ingest.sequencer import Findings, Sequencer
from signet_gateway.mcr.aggregate import PPM, RULES_VERSION, Aggregator, day_of
from signet_gateway.mcr.report import Period, build_report
from signet_gateway.store.schema import SCHEMA, SCHEMA_VERSION
from signet_gateway.store.sqlite import Store

from .bundle import BundleKey

__all__ = ["ATTESTED", "Replay", "Rules", "is_attested"]

# Findings the log cannot show (it holds stored records only): the gateway's word.
ATTESTED = ("duplicate", "equivocation")


def is_attested(finding: str) -> bool:
    return finding in ATTESTED or finding.startswith("refused:")


@dataclass(frozen=True)
class Rules:
    """What the figures depend on beyond the records (the report's ``rules``)."""

    max_future_skew_ms: int  # [time] max_future_skew_s: which t counts as usable
    hb_tolerance_ppm: int  # [aggregate] hb_tolerance: the uptime rule
    aggregate_rules: int = RULES_VERSION  # the placement rules' version (docs/MCR.md)

    def as_json(self) -> dict[str, int]:
        return {
            "max_future_skew_ms": self.max_future_skew_ms,
            "hb_tolerance_ppm": self.hb_tolerance_ppm,
            "aggregate_rules": self.aggregate_rules,
        }

    @classmethod
    def from_json(cls, value: Any) -> Rules:
        names = ("aggregate_rules", "hb_tolerance_ppm", "max_future_skew_ms")
        if (
            not isinstance(value, dict)
            or sorted(value) != list(names)
            or not all(type(value[n]) is int and value[n] >= 0 for n in names)
        ):
            raise ValueError(f"the report's rules are not {{{', '.join(names)}}} integers")
        if value["aggregate_rules"] != RULES_VERSION:
            raise ValueError(
                f"the report was made under aggregate rules {value['aggregate_rules']}; this"
                f" version of Signet recomputes rules {RULES_VERSION}"
            )
        return cls(value["max_future_skew_ms"], value["hb_tolerance_ppm"], value["aggregate_rules"])


class Replay:
    """A scratch gateway database fed one record at a time (in log order)."""

    def __init__(
        self, keys: Sequence[BundleKey], findings: Iterable[tuple[str, str, str, int]], rules: Rules
    ) -> None:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        # Rows hold whole records (about 800 bytes): larger pages fit more of them and split
        # less often (measured 22.4 -> 21.1 us per record replayed, 100,000 records).
        conn.execute("PRAGMA page_size = 16384")
        conn.executescript(SCHEMA)
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
        self.conn = conn
        self.aggregator = Aggregator(conn, hb_tolerance=rules.hb_tolerance_ppm / PPM)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO devices (kid, public_key, curve, tier, name, evidence, evidence_kind,"
            " evidence_summary, enrolled_ms, revoked_ms, flagged, machine, replaces, last_n)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    k.kid,
                    k.public_key,
                    k.curve,
                    k.tier,
                    k.name,
                    k.evidence,
                    k.evidence_kind,
                    k.evidence_summary,
                    k.enrolled_ms,
                    k.revoked_ms,
                    int(k.flagged),
                    k.machine,
                    k.replaces,
                    k.last_n,
                )
                for k in keys
            ],
        )
        conn.executemany(
            "INSERT INTO findings (kid, day, finding, count) VALUES (?, ?, ?, ?)", list(findings)
        )
        self.sequencer = Sequencer(
            conn,
            Findings(),
            max_future_skew_ms=rules.max_future_skew_ms,
            on_stored=self.aggregator.on_stored,
            on_stored_many=self.aggregator.on_stored_many,
        )

    def apply(
        self,
        kid: str,
        payload: dict[str, Any],
        payload_bytes: bytes,
        payload_hash: bytes,
        raw: bytes,
        received_ms: int,
    ) -> str:
        """The sequencer's verdict on one verified record: NEW, DUPLICATE or EQUIVOCATION."""
        return self.sequencer.apply_parts(
            kid, payload, payload_bytes, payload_hash, raw, received_ms, day_of(received_ms)
        )

    def flush(self) -> None:
        """Write what the sequencer buffers (call every few thousand records)."""
        self.sequencer.flush()

    def report(
        self, device: str, day_from: str | None, day_to: str | None, as_of_ms: int | None
    ) -> dict[str, Any]:
        """``build_report`` over the replayed records, as `signet report --device` makes it."""
        self.sequencer.flush()
        return build_report(
            self.conn,
            device=device,
            period=Period.parse(day_from, day_to),
            as_of_ms=as_of_ms,
            missing=Store.over(self.conn).missing,
        )

    def close(self) -> None:
        self.conn.close()
