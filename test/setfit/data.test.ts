// setfit.sample_dataset: the same examples in the same order for a seed
// (test/fixtures/setfit/sample_dataset.json).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Dataset } from '../../lib/data/dataset.js'
import { sampleDataset } from '../../lib/setfit/data.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'setfit')
const f = JSON.parse(readFileSync(join(fixtures, 'sample_dataset.json'), 'utf8')) as {
  text: string[]; label: number[]; cases: Array<{ num_samples: number; seed: number; string_labels?: boolean; text: string[] }>
}

t.test('the picks of setfit.sample_dataset', async (t) => {
  for (const c of f.cases) {
    const label = c.string_labels ? f.label.map((v) => ['neg', 'pos', 'neutral'][v]) : f.label
    const ds = Dataset.fromColumns({ text: f.text, label })
    const s = sampleDataset(ds, { numSamples: c.num_samples, seed: c.seed })
    t.same(s.column('text'), c.text, `${c.num_samples} per label, seed ${c.seed}${c.string_labels ? ', string labels' : ''}`)
    const byRow = new Map(f.text.map((x, i) => [x, label[i]]))
    t.same(s.column('label'), s.column<string>('text').map((x) => byRow.get(x)), 'labels travel with their rows')
  }
})

t.test('options and bad input', async (t) => {
  const ds = Dataset.fromColumns({ text: ['a', 'b', 'c'], y: [0, 1, 0] })
  t.equal(sampleDataset(ds, { labelColumn: 'y', numSamples: 1 }).length, 2)
  t.throws(() => sampleDataset(ds), /no column "label" \(columns: text, y\)/)
  t.throws(() => sampleDataset(ds, { labelColumn: 'y', numSamples: -1 }), /numSamples must be a non-negative integer/)
  t.throws(() => sampleDataset(Dataset.fromColumns({ text: ['a'], label: [[1, 0]] })), /row 0 has label \[1,0\]/)
})
