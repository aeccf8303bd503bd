# Device entry point: load /config.json, build the agent, run it forever.
#
# A config or key error is printed and the board stays up at the REPL instead
# of resetting in a loop (no watchdog is started before the config is valid).

import gc
import sys

CONFIG = "config.json"  # relative: a board starts main.py in /


def _load():
    from signet import config

    try:
        return config.load(CONFIG, board=True)
    finally:
        # The validator is needed once: drop its code from the heap.
        del sys.modules["signet.config"]
        import signet

        if hasattr(signet, "config"):
            del signet.config


def main():
    try:
        cfg = _load()
    except ValueError as e:  # ConfigError
        print("signet: config error:", e)
        print("signet: fix %s (mpremote edit / signet device flash) and reset" % CONFIG)
        return
    from signet import keyfile

    try:
        signer = keyfile.load(cfg.key["path"])
    except (OSError, ValueError) as e:
        print("signet: key error (%s):" % cfg.key["path"], e)
        print("signet: provision the device first: signet device provision")
        return
    del sys.modules["signet.keyfile"]
    gc.collect()
    from signet.agent import Agent
    from signet.board import Board
    from signet.fsio import Files
    from signet.mqtt import UmqttTransport

    board = Board(cfg)
    sources, errors = board.make_sources()
    transport = UmqttTransport.from_config(cfg.mqtt, signer.device_id)
    agent = Agent(cfg, board, signer, transport, Files(cfg.journal["dir"]), sources)
    agent.start()
    for msg in errors:
        board.log("signet: " + msg)
        try:
            agent.record_event("sensor_missing", msg[:64])
        except Exception as e:
            board.log("signet: %r" % (e,))
    board.log("signet: device %s running, boot %d" % (signer.device_id, agent.recorder.boot))
    gc.collect()
    agent.run()


main()
