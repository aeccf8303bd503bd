"""Processes the tools and tests start and wait for: a private Mosquitto on a free loopback
port, a private software TPM (swtpm.py, with tpm_ca.py, a test CA for its attestation keys),
`signet gateway run` as a child, and polling with a deadline. Imports nothing above.
"""
