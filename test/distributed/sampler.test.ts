// DistributedSampler and torch.randperm against torch itself: the orders in
// test/fixtures/distributed/sampler.json were written by torch
// (make_sampler_fixture.py in that folder).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { DistributedSampler, torchRandperm } from '../../lib/distributed/sampler.js'

interface Fixture {
  torch: string
  randperm: Array<{ n: number; seed: number; perm?: number[]; head?: number[]; checksum?: number }>
  sampler: Array<{ n: number; numReplicas: number; rank: number; shuffle: boolean; dropLast: boolean; seed: number; epoch: number; indices: number[]; numSamples: number }>
}

const fixture = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'test', 'fixtures', 'distributed', 'sampler.json'), 'utf8')) as Fixture

t.test(`torchRandperm equals torch.randperm with a seeded generator (torch ${fixture.torch})`, async (t) => {
  for (const c of fixture.randperm) {
    const perm = torchRandperm(c.n, c.seed)
    if (c.perm) {
      t.same(perm, c.perm, `n=${c.n} seed=${c.seed}`)
    } else {
      t.same(perm.slice(0, 64), c.head, `n=${c.n} seed=${c.seed}: head`)
      t.equal(perm.reduce((s, p, i) => s + (i + 1) * p, 0), c.checksum, `n=${c.n} seed=${c.seed}: checksum of the whole order`)
    }
  }
})

t.test('DistributedSampler shards as torch does (shuffle, padding, dropLast, epochs)', async (t) => {
  for (const c of fixture.sampler) {
    const s = new DistributedSampler(c.n, { numReplicas: c.numReplicas, rank: c.rank, shuffle: c.shuffle, seed: c.seed, dropLast: c.dropLast })
    s.setEpoch(c.epoch)
    const name = `n=${c.n} replicas=${c.numReplicas} rank=${c.rank} shuffle=${c.shuffle} dropLast=${c.dropLast} seed=${c.seed} epoch=${c.epoch}`
    t.equal(s.numSamples, c.numSamples, `${name}: numSamples`)
    t.same(s.indices(), c.indices, name)
  }
})

t.test('DistributedSampler refuses what torch refuses', async (t) => {
  t.throws(() => new DistributedSampler(10, { numReplicas: 2, rank: 2 }), /invalid rank 2, rank should be in the interval \[0, 1\]/)
  t.throws(() => new DistributedSampler(10, { numReplicas: 0, rank: 0 }), /numReplicas must be a positive integer/)
  t.throws(() => torchRandperm(-1, 0), /non-negative integer/)
})
