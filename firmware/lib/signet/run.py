# The device's entry point (main.py calls main): start the agent (signet/startup.py,
# forgotten once the agent exists), then run it until it stalls. It lives in the package,
# not in main.py, because a board compiles main.py into its heap at every boot, while a
# firmware with signet frozen in keeps this module in flash.

import gc

from . import forget

# A chip that failed its self-test, no fallback key: how long the agent tries to
# deliver the evt that says so before it stops.
REFUSED_DELIVERY_MS = 30000


def main(config):
    from . import startup

    try:
        started = startup.start(config)
    finally:
        # Run once: with the package's entry and this name gone, nothing refers to the
        # module, and its code leaves the heap before the agent runs.
        del startup
        forget("startup")
    if started is None:
        return
    agent, board, refused = started
    if refused:
        _deliver_then_stop(agent, board)
        return
    gc.collect()
    if not agent.run():
        _reset(agent, board)


def _reset(agent, board):
    # The agent stalled: out of memory at every step, no progress for intervals.stall_s.
    # A running watchdog is left unfed and resets the board (the next boot record says
    # rc "wdt"); without one, the board resets itself. Either way the heap starts over.
    gc.collect()
    try:
        board.log("signet: stalled out of memory: resetting the board")
    except MemoryError:
        pass  # the reset matters, not the line
    if agent.config.watchdog_ms:
        while True:
            board.sleep_ms(1000)
    import machine

    machine.reset()


def _deliver_then_stop(agent, board):
    # The chip still signs its enrolled key but failed the self-test: the event is
    # sent if the network allows within REFUSED_DELIVERY_MS, then the agent stops.
    rec = agent.recorder
    start = board.ticks_ms()
    while rec.journal.acked < rec.last_n:
        if board.ticks_diff(board.ticks_ms(), start) > REFUSED_DELIVERY_MS:
            break
        wait = agent.step()
        board.feed_watchdog()
        if wait:
            board.sleep_ms(min(wait, 100))
    agent.stop()
    board.log("signet: key error: the chip failed its self-test; no key.fallback_path:")
    board.log("signet: the agent does not start (docs/TRUST.md)")
    while agent.config.watchdog_ms:  # a running watchdog would reset into a loop
        board.feed_watchdog()
        board.sleep_ms(1000)
