"""Durable state: devices, records, findings, sequence state, quarantine (schema.py).

model.py and the Store methods are the interface the rest of the gateway uses; sqlite.py is
the SQLite implementation; faults.py sorts its errors into "wait" (full, unwritable) and
"stop" (unusable). Imports verify (payload decoding, public keys), nothing above.
"""
