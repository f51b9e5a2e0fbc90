"""Fits the polynomials of the float-lane exact GELU (native/src/cpu/vecmath_kernels.h, GeluErfF).

    python3 bench/fit_gelu_erf_float.py

Prints the coefficients (highest degree first, rounded to float, as the
kernel's Horner chains take them) and each fit's maximum relative error with
double and with float coefficients. References come from mpmath at 40
digits; the fits are relative-weighted least squares at Chebyshev points,
reweighted towards the largest errors (Lawson) for near-minimax.

  P(z), degree 10:  (u + 3) e^{u^2/2} erfc(u / sqrt2) / 2 with
                    z = (1.375 u - 3) / (u + 3), u in [0, 16] (z in [-1, 1])
  R(w), degree 7:   (Phi(x) - 1/2) / x,              w = x^2 in [0, 1.5^2]
  D(w), degree 7:   (Phi(x) + x phi(x) - 1/2) / x,   w = x^2 in [0, 1.5^2]
bench/vecmath-accuracy.cpp then measures the kernel itself on every float.
"""
import mpmath as mp
import numpy as np

mp.mp.dps = 40


def lawson_fit(t, f, deg, rounds=80):
    V = np.vander(t, deg + 1, increasing=True)
    W = 1 / np.abs(f)
    w = np.ones(len(t))
    for _ in range(rounds):
        c, *_ = np.linalg.lstsq(V * (W * np.sqrt(w))[:, None], f * W * np.sqrt(w), rcond=None)
        err = (V @ c - f) / f
        w = w * np.abs(err)
        w /= w.sum()
    c32 = c.astype(np.float32).astype(np.float64)
    return c, np.abs((V @ c - f) / f).max(), c32, np.abs((V @ c32 - f) / f).max()


def report(name, fit):
    c, err, c32, err32 = fit
    print(f"{name}: max relative error {err:.3g} (float coefficients: {err32:.3g})")
    for ci in c32[::-1]:
        print(f"  {float.hex(float(ci))}")


def chebyshev(n, lo, hi):
    k = np.arange(n)
    return lo + (hi - lo) * (np.cos(np.pi * (k + 0.5) / n) + 1) / 2


# P: erfc's tail, in the Weideman-style variable z.
L, UMAX = 3.0, 16.0
z = chebyshev(800, -1.0, 1.0)
# z = (A u - L) / (u + L) with A = (UMAX + 2L) / UMAX  =>  u = L (1 + z) / (A - z)
A = (UMAX + 2 * L) / UMAX
u = L * (1 + z) / (A - z)
tail = np.array([float((mp.mpf(x) + L) * mp.exp(mp.mpf(x) ** 2 / 2) * mp.erfc(mp.mpf(x) / mp.sqrt(2)) / 2) for x in u])
report("P (halved)", lawson_fit(z, tail, 10, rounds=60))

# R and D: the series near 0, in w = x^2.
w = chebyshev(600, 0.0, 1.5 ** 2)


def r_of(wi):
    x = mp.sqrt(mp.mpf(wi))
    return 1 / mp.sqrt(2 * mp.pi) if x == 0 else mp.erf(x / mp.sqrt(2)) / (2 * x)


R = np.array([float(r_of(wi)) for wi in w])
D = np.array([float(r_of(wi) + mp.exp(-mp.mpf(wi) / 2) / mp.sqrt(2 * mp.pi)) for wi in w])
report("R", lawson_fit(w, R, 7))
report("D", lawson_fit(w, D, 7))
