# Freeze the whole Signet agent into a custom MicroPython build: every module of the
# package, whatever the config uses (a board whose config may change its key type or
# sources later). For one config, `signet device manifest --config board.json --out
# manifest.py` writes a manifest with only the modules that config loads (docs/DEVICE.md,
# "mip or a frozen firmware"):
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/firmware/manifest.py
# Frozen bytecode runs from flash, so the agent's code no longer takes heap.
# main.py and config.json stay on the board's file system (copied by
# `signet device flash`), so a config change needs no rebuild.
include("$(PORT_DIR)/boards/manifest.py")
require("umqtt.simple")
require("ntptime")
package("signet", base_path="lib")
