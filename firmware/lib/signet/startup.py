# The device's start (signet/run.py): the config, the key, the agent and its start-up
# events. Runs once per boot, and run.main forgets it before the agent runs: loaded from
# .mpy its code then leaves the heap; frozen into a firmware it never was in the heap.
#
# A config or key error is printed and the board stays up at the REPL instead of
# resetting in a loop (no watchdog is started before the config is valid). The key is
# opened as the config says (signet/devkey.py): only the modules that backend needs are
# imported, and dropped again once the signer exists.

import gc

from . import AGENT_MODULES, forget, load


def _load(path):
    from . import config

    try:
        return config.load(path, board=True)
    finally:
        forget("config")  # the validator is needed once: its code leaves the heap


def _open_key(key):
    from . import devkey

    try:
        if key["type"] == "file":
            return devkey.Opened(devkey.open_file(key["path"]))
        from .board import i2c_bus

        return devkey.open_atecc608(key, i2c_bus(key["i2c"]))
    finally:
        for name in ("devkey", "keyfile", "binding"):
            forget(name)


def start(path):
    """(agent, board, refused) for the config file at path: the agent started, its
    start-up events recorded; refused: the chip failed its self-test and there is no
    fallback key (the agent only delivers that event). None, after printing why, if the
    agent cannot start."""
    try:
        cfg = _load(path)
    except ValueError as e:  # ConfigError
        print("signet: config error:", e)
        print("signet: fix %s (mpremote edit / signet device flash) and reset" % path)
        return None
    try:
        key = _open_key(cfg.key)
    except (OSError, ValueError) as e:
        print("signet: key error (%s):" % cfg.key["path"], e)
        print("signet: provision the device first: signet device provision")
        return None
    failure = key.selftest_error
    if key.refused and key.signer is None:
        print("signet: key error: the chip failed its self-test (%s)" % key.event_message())
        print("signet: no key.fallback_path: the agent does not start")
        return None
    signer = key.signer
    gc.collect()
    load(*AGENT_MODULES, "board", "mqtt")  # one by one, a collection after each
    from .agent import Agent
    from .board import Board
    from .fsio import Files
    from .mqtt import UmqttTransport

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
    if not key.refused:
        board.log("signet: device %s running, boot %d" % (signer.device_id, agent.recorder.boot))
    return agent, board, key.refused
