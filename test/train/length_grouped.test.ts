// groupByLength: lengthGroupedIndices against transformers'
// get_length_grouped_indices (LengthGroupedSampler's order), fed the very
// permutation torch drew inside it (fixture: test/fixtures/generators/make_length_grouped_fixture.py),
// and the Trainer's batches under groupByLength (each batch a slice of that
// order, with batch size x gradient accumulation steps as transformers uses).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { lengthGroupedIndices } from '../../lib/train/length_grouped.js'
import { Trainer } from '../../lib/train/trainer.js'
import { TrainingArguments } from '../../lib/train/training_args.js'
import { Dataset } from '../../lib/data/dataset.js'
import { BertForSequenceClassification, BertConfig } from '../../lib/index.js'

const fixture = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'test', 'fixtures', 'trainer', 'length_grouped.json'), 'utf8')) as {
  transformers: string
  cases: Array<{ n: number; batch_size: number; lengths: number[]; permutation: number[]; expected: number[] }>
}

t.test(`lengthGroupedIndices equals transformers ${fixture.transformers}' get_length_grouped_indices`, async (t) => {
  for (const c of fixture.cases) {
    const got = lengthGroupedIndices(c.lengths, c.batch_size, c.permutation)
    const first = got.findIndex((v, i) => v !== c.expected[i])
    t.ok(got.length === c.expected.length && first < 0, `n ${c.n}, batch ${c.batch_size}: ${first < 0 ? 'identical order' : `differs at ${first}`}`)
  }
  t.throws(() => lengthGroupedIndices([1, 2], 2, [0]), /the permutation has 1 entries for 2 lengths/)
  t.same(lengthGroupedIndices([], 4, []), [])
})

t.test('the Trainer groups by length with batch x accumulation, longest batch first', async (t) => {
  const lengths = Array.from({ length: 200 }, (_, i) => 3 + ((i * 37) % 41))
  const ds = Dataset.fromRows(lengths.map((len, i) => ({ input_ids: Array.from({ length: len }, () => 5), label: i % 2 })))
  const model = new BertForSequenceClassification(new BertConfig({ vocab_size: 10, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 8, max_position_embeddings: 64 } as never))
  const args = new TrainingArguments('unused', { perDeviceTrainBatchSize: 4, gradientAccumulationSteps: 2, groupByLength: true, disableTqdm: true })
  const trainer = new Trainer({ model, args, trainDataset: ds, dataCollator: () => ({}) as never })
  const batches = (trainer as unknown as { epochBatches: (d: Dataset, e: number) => number[][] }).epochBatches(ds, 0)
  const order = batches.flat()
  t.same([...order].sort((a, b) => a - b), lengths.map((_, i) => i), 'every row once')
  t.equal(lengths[order[0]], Math.max(...lengths), 'the longest row comes first')
  // Mega-batches of min(200 // (8 * 4), 50) = 6 x 8 rows, each sorted by length
  // (but its first entry, which the longest-first swap may have exchanged).
  const mega = 6 * 8
  for (let m = 0; m < order.length; m += mega) {
    const chunk = order.slice(m + 1, m + mega).map((i) => lengths[i])
    t.ok(chunk.every((v, i) => i === 0 || chunk[i - 1] >= v), `mega-batch ${m / mega} sorted longest first`)
  }
  trainer.dispose()
  model.dispose()
})
