// Comparison against golden tensors from transformers: per tensor,
// max |actual - expected| <= rtol * max |expected| + atol (an elementwise
// relative test would fail on values near zero even for float64-vs-float32 torch).
export function closePerTensor(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol = 1e-7) {
  let maxRef = 0, maxErr = 0, at = -1
  for (let i = 0; i < expected.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(expected[i]))
    const err = Math.abs(actual[i] - expected[i])
    if (!(err <= maxErr)) {
      maxErr = Number.isNaN(err) ? Infinity : err
      at = i
    }
  }
  const ok = actual.length === expected.length && maxErr <= rtol * maxRef + atol
  return {
    ok,
    relative: maxErr / Math.max(maxRef, 1e-30),
    msg: `max |err| ${maxErr.toExponential(2)} at [${at}] (max |ref| ${maxRef.toExponential(2)}, allowed ${(rtol * maxRef + atol).toExponential(2)})`,
  }
}
