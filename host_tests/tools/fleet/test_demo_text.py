"""The demo's own lines say counts in the right number ("1 hostile message")."""

from __future__ import annotations

from signet_tools.fleet.demo import attack_notice


def test_attack_notice_counts_messages_in_the_right_number() -> None:
    assert attack_notice(1, "sim-02").startswith("ATTACK: 1 hostile message published")
    assert attack_notice(30, "sim-02").startswith("ATTACK: 30 hostile messages published")
    assert "(victim sim-02;" in attack_notice(0, "sim-02")
