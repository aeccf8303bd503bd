"""The device agent on a Raspberry Pi (CPython, systemd): the Linux platform, the paho transport,
the local Unix-socket interface and the runtime behind `signet agent run`. Production code
for the device side; imports signet (the same agent as on a board), never the gateway.
"""
