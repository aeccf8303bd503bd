"""The demo's own lines say counts in the right number ("1 hostile message")."""

from __future__ import annotations

from signet_tools.fleet.demo import attack_notice


def test_attack_notice_counts_messages_in_the_right_number() -> None:
    one = attack_notice(1, "sim-04", 1, "sim-02")
    assert one.startswith("ATTACK: 1 client without a valid account tried to connect;")
    assert "with sim-04's stolen account, 1 hostile message published" in one
    many = attack_notice(3, "sim-04", 16, "sim-02")
    assert many.startswith("ATTACK: 3 clients without a valid account")
    assert "16 hostile messages published" in many
    assert "(victim sim-02;" in attack_notice(0, "sim-04", 0, "sim-02")
