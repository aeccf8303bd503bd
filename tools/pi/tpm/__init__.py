"""TPM 2.0 keys for the agent on a Raspberry Pi, through tpm2-pytss (the tpm extra): the
connection and its errors (session.py), key templates and the key blob file (objects.py),
TPM2_Certify evidence with an attestation key (attest.py). The signer is ../tpm_key.py.
Imports signet (curve, kid) and tpm2-pytss, never the gateway.
"""
