// Random state. Dropout draws from Philox keyed by (seed, offset) in native
// code; this module hands out disjoint offsets so every dropout call gets a
// fresh mask, and the state can be saved and restored to resume a run exactly.
// Host-side initialisation (normal / uniform for weights) uses a seeded
// generator of its own here.

export interface RandomState {
  seed: bigint
  offset: bigint
  hostState: number[]
}

let seed = 42n
let offset = 0n
// xoshiro128** state for host-side draws.
let s = new Uint32Array(4)

function splitmix32(x: number): () => number {
  let a = x >>> 0
  return () => {
    a = (a + 0x9e3779b9) >>> 0
    let z = a
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

/** Seeds dropout and host-side initialisation, as torch.manual_seed does for both. */
export function manualSeed(value: number | bigint): void {
  const v = BigInt(value)
  if (v < 0n || v >= 1n << 64n) throw new RangeError(`manualSeed: seed must be in [0, 2^64), got ${value}`)
  seed = v
  offset = 0n
  const mix = splitmix32(Number(v & 0xffffffffn) ^ Number((v >> 32n) & 0xffffffffn))
  s = new Uint32Array([mix(), mix(), mix(), mix()])
  if (s[0] === 0 && s[1] === 0 && s[2] === 0 && s[3] === 0) s[0] = 1
}
manualSeed(42)

/** Reserves Philox counters for n elements (one block per 4 elements) and returns (seed, offset). */
export function nextPhiloxRange(n: number): { seed: bigint; offset: bigint } {
  const start = offset
  offset += BigInt(Math.ceil(n / 4))
  return { seed, offset: start }
}

/** Where dropout's Philox stream stands now (a checkpointed layer records it to replay its masks). */
export function philoxPosition(): { seed: bigint; offset: bigint } {
  return { seed, offset }
}

/**
 * Runs fn with the Philox stream at `position`, then puts the stream back
 * where it was: a recomputation draws the masks it drew the first time and
 * leaves later draws unchanged.
 */
export function withPhiloxPosition<T>(position: { seed: bigint; offset: bigint }, fn: () => T): T {
  const before = { seed, offset }
  seed = position.seed
  offset = position.offset
  try {
    return fn()
  } finally {
    seed = before.seed
    offset = before.offset
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0
}

/** Uniform in [0, 1) from xoshiro128**. */
export function hostUniform(): number {
  const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0
  const t = (s[1] << 9) >>> 0
  s[2] ^= s[0]
  s[3] ^= s[1]
  s[1] ^= s[2]
  s[0] ^= s[3]
  s[2] ^= t
  s[3] = rotl(s[3], 11)
  return result / 4294967296
}

/** Standard normal by Box-Muller. */
export function hostNormal(): number {
  let u = 0
  while (u === 0) u = hostUniform()
  const v = hostUniform()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}

export function getRandomState(): RandomState {
  return { seed, offset, hostState: Array.from(s) }
}

export function setRandomState(state: RandomState): void {
  seed = BigInt(state.seed)
  offset = BigInt(state.offset)
  s = Uint32Array.from(state.hostState)
}
