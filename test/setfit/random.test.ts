// The permutations setfit's Python stack draws, against numpy and torch
// (test/fixtures/generators/make_setfit_fixtures.py → test/fixtures/setfit/random.json).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomStatePermutation, defaultRngPermutation, torchRandperm, MT19937 } from '../../lib/setfit/random.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'setfit')
interface Case { seed: number | string; n: number; perm: number[] }
const r = JSON.parse(readFileSync(join(fixtures, 'random.json'), 'utf8')) as Record<string, Case[]>

t.test('numpy.random.RandomState(seed).permutation(n)', async (t) => {
  for (const c of r.random_state) t.same(randomStatePermutation(c.seed as number, c.n), c.perm, `seed ${c.seed}, n ${c.n}`)
})

t.test('numpy.random.default_rng(seed).permutation(n)', async (t) => {
  for (const c of r.default_rng) {
    const seed = typeof c.seed === 'number' && Number.isSafeInteger(c.seed) ? c.seed : BigInt(c.seed)
    t.same(defaultRngPermutation(seed, c.n), c.perm, `seed ${c.seed}, n ${c.n}`)
  }
  // Seeds beyond 2^53 and beyond the 128-bit pool (SeedSequence mixes extra words in).
  for (const c of r.default_rng_big) t.same(defaultRngPermutation(BigInt(c.seed), c.n), c.perm, `seed ${c.seed}`)
})

t.test('torch.randperm(n, generator=Generator().manual_seed(seed))', async (t) => {
  for (const c of r.torch_randperm) t.same(torchRandperm(c.seed as number, c.n), c.perm, `seed ${c.seed}, n ${c.n}`)
})

t.test('bad seeds and sizes are refused', async (t) => {
  t.throws(() => new MT19937(-1), /seed must be an integer in \[0, 2\^32\)/)
  t.throws(() => randomStatePermutation(2 ** 32, 3), /seed must be an integer/)
  t.throws(() => randomStatePermutation(1, 2.5), /length must be an integer/)
  t.throws(() => defaultRngPermutation(-3, 2), /seed must be non-negative/)
})
