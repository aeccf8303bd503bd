# Device entry point: load /config.json, build the agent, run it forever.
#
# A config or key error is printed and the board stays up at the REPL instead
# of resetting in a loop (no watchdog is started before the config is valid).
# The key is opened as the config says (signet/devkey.py): only the modules
# that backend needs are imported, and dropped again once the signer exists.

import gc

CONFIG = "config.json"  # relative: a board starts main.py in /
# A chip that failed its self-test, no fallback key: how long the agent tries to
# deliver the evt that says so before it stops.
REFUSED_DELIVERY_MS = 30000


def _drop(*names):
    from signet import forget

    for name in names:
        forget(name)


def _load():
    from signet import config

    try:
        return config.load(CONFIG, board=True)
    finally:
        # The validator is needed once: drop its code from the heap.
        _drop("config")


def _open_key(key):
    from signet import devkey

    try:
        if key["type"] == "file":
            return devkey.Opened(devkey.open_file(key["path"]))
        from signet.board import i2c_bus

        return devkey.open_atecc608(key, i2c_bus(key["i2c"]))
    finally:
        _drop("devkey", "keyfile", "binding")


def main():
    try:
        cfg = _load()
    except ValueError as e:  # ConfigError
        print("signet: config error:", e)
        print("signet: fix %s (mpremote edit / signet device flash) and reset" % CONFIG)
        return
    try:
        key = _open_key(cfg.key)
    except (OSError, ValueError) as e:
        print("signet: key error (%s):" % cfg.key["path"], e)
        print("signet: provision the device first: signet device provision")
        return
    failure = key.selftest_error
    if key.refused and key.signer is None:
        print("signet: key error: the chip failed its self-test (%s)" % key.event_message())
        print("signet: no key.fallback_path: the agent does not start")
        return
    signer = key.signer
    gc.collect()
    from signet import AGENT_MODULES, load

    load(*AGENT_MODULES, "board", "mqtt")  # one by one, a collection after each
    from signet.agent import Agent
    from signet.board import Board
    from signet.fsio import Files
    from signet.mqtt import UmqttTransport

    board = Board(cfg)
    sources, errors = board.make_sources()
    transport = UmqttTransport.from_config(cfg.mqtt, signer.device_id)
    journal_dir = cfg.journal["dir"]
    if failure is not None and not key.refused:
        Files(journal_dir)  # made if missing: Files makes one directory level
        journal_dir = journal_dir.rstrip("/") + "/fallback"  # the fallback key's own chain
    agent = Agent(cfg, board, signer, transport, Files(journal_dir), sources, key.counter)
    agent.start()
    if failure is not None:
        errors.insert(0, "key self-test failed: %s" % key.event_message())
    for msg in errors:
        board.log("signet: " + msg)
        try:
            if msg[:4] == "key ":
                agent.record_event("key_selftest_failed", key.event_message())
            else:
                agent.record_event("sensor_missing", msg[:64])
        except Exception as e:
            board.log("signet: %r" % (e,))
    if key.refused:
        _deliver_then_stop(agent, board)
        return
    board.log("signet: device %s running, boot %d" % (signer.device_id, agent.recorder.boot))
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


main()
