"""The broker's side of trust: `signet broker config` writes a Mosquitto configuration (TLS
listener, one account per machine, ACLs so that no device can speak for another) from the
gateway's database. Imports the gateway's store (read-only) and `cryptography`; not the firmware.
"""
