# Time in records: "t" null until the clock is synced, the RTC losing its
# setting or jumping backwards (t null again, one clock_lost event, resync),
# a sync that steps the clock back, and ESP32's 2000 epoch. CPython and
# MicroPython (mprun.py).

from signet.clock import UNIX_2000_MS, epoch_offset_ms

try:
    from .agentkit import T0, FakePlatform, Rig, make_config
except ImportError:  # MicroPython runner: flat import path
    from agentkit import T0, FakePlatform, Rig, make_config


def _evts(rig):
    rig.run_until(lambda: rig.gw.ack >= rig.agent.stats["last_n"])
    return [
        (rig.gw.fields(n)["ev"], rig.gw.fields(n).get("msg"))
        for n in sorted(rig.gw.records)
        if rig.gw.kinds[n] == "evt"
    ]


def _t(rig, n):
    rig.run_until(lambda: rig.gw.ack >= n)
    return rig.gw.fields(n)["t"]


def test_t_is_null_until_ntp_succeeds_then_the_true_time():
    platform = FakePlatform()
    platform.ntp_ok = False
    rig = Rig(platform=platform)
    try:
        rig.run_ms(5000)
        n = rig.agent.record_revenue(100, "EUR", "pulse")
        stats = rig.agent.stats
        assert not stats["clock_synced"] and stats["clock_sync_failures"] >= 1
        assert stats["clock_syncs"] == 0
        platform.ntp_ok = True
        rig.run_ms(61000)  # unsynced: retried within a minute
        assert rig.agent.stats["clock_synced"] and rig.agent.stats["clock_syncs"] == 1
        m = rig.agent.record_revenue(100, "EUR", "pulse")
        expected = platform.true_ms
        assert _t(rig, n) is None
        assert _t(rig, m) == expected
        assert _evts(rig) == []  # never synced before: nothing was lost
    finally:
        rig.close()


def test_boot_record_carries_t_when_the_clock_syncs_at_start():
    """start() tries the sync before the boot record while the network is up, so two
    fresh installs with the same key sign different boot records (t differs), and the
    gateway sees an equivocation rather than a duplicate."""
    boots = []
    for later_ms in (0, 60000):  # the same key (agentkit's), installed a minute apart
        platform = FakePlatform()
        platform.true_ms += later_ms
        rig = Rig(platform=platform)
        try:
            stats = rig.agent.stats
            assert stats["clock_synced"] and stats["clock_syncs"] == 1
            assert _t(rig, 1) == T0 + later_ms
            boots.append(rig.gw.records[1])
        finally:
            rig.close()
    assert boots[0] != boots[1]


def test_boot_record_t_is_null_when_the_network_is_down_at_start():
    """A board whose Wi-Fi is down at start does not try NTP then (no change there): the
    boot record has t null, the first sync comes once the network is up."""
    platform = FakePlatform()
    platform.network = False
    rig = Rig(platform=platform)
    try:
        assert platform.syncs == 0 and rig.agent.stats["clock_sync_failures"] == 0
        platform.network = True
        rig.step()
        assert rig.agent.stats["clock_synced"]
        assert _t(rig, 1) is None
    finally:
        rig.close()


def test_boot_record_t_is_null_when_the_sync_at_start_fails():
    platform = FakePlatform()
    platform.ntp_ok = False
    rig = Rig(platform=platform)
    try:
        stats = rig.agent.stats
        assert not stats["clock_synced"] and stats["clock_sync_failures"] == 1
        assert _t(rig, 1) is None
    finally:
        rig.close()


def _lose_clock(rig, how):
    platform = rig.platform
    rig.run_ms(1000)
    assert rig.agent.stats["clock_synced"]
    if how == "rtc_backwards":
        platform.rtc -= 10000  # the RTC jumped back 10 s against the uptime
    else:
        platform.rtc = None  # the RTC lost its setting (brown-out, battery)
    n = rig.agent.record_revenue(100, "EUR", "pulse")
    assert _t(rig, n) is None  # not a time the device knows to be wrong
    rig.step()  # resyncs at once (the network is up) and reports the loss
    m = rig.agent.record_revenue(100, "EUR", "pulse")
    expected = platform.true_ms
    assert _t(rig, m) == expected
    assert _evts(rig) == [("clock_lost", how)]


def test_rtc_backwards_nulls_t_signs_clock_lost_and_resyncs():
    rig = Rig()
    try:
        _lose_clock(rig, "rtc_backwards")
    finally:
        rig.close()


def test_rtc_unset_nulls_t_signs_clock_lost_and_resyncs():
    rig = Rig()
    try:
        _lose_clock(rig, "rtc_unset")
    finally:
        rig.close()


def test_a_sync_that_steps_the_clock_back_is_reported_and_trusted():
    rig = Rig(cfg=make_config(time={"resync_s": 60}))
    platform = rig.platform
    try:
        rig.run_ms(1000)
        before = _t(rig, rig.agent.record_revenue(100, "EUR", "pulse"))
        platform.true_ms -= 5000  # NTP now says the RTC ran 5 s ahead
        rig.run_ms(61000)  # the periodic resync
        n = rig.agent.record_revenue(100, "EUR", "pulse")
        expected = platform.true_ms
        assert _t(rig, n) == expected and expected < before + 61000
        assert _evts(rig) == [("clock_lost", "stepped_back")]
        assert rig.agent.stats["clock_synced"]
    finally:
        rig.close()


def test_esp32_epoch_2000_maps_to_unix_time():
    assert epoch_offset_ms(1970) == 0
    assert epoch_offset_ms(2000) == UNIX_2000_MS == 946684800000
    # 2026-01-01T00:00:00Z is 820,540,800 s after 2000-01-01 (ESP32's time.time()).
    assert 820540800 * 1000 + epoch_offset_ms(2000) == T0
