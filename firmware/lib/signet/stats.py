# The agent's counters as one dict (Agent.stats): what `signet agent status` prints on
# a Pi, what the tests and the virtual fleet read. Apart from agent.py because a board
# never asks for it: loaded on first use only, its code stays out of a board's heap.
#
# May import nothing: it reads the agent's parts (recorder, link, wall clock, sources).


def collect(agent):
    """Agent.stats: the recorder's, the link's, the clock's and the sources' counters."""
    rec = agent.recorder
    link = agent.link
    j = rec.journal
    counts = {}
    for s in agent.sources:
        if hasattr(s, "counts"):
            counts[s.src] = s.counts
    return {
        "boot": rec.boot,
        "last_n": rec.last_n,
        "signed": rec.signed,
        "published": link.published,
        "records_sent": link.records_sent,
        "acked": j.acked if j else 0,
        "pending": j.pending_count if j else 0,
        "journal_fill": j.fill_percent if j else 0,
        "connected": link.connected,
        "connects": link.connects,
        "disconnects": link.disconnects,
        "resends": link.resends,
        "memory_errors": agent.memory_errors + link.memory_errors,
        "stalled": agent.stalled,
        "refused": rec.refused,
        "repeats": rec.repeats,
        "bad_acks": link.bad_acks,
        "stale_acks": link.stale_acks,
        "hb_skipped": rec.hb_skipped,
        "events_dropped": rec.events_dropped,
        "source_errors": agent.source_errors,
        "clock_synced": agent.wall.synced,
        "clock_syncs": agent.wall.syncs,
        "clock_sync_failures": agent.wall.sync_failures,
        "sources": counts,
    }
