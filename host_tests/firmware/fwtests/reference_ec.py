# Textbook affine elliptic-curve arithmetic for differential testing of the
# firmware's Jacobian/comb code. Slow and obviously correct; never shipped.


def inv(x, m):
    return pow(x, m - 2, m)


def add(curve, P, Q):
    p = curve.p
    if P is None:
        return Q
    if Q is None:
        return P
    (x1, y1), (x2, y2) = P, Q
    if x1 == x2:
        if (y1 + y2) % p == 0:
            return None
        lam = (3 * x1 * x1 + curve.a) * inv(2 * y1, p) % p
    else:
        lam = (y2 - y1) * inv(x2 - x1, p) % p
    x3 = (lam * lam - x1 - x2) % p
    return x3, (lam * (x1 - x3) - y1) % p


def mul(curve, k, P):
    R = None
    while k:
        if k & 1:
            R = add(curve, R, P)
        P = add(curve, P, P)
        k >>= 1
    return R


def verify(curve, public, digest, r, s):
    """ECDSA verification (SEC 1, 4.1.4) with the reference arithmetic."""
    n = curve.n
    if not (0 < r < n and 0 < s < n):
        return False
    e = int.from_bytes(digest, "big")
    w = inv(s, n)
    R = add(curve, mul(curve, e * w % n, (curve.gx, curve.gy)), mul(curve, r * w % n, public))
    return R is not None and R[0] % n == r
