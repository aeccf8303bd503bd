"""Durable state: devices, challenges, records, findings, sequence state, quarantine
(schema.py).

model.py and the Store methods are the interface the rest of the gateway uses; sqlite.py is
the SQLite implementation; faults.py sorts its errors into "wait" (full, unwritable) and
"stop" (unusable); admission.py enrolls keys on evidence gateway/trust verified (and
rotations); migrate.py brings an older database to the current schema. Imports trust
(admission only) and verify (payload decoding, public keys), nothing above.
"""
