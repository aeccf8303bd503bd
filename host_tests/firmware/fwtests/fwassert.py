# Small helpers shared by the firmware test modules (MicroPython-compatible).


def hexlify(b):
    return "".join("%02x" % x for x in b)


def raises(exc_type, fn, *args):
    """Call fn(*args); return the message of the exc_type it must raise."""
    try:
        fn(*args)
    except exc_type as e:
        return str(e)
    raise AssertionError("%s not raised by %r%r" % (exc_type.__name__, fn, args))
