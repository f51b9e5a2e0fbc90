// Metrics against values scikit-learn 1.x prints for the same inputs
// (computed once with sklearn.metrics and written here as literals).
import t from 'tap'
import { accuracy, precisionRecallF1, f1, argmaxRows } from '../../lib/train/metrics.js'

const yTrue = [0, 1, 2, 0, 1, 2, 0, 2, 2, 1]
const yPred = [0, 2, 1, 0, 0, 2, 0, 2, 1, 1]

const close = (a: number, b: number) => Math.abs(a - b) < 1e-12

t.test('multi-class averages as scikit-learn', (t) => {
  t.ok(close(accuracy(yTrue, yPred), 0.6))
  // sklearn: precision_recall_fscore_support(yTrue, yPred, average=...)
  const macro = precisionRecallF1(yTrue, yPred, { average: 'macro' })
  t.ok(close(macro.precision, 0.5833333333333334), `macro precision ${macro.precision}`)
  t.ok(close(macro.recall, 0.611111111111111), `macro recall ${macro.recall}`)
  t.ok(close(macro.f1, 0.5873015873015873), `macro f1 ${macro.f1}`)
  const micro = precisionRecallF1(yTrue, yPred, { average: 'micro' })
  t.ok(close(micro.f1, 0.6), `micro f1 ${micro.f1}`)
  const weighted = precisionRecallF1(yTrue, yPred, { average: 'weighted' })
  t.ok(close(weighted.precision, 0.5916666666666666), `weighted precision ${weighted.precision}`)
  t.ok(close(weighted.recall, 0.6), `weighted recall ${weighted.recall}`)
  t.ok(close(weighted.f1, 0.5857142857142857), `weighted f1 ${weighted.f1}`)
  t.throws(() => f1(yTrue, yPred), /average "binary" needs at most 2 classes, found 3/)
  t.end()
})

t.test('binary F1 and zero division', (t) => {
  t.ok(close(f1([0, 1, 1, 0, 1], [0, 1, 0, 0, 1]), 0.8))
  t.equal(f1([0, 0, 0], [0, 0, 0]), 0, 'no positives at all: 0 as sklearn (zero_division)')
  t.ok(close(precisionRecallF1([1, 0, 1, 1], [1, 1, 1, 0], { posLabel: 0 }).f1, 0), 'posLabel 0')
  t.throws(() => f1([1, 0], [1]), /yTrue has 2 items, yPred 1/)
  t.same(Array.from(argmaxRows([0.1, 0.9, 2, -1, 0, 0], 2)), [1, 0, 0], 'ties pick the first')
  t.end()
})
