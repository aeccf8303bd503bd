"""Durable state: devices, challenges, records, findings, sequence state, quarantine
(schema.py).

model.py and the Store methods are the interface the rest of the gateway uses; sqlite.py is
the Store and its SQLite engine, pg_connection.py its PostgreSQL engine ([store] url);
faults.py sorts either engine's errors into "wait" (full, unwritable) and "stop"
(unusable); backup.py and pg_backup.py back up and restore, copy.py moves a SQLite
database into PostgreSQL; admission.py enrolls keys on evidence gateway/trust verified (and
rotations); migrate.py brings an older database to the current schema. Imports trust
(admission only) and verify (payload decoding, public keys), nothing above.
"""
