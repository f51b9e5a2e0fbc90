// setfit's ContrastiveDataset: the same pairs, labels and serving order as
// setfit for each sampling strategy (test/fixtures/setfit/pairs.json).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ContrastiveDataset, shuffleCombinations, type Label } from '../../lib/setfit/sampler.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'setfit')
interface Case {
  name: string
  labels: Label[]
  multilabel: boolean
  options: { sampling_strategy?: 'oversampling' | 'undersampling' | 'unique'; num_iterations?: number; max_pairs?: number }
  pairs: Array<[number, number, number]>
}
const cases = JSON.parse(readFileSync(join(fixtures, 'pairs.json'), 'utf8')) as Case[]

for (const c of cases) {
  t.test(`pairs: ${c.name}`, async (t) => {
    const texts = c.labels.map((_, i) => `t${i}`)
    const ds = new ContrastiveDataset(texts, c.labels, {
      multilabel: c.multilabel,
      samplingStrategy: c.options.sampling_strategy,
      numIterations: c.options.num_iterations,
      maxPairs: c.options.max_pairs,
    })
    const pairs = ds.pairs()
    t.equal(ds.length, c.pairs.length, 'as many pairs as setfit')
    t.same(pairs.map((p) => [p.index1, p.index2, p.label]), c.pairs, 'the same pairs, targets and order')
    t.ok(pairs.every((p) => p.sentence1 === texts[p.index1] && p.sentence2 === texts[p.index2]), 'texts follow the indices')
  })
}

t.test('every unordered pair, a text with itself included, once', async (t) => {
  const pairs = shuffleCombinations(5)
  t.equal(pairs.length, 15)
  t.equal(new Set(pairs.map(([i, j]) => `${i},${j}`)).size, 15)
  t.ok(pairs.every(([i, j]) => i <= j))
  t.same(shuffleCombinations(0), [])
})

t.test('settings that cannot make pairs are named', async (t) => {
  t.throws(() => new ContrastiveDataset(['a', 'b'], [1]), /2 sentences but 1 labels/)
  t.throws(() => new ContrastiveDataset(['a', 'b'], [1, 1]), /every text has the same label, so there is no negative pair/)
  t.throws(() => new ContrastiveDataset(['a', 'b'], [[1, 0], 1], { multilabel: true }), /multi-label data needs a 0\/1 vector per text; label 1/)
  t.throws(() => new ContrastiveDataset(['a', 'b'], [0, 1], { samplingStrategy: 'random' as 'unique' }), /Invalid sampling strategy "random"/)
  // "unique" asks for no pair of the missing kind, so one class alone is fine there.
  t.equal(new ContrastiveDataset(['a', 'b'], [1, 1], { samplingStrategy: 'unique' }).length, 3)
})
