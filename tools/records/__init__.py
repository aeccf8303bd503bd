"""Keys and record files on the host: keygen, sign, inspect, verify, CBOR sequence files and
the operator's trusted public keys. Imports signet (record building) and signet_gateway.verify.
"""
