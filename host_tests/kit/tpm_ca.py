"""The test CA for TPM attestation keys: the implementation is signet_tools.runners.tpm_ca (the
virtual fleet uses it too, and the tools cannot import the test kit); this name is where the
tests look for it."""

from signet_tools.runners.tpm_ca import TCG_KP_AIK_CERTIFICATE, TpmTestCA, make_tpm_ca  # noqa: F401
