# Soak: COUNT revenue records through the whole agent (sign, journal on real
# files, publish to the scripted umqtt stand-in, ack, prune) on MicroPython.
# Usage: micropython -X heapsize=64k soak_agent.py COUNT LIBDIR [DIR]
# Prints "heap i bytes" samples (gc.collect(); gc.mem_alloc()) every 100
# records, then "DONE signed=... acked=... outages=... memory_errors=...".

import gc
import os
import sys


def main():
    count = int(sys.argv[1])
    sys.path.insert(0, sys.argv[2])
    directory = sys.argv[3] if len(sys.argv) > 3 else "/tmp/signet-soak"
    import signet

    signet.load(*signet.AGENT_MODULES, "mqtt")  # as main.py loads them on a board
    import fakeumqtt
    from agentkit import FakePlatform, make_config, rmtree, signer

    from signet.agent import Agent
    from signet.fsio import Files
    from signet.mqtt import UmqttTransport

    cfg = make_config(
        intervals={"heartbeat_s": 30, "loop_ms": 100},
        mqtt={"batch_bytes": 2048, "ack_timeout_s": 5},
    )
    # The validator is only needed at boot: a device drops it too (main.py).
    del sys.modules["signet.config"]
    import signet

    del signet.config
    try:  # noqa: SIM105 (no contextlib on MicroPython)
        rmtree(directory)
    except OSError:
        pass
    os.mkdir(directory)
    platform = FakePlatform(log_ring=1)
    broker = fakeumqtt.Broker(platform)
    broker.keep_log = False
    broker.gateway.forget_payloads()  # ack without keeping payloads: RAM is the device's
    fakeumqtt.broker = broker
    transport = UmqttTransport.from_config(cfg.mqtt, signer().device_id, fakeumqtt.MQTTClient)
    agent = Agent(cfg, platform, signer(), transport, Files(directory, sync=False))
    agent.start()
    outages = 0
    i = 0
    while i < count:
        try:
            agent.record_revenue(250, "EUR", "pulse")
            i += 1
        except Exception as e:  # journal_full while the broker is away: retried
            if getattr(e, "reason", None) != "journal_full":
                raise
        for _ in range(3):
            wait = agent.step()
            platform.advance(wait if wait > 0 else 1)
        if i % 1000 == 500:  # an outage every 1000 records: catch-up batches
            broker.drop_all()
            broker.up = False
            outages += 1
        elif i % 1000 == 600:
            broker.up = True
        if i % 100 == 0:
            gc.collect()
            print("heap %d %d" % (i, gc.mem_alloc()))
    while agent.recorder.journal.acked < agent.stats["last_n"]:
        wait = agent.step()
        platform.advance(wait if wait > 0 else 1)
    gc.collect()
    print(
        "DONE signed=%d acked=%d outages=%d batches=%d memory_errors=%d free=%d"
        % (
            agent.recorder.signed,
            agent.recorder.journal.acked,
            outages,
            broker.gateway.batches,
            agent.stats["memory_errors"],
            gc.mem_free(),
        )
    )
    rmtree(directory)


main()
