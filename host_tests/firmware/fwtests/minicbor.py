# Just enough CBOR decoding for the test gateway (MicroPython-compatible).


def loads(data):
    value, end = _item(memoryview(data), 0)
    assert end == len(data), "trailing bytes after CBOR item"
    return value


def _arg(data, i):
    ib = data[i]
    major, ai = ib >> 5, ib & 0x1F
    if ai < 24:
        return major, ai, i + 1
    width = {24: 1, 25: 2, 26: 4, 27: 8}[ai]
    return major, int.from_bytes(bytes(data[i + 1 : i + 1 + width]), "big"), i + 1 + width


def _item(data, i):
    if data[i] == 0xF6:
        return None, i + 1
    if data[i] in (0xF4, 0xF5):
        return data[i] == 0xF5, i + 1
    major, arg, i = _arg(data, i)
    if major == 0:
        return arg, i
    if major == 1:
        return -1 - arg, i
    if major == 2:
        return bytes(data[i : i + arg]), i + arg
    if major == 3:
        return bytes(data[i : i + arg]).decode(), i + arg
    if major == 4:
        out = []
        for _ in range(arg):
            v, i = _item(data, i)
            out.append(v)
        return out, i
    if major == 5:
        out = {}
        for _ in range(arg):
            k, i = _item(data, i)
            out[k], i = _item(data, i)
        return out, i
    if major == 6:
        return _item(data, i)  # tag: the content
    raise ValueError("unsupported CBOR initial byte 0x%02x" % data[i - 1])
