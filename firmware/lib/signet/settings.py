# What a validated configuration is made of. Kept apart from config.py so a
# device can drop the validator's code after boot and keep only these.


class Secret:
    """A password from the config: reveal() gives it, repr/str never do."""

    __slots__ = ("_v",)

    def __init__(self, value):
        self._v = value

    def reveal(self):
        return self._v

    def __repr__(self):
        return "'***'"

    __str__ = __repr__


class Config:
    """A validated configuration: one attribute per top-level key, all defaults filled.

    Sections are dicts; passwords in them are Secret objects, so printing a
    Config or a section never shows them.
    """

    def __init__(self, data):
        self._keys = sorted(data)
        for key in self._keys:
            setattr(self, key, data[key])

    def __repr__(self):
        return "Config(%s)" % ", ".join("%s=%r" % (k, getattr(self, k)) for k in self._keys)
