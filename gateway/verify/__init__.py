"""Verification of one record or message body: strict CBOR, COSE_Sign1, payload schema, keys,
signatures and the refusal reasons. Pure functions over bytes: knows nothing of MQTT or SQL,
and imports nothing else from the gateway.
"""
