// An independent JavaScript port of Philox4x32-10 (Salmon et al., SC 2011)
// and of bertkit's draw -> keep rule (native/include/bertkit/philox.h), so the
// tests can predict every dropout mask the native backends draw. Each
// backend's masks are checked against this one file, which is how the CPU and
// CUDA masks are held to each other.

const MUL0 = 0xd2511f53
const MUL1 = 0xcd9e8d57
const WEYL0 = 0x9e3779b9
const WEYL1 = 0xbb67ae85

/**
 * High and low 32 bits of the 64-bit product of two uint32. Math.imul gives
 * the low half; the high half is assembled from 16-bit partial products, each
 * exact in a double.
 */
export function mulHiLo(a: number, b: number): [number, number] {
  const a0 = a & 0xffff
  const a1 = a >>> 16
  const b0 = b & 0xffff
  const b1 = b >>> 16
  const p00 = a0 * b0
  const p01 = a0 * b1
  const p10 = a1 * b0
  const p11 = a1 * b1
  const carry = ((p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff)) >>> 16
  const hi = (p11 + (p01 >>> 16) + (p10 >>> 16) + carry) >>> 0
  const lo = Math.imul(a, b) >>> 0
  return [hi, lo]
}

/** One Philox4x32-10 block: counter (c0..c3), key (k0, k1), all uint32. */
export function philox4x32_10(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number): [number, number, number, number] {
  let x0 = c0 >>> 0, x1 = c1 >>> 0, x2 = c2 >>> 0, x3 = c3 >>> 0
  let key0 = k0 >>> 0, key1 = k1 >>> 0
  for (let round = 0; round < 10; round++) {
    const [hi0, lo0] = mulHiLo(MUL0, x0)
    const [hi1, lo1] = mulHiLo(MUL1, x2)
    const n0 = (hi1 ^ x1 ^ key0) >>> 0
    const n2 = (hi0 ^ x3 ^ key1) >>> 0
    x0 = n0
    x1 = lo1
    x2 = n2
    x3 = lo0
    key0 = (key0 + WEYL0) >>> 0
    key1 = (key1 + WEYL1) >>> 0
  }
  return [x0, x1, x2, x3]
}

const MASK32 = 0xffffffffn

/** The uint32 words of the block that holds flat element `index` of a draw keyed by (seed, offset). */
function blockFor(seed: bigint, offset: bigint, index: number): [number, number, number, number] {
  const counter = (offset + BigInt(Math.floor(index / 4))) & 0xffffffffffffffffn
  return philox4x32_10(Number(counter & MASK32), Number(counter >> 32n), 0, 0, Number(seed & MASK32), Number((seed >> 32n) & MASK32))
}

/** philox_uniform: 24 random bits of lane index % 4, scaled into [0, 1). Exact as a float32. */
export function philoxUniform(seed: bigint, offset: bigint, index: number): number {
  return (blockFor(seed, offset, index)[index % 4] >>> 8) / 16777216
}

/**
 * Keep (1) / drop (0) for flat elements [first, first + n) of a draw keyed by
 * (seed, offset): kept when the uniform draw is >= p, with p rounded to
 * float32 as the native code receives it.
 */
export function dropoutMask(n: number, p: number, seed: bigint, offset: bigint, first = 0): Uint8Array {
  const pf = Math.fround(p)
  const mask = new Uint8Array(n)
  let block: [number, number, number, number] | null = null
  for (let j = 0; j < n; j++) {
    const index = first + j
    if (block === null || index % 4 === 0) block = blockFor(seed, offset, index)
    mask[j] = (block[index % 4] >>> 8) / 16777216 >= pf ? 1 : 0
  }
  return mask
}

/** The factor a kept element is multiplied by: float32(1 / (1 - p)). */
export function keepScale(p: number): number {
  return Math.fround(1 / (1 - Math.fround(p)))
}
