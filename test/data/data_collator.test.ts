// DataCollatorWithPadding: padding to the longest row and to a multiple,
// snake_case rows, label dtypes (class ids, regression, multi-label), left
// padding, max_length, and the errors for malformed batches.
import t from 'tap'
import { DataCollatorWithPadding, disposeBatch, type CollatedBatch } from '../../lib/data/data_collator.js'
import { Dataset } from '../../lib/data/dataset.js'

function values(batch: CollatedBatch) {
  return {
    inputIds: batch.inputIds.toArray(),
    attentionMask: batch.attentionMask.toArray(),
    tokenTypeIds: batch.tokenTypeIds.toArray(),
    shape: [...batch.inputIds.shape],
    labels: batch.labels ? { data: batch.labels.toArray(), dtype: batch.labels.dtype, shape: [...batch.labels.shape] } : undefined,
  }
}

t.test('pads to the longest row with the pad token; masks and token types follow', async (t) => {
  const collate = DataCollatorWithPadding({ tokenizer: { padTokenId: 7 } })
  t.equal(collate.padTokenId, 7)
  const batch = collate([
    { inputIds: [101, 5, 102], attentionMask: [1, 1, 1], tokenTypeIds: [0, 0, 0], label: 1, text: 'ignored' },
    { inputIds: [101, 102], attentionMask: [1, 1], tokenTypeIds: [0, 1], label: 0 },
    { inputIds: [101, 6, 6, 6, 102], attentionMask: [1, 1, 1, 1, 1], tokenTypeIds: [0, 0, 1, 1, 1], label: 1 },
  ])
  const v = values(batch)
  t.same(v.shape, [3, 5])
  t.equal(batch.inputIds.dtype, 'int32')
  t.equal(batch.attentionMask.dtype, 'int32')
  t.equal(batch.tokenTypeIds.dtype, 'int32')
  t.same(v.inputIds, [101, 5, 102, 7, 7, 101, 102, 7, 7, 7, 101, 6, 6, 6, 102])
  t.same(v.attentionMask, [1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1])
  t.same(v.tokenTypeIds, [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1])
  t.same(v.labels, { data: [1, 0, 1], dtype: 'int32', shape: [3] })
  disposeBatch(batch)
  t.ok(batch.inputIds.disposed && batch.attentionMask.disposed && batch.tokenTypeIds.disposed && batch.labels!.disposed, 'disposeBatch frees all four')
})

t.test('padToMultipleOf, snake_case rows from a Dataset, a number as tokenizer, no labels', async (t) => {
  const ds = Dataset.fromColumns({ input_ids: [[2, 3, 4], [2, 3, 4, 5, 6, 7, 8, 9, 10]], token_type_ids: [[0, 0, 0], [0, 0, 0, 0, 0, 1, 1, 1, 1]] })
  const collate = DataCollatorWithPadding({ tokenizer: 0, padToMultipleOf: 8 })
  const batch = collate([...ds])
  const v = values(batch)
  t.same(v.shape, [2, 16], '9 rounds up to 16')
  t.same(v.inputIds.slice(0, 16), [2, 3, 4, ...Array(13).fill(0)])
  t.same(v.attentionMask.slice(16), [...Array(9).fill(1), ...Array(7).fill(0)], 'a mask of ones is made when rows have none')
  t.same(v.tokenTypeIds.slice(16, 25), [0, 0, 0, 0, 0, 1, 1, 1, 1])
  t.equal(batch.labels, undefined)
  disposeBatch(batch)
  const exact = new DataCollatorWithPadding({ tokenizer: 0, padToMultipleOf: 4 })([{ inputIds: [1, 2, 3, 4] }])
  t.same(exact.inputIds.shape, [1, 4], 'already a multiple (and `new` works too)')
  t.same(exact.tokenTypeIds.toArray(), [0, 0, 0, 0], 'zeros when rows have no token types')
  disposeBatch(exact)
})

t.test('labels: int32 class ids, float32 regression, float32 multi-label, labels or label', async (t) => {
  const collate = DataCollatorWithPadding({ tokenizer: { padTokenId: 0 } })
  const rows = (labels: unknown[], key = 'label') => labels.map((l) => ({ inputIds: [1, 2], [key]: l }))
  const reg = collate(rows([0.5, -1.25, 2]))
  t.same(values(reg).labels, { data: [0.5, -1.25, 2], dtype: 'float32', shape: [3] })
  disposeBatch(reg)
  const multi = collate(rows([[1, 0, 1], [0, 0, 1]], 'labels'))
  t.same(values(multi).labels, { data: [1, 0, 1, 0, 0, 1], dtype: 'float32', shape: [2, 3] })
  disposeBatch(multi)
  const forced = DataCollatorWithPadding({ tokenizer: 0, labelDtype: 'float32' })(rows([1, 2]))
  t.same(values(forced).labels, { data: [1, 2], dtype: 'float32', shape: [2] }, 'labelDtype for regression targets that happen to be whole')
  disposeBatch(forced)
  const bools = collate(rows([true, false]))
  t.same(values(bools).labels, { data: [1, 0], dtype: 'int32', shape: [2] })
  disposeBatch(bools)
})

t.test('left padding, max_length padding, maxLength as a cap', async (t) => {
  const left = DataCollatorWithPadding({ tokenizer: { padTokenId: 9, paddingSide: 'left' } })([{ inputIds: [1] }, { inputIds: [1, 2, 3] }])
  t.same(left.inputIds.toArray(), [9, 9, 1, 1, 2, 3])
  t.same(left.attentionMask.toArray(), [0, 0, 1, 1, 1, 1])
  disposeBatch(left)
  const fixed = DataCollatorWithPadding({ tokenizer: 0, padding: 'max_length', maxLength: 6 })([{ inputIds: [1, 2] }])
  t.same(fixed.inputIds.shape, [1, 6])
  disposeBatch(fixed)
  t.throws(() => DataCollatorWithPadding({ tokenizer: 0, maxLength: 2 })([{ inputIds: [1, 2, 3] }]), /row 0 has 3 tokens, more than maxLength 2; tokenize with truncation/)
  t.throws(() => DataCollatorWithPadding({ tokenizer: 0, padding: 'max_length' }), /padding "max_length" needs maxLength/)
})

t.test('malformed batches and options: clear errors', async (t) => {
  const collate = DataCollatorWithPadding({ tokenizer: { padTokenId: 0 } })
  t.throws(() => collate([]), /expected a non-empty array of rows, got an empty array/)
  t.throws(() => collate([{ text: 'not tokenized', label: 1 }]), /row 0 has no inputIds \(or input_ids\) array \(fields: text, label\); tokenize the dataset first/)
  t.throws(() => collate([{ inputIds: [1, 2, 3], attentionMask: [1, 1] }]), /row 0 is ragged: attentionMask has 2 values, inputIds 3/)
  t.throws(() => collate([{ inputIds: [1, 2], tokenTypeIds: [0, 0, 0] }]), /row 0 is ragged: tokenTypeIds has 3 values, inputIds 2/)
  t.throws(() => collate([{ inputIds: [1, 2.5] }]), /row 0 inputIds\[1\] is 2.5, not an int32 integer/)
  t.throws(() => collate([{ inputIds: [1], tokenTypeIds: [0] }, { inputIds: [1] }]), /row 1 has no tokenTypeIds while other rows have one/)
  t.throws(() => collate([{ inputIds: [1], label: 1 }, { inputIds: [1], label: [0, 1] }]), /labels of mixed types: row 0 has a number, row 1 an array/)
  t.throws(() => collate([{ inputIds: [1], label: 1 }, { inputIds: [1] }]), /row 1 has no label while other rows have one/)
  t.throws(() => collate([{ inputIds: [1], label: 'pos' }]), /row 0 label is "pos", not a number or an array of numbers/)
  t.throws(() => collate([{ inputIds: [1], labels: [1, 0] }, { inputIds: [1], labels: [1] }]), /multi-label rows differ in length: row 0 has 2 labels, row 1 1/)
  t.throws(() => collate([{ inputIds: [1], label: NaN }]), /row 0 label is NaN, not a finite number/)
  t.throws(() => DataCollatorWithPadding({ tokenizer: { padTokenId: undefined as unknown as number } }), /tokenizer must be a pad token id or have an integer padTokenId/)
  t.throws(() => DataCollatorWithPadding({ tokenizer: 0, padToMultipleOf: 0 }), /padToMultipleOf must be a positive integer/)
  t.throws(() => DataCollatorWithPadding({ tokenizer: 0, labelDtype: 'int32' })([{ inputIds: [1], label: 0.5 }]), /row 0 label 0.5 is not an int32 class id/)
})
