"""A MicroPython board from the host: flashing and provisioning over mpremote, and the runner
that compiles firmware with mpy-cross and runs it on the MicroPython unix port.
"""
