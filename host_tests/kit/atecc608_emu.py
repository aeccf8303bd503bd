"""The emulated ATECC608 for tests: the implementation is signet_tools.runners.atecc608_emu
(the virtual fleet and `signet bench sign` use it too, and the tools cannot import the test
kit); this name is where the tests look for it."""

from signet_tools.runners.atecc608_emu import (  # noqa: F401
    COUNTER_MAX,
    EXEC_MS,
    GENKEY_SLOT_CONFIG,
    P256_N,
    TNG_SLOT0_CONFIG,
    TNG_SLOT0_KEY_CONFIG,
    EmulatedATECC608,
    ProvisionedChip,
    RealClock,
    TestPKI,
    VirtualClock,
    blank_chip,
    chip_crc,
    device_certificate,
    make_test_pki,
    trust_and_go,
)
