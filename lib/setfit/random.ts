// The three random streams SetFit's Python stack draws its orders from, so
// that bertkit picks the same examples and pairs in the same order for a seed:
//   - numpy.random.RandomState(seed).permutation(n): setfit's pair shuffle
//     (sampler.shuffle_combinations, always seed 42);
//   - numpy.random.default_rng(seed).permutation(n): datasets' Dataset.shuffle,
//     used twice by setfit.sample_dataset;
//   - torch.randperm(n, generator=torch.Generator().manual_seed(seed)): the
//     order in which sentence-transformers' trainer visits the pairs, reseeded
//     with seed + epoch every epoch.
// Each is checked against numpy / torch by test/setfit/random.test.ts.

const MT_N = 624
const MT_M = 397

/** The Mersenne Twister MT19937, seeded as init_genrand (numpy's legacy seeding and torch's CPU generator both do). */
export class MT19937 {
  private readonly mt = new Uint32Array(MT_N)
  private index = MT_N

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`MT19937: seed must be an integer in [0, 2^32), got ${seed}`)
    this.mt[0] = seed >>> 0
    for (let i = 1; i < MT_N; i++) {
      const prev = this.mt[i - 1] ^ (this.mt[i - 1] >>> 30)
      this.mt[i] = (Math.imul(1812433253, prev) + i) >>> 0
    }
  }

  private twist(): void {
    const mt = this.mt
    for (let i = 0; i < MT_N; i++) {
      const y = (mt[i] & 0x80000000) | (mt[(i + 1) % MT_N] & 0x7fffffff)
      let v = mt[(i + MT_M) % MT_N] ^ (y >>> 1)
      if (y & 1) v ^= 0x9908b0df
      mt[i] = v >>> 0
    }
    this.index = 0
  }

  /** The next 32-bit output. */
  nextUint32(): number {
    if (this.index >= MT_N) this.twist()
    let y = this.mt[this.index++]
    y ^= y >>> 11
    y ^= (y << 7) & 0x9d2c5680
    y ^= (y << 15) & 0xefc60000
    y ^= y >>> 18
    return y >>> 0
  }
}

/** numpy's random_interval: a uniform integer in [0, max] by masked rejection (max < 2^32 here). */
function randomInterval(next32: () => number, max: number): number {
  if (max === 0) return 0
  let mask = max
  mask |= mask >>> 1
  mask |= mask >>> 2
  mask |= mask >>> 4
  mask |= mask >>> 8
  mask |= mask >>> 16
  mask >>>= 0
  let value: number
  do value = (next32() & mask) >>> 0
  while (value > max)
  return value
}

/** Fisher-Yates from the end, as numpy's shuffle of a 1-D array: arange(n) permuted. */
function numpyShuffledRange(n: number, next32: () => number): number[] {
  checkLength(n)
  const arr = Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i >= 1; i--) {
    const j = randomInterval(next32, i)
    const t = arr[i]
    arr[i] = arr[j]
    arr[j] = t
  }
  return arr
}

function checkLength(n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`permutation: length must be an integer in [0, 2^32), got ${n}`)
}

/** numpy.random.RandomState(seed).permutation(n). */
export function randomStatePermutation(seed: number, n: number): number[] {
  const mt = new MT19937(seed)
  return numpyShuffledRange(n, () => mt.nextUint32())
}

/** torch.randperm(n, generator=torch.Generator().manual_seed(seed)) on the CPU (n below 2^32 / 20). */
export function torchRandperm(seed: number, n: number): number[] {
  checkLength(n)
  if (n >= 0xffffffff / 20) throw new RangeError(`torchRandperm: n = ${n} is beyond the small-n algorithm torch uses below 2^32 / 20`)
  // torch's manual_seed takes a 64-bit seed; its CPU engine keeps the low 32 bits.
  const mt = new MT19937(seed >>> 0)
  return torchShuffledRange(n, () => mt.nextUint32())
}

/** torch.randperm's small-n CPU algorithm: a forward Fisher-Yates shuffle of arange(n) drawing next32() % (n - i) for position i. */
export function torchShuffledRange(n: number, next32: () => number): number[] {
  const out = Array.from({ length: n }, (_, i) => i)
  for (let i = 0; i < n - 1; i++) {
    const z = next32() % (n - i)
    const t = out[i]
    out[i] = out[z + i]
    out[z + i] = t
  }
  return out
}

// ---- numpy.random.default_rng: SeedSequence → PCG64 (XSL-RR 128/64) ----------------

const INIT_A = 0x43b0d7e5
const MULT_A = 0x931e8875
const INIT_B = 0x8b51f9dd
const MULT_B = 0x58f38ded
const MIX_MULT_L = 0xca01f9dd
const MIX_MULT_R = 0x4973f715
const POOL_SIZE = 4

/** The words of a non-negative integer seed, least significant first (SeedSequence's entropy). */
function entropyWords(seed: number | bigint): number[] {
  let v = BigInt(seed)
  if (v < 0n) throw new RangeError(`default_rng: seed must be non-negative, got ${seed}`)
  const words: number[] = []
  do {
    words.push(Number(v & 0xffffffffn))
    v >>= 32n
  } while (v > 0n)
  return words
}

/** numpy.random.SeedSequence(seed).generate_state(nWords, uint32) for an integer seed with no spawn key. */
export function seedSequenceState(seed: number | bigint, nWords: number): Uint32Array {
  const entropy = entropyWords(seed)
  let hashConst = INIT_A
  const hashmix = (value: number): number => {
    value = (value ^ hashConst) >>> 0
    hashConst = Math.imul(hashConst, MULT_A) >>> 0
    value = Math.imul(value, hashConst) >>> 0
    return (value ^ (value >>> 16)) >>> 0
  }
  const mix = (x: number, y: number): number => {
    const r = (Math.imul(MIX_MULT_L, x) - Math.imul(MIX_MULT_R, y)) >>> 0
    return (r ^ (r >>> 16)) >>> 0
  }
  const pool = new Uint32Array(POOL_SIZE)
  for (let i = 0; i < POOL_SIZE; i++) pool[i] = hashmix(i < entropy.length ? entropy[i] : 0)
  for (let src = 0; src < POOL_SIZE; src++) {
    for (let dst = 0; dst < POOL_SIZE; dst++) if (src !== dst) pool[dst] = mix(pool[dst], hashmix(pool[src]))
  }
  for (let src = POOL_SIZE; src < entropy.length; src++) {
    for (let dst = 0; dst < POOL_SIZE; dst++) pool[dst] = mix(pool[dst], hashmix(entropy[src]))
  }
  const out = new Uint32Array(nWords)
  let h = INIT_B
  for (let i = 0; i < nWords; i++) {
    let v = (pool[i % POOL_SIZE] ^ h) >>> 0
    h = Math.imul(h, MULT_B) >>> 0
    v = Math.imul(v, h) >>> 0
    out[i] = (v ^ (v >>> 16)) >>> 0
  }
  return out
}

const MASK64 = (1n << 64n) - 1n
const MASK128 = (1n << 128n) - 1n
const PCG_MULT = (2549297995355413924n << 64n) + 4865540595714422341n

/** numpy's PCG64 bit generator as numpy.random.default_rng(seed) seeds it. */
export class PCG64 {
  private state = 0n
  private readonly inc: bigint
  private spare: number | null = null

  constructor(seed: number | bigint) {
    const w = seedSequenceState(seed, 8)
    // generate_state(4, uint64): little-endian pairs of words; seed = (v0, v1), inc = (v2, v3) as 128-bit (high, low).
    const u64 = (i: number) => (BigInt(w[2 * i + 1]) << 32n) | BigInt(w[2 * i])
    const initState = (u64(0) << 64n) | u64(1)
    const initSeq = (u64(2) << 64n) | u64(3)
    this.inc = ((initSeq << 1n) | 1n) & MASK128
    this.step()
    this.state = (this.state + initState) & MASK128
    this.step()
  }

  private step(): void {
    this.state = (this.state * PCG_MULT + this.inc) & MASK128
  }

  nextUint64(): bigint {
    this.step()
    const hi = this.state >> 64n
    const lo = this.state & MASK64
    const rot = Number(this.state >> 122n)
    const x = hi ^ lo
    return ((x >> BigInt(rot)) | (x << BigInt((64 - rot) & 63))) & MASK64
  }

  /** Half of a 64-bit draw at a time, low half first (numpy's buffered next_uint32). */
  nextUint32(): number {
    if (this.spare !== null) {
      const v = this.spare
      this.spare = null
      return v
    }
    const next = this.nextUint64()
    this.spare = Number(next >> 32n)
    return Number(next & 0xffffffffn)
  }
}

/** numpy.random.default_rng(seed).permutation(n): what datasets' Dataset.shuffle(seed=seed) selects. */
export function defaultRngPermutation(seed: number | bigint, n: number): number[] {
  const g = new PCG64(seed)
  return numpyShuffledRange(n, () => g.nextUint32())
}
