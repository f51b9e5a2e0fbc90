// Labels by name: datasets' class_encode_column (names sorted as Python
// sorts str, by code point), ClassLabel, and one encoding across splits with
// unknown labels reported by split, and by file and line when the rows have them.
import t from 'tap'
import { Dataset, setRowSource } from '../../lib/data/dataset.js'
import { ClassLabel, classEncodeColumn, classEncodeSplits, compareCodePoints, hasNamedLabels } from '../../lib/data/class_encode.js'

t.test('names are sorted by code point, as Python\'s sorted(str)', async (t) => {
  const values = ['b', 'a', 'é', 'Z', '\u{1F600}', '\uffff', 'a']
  const { dataset, classLabel } = classEncodeColumn(Dataset.fromColumns({ label: values, text: values.map((_, i) => `t${i}`) }), 'label')
  // Python: sorted({'b','a','é','Z','😀','\uffff'}) == ['Z', 'a', 'b', 'é', '\uffff', '😀']
  t.same(classLabel.names, ['Z', 'a', 'b', 'é', '\uffff', '\u{1F600}'], 'the astral character sorts after U+FFFF (JS\'s default sort would not)')
  t.same(dataset.column('label'), [2, 1, 3, 0, 5, 4, 1])
  t.same(dataset.column('text'), values.map((_, i) => `t${i}`), 'other columns are kept')
  t.ok(compareCodePoints('\u{1F600}', '\uffff') > 0)
  t.same(classLabel.id2label, { 0: 'Z', 1: 'a', 2: 'b', 3: 'é', 4: '\uffff', 5: '\u{1F600}' })
  t.same(classLabel.label2id.b, 2)
  t.equal(classLabel.int2str(3), 'é')
  t.equal(classLabel.str2int('nope'), undefined)
  t.throws(() => classLabel.int2str(6), /6 is not a class index \(0\.\.5\)/)
})

t.test('values are named by Python\'s str: numbers and booleans too', async (t) => {
  const { classLabel, dataset } = classEncodeColumn(Dataset.fromColumns({ label: [true, false, true] }), 'label')
  t.same(classLabel.names, ['False', 'True'])
  t.same(dataset.column('label'), [1, 0, 1])
  t.ok(hasNamedLabels(['pos', 'neg']))
  t.notOk(hasNamedLabels([0, 1, '2']), 'integers and integer strings are class indices')
})

t.test('one ClassLabel across splits; unknown and missing labels by split and row', async (t) => {
  const train = Dataset.fromColumns({ label: ['pos', 'neg', 'pos'] })
  const test = Dataset.fromColumns({ label: ['neg', 'pos'] })
  const { splits, classLabel } = classEncodeSplits({ train, test }, 'label')
  t.same(classLabel.names, ['neg', 'pos'])
  t.same(splits.test.column('label'), [0, 1])
  t.throws(() => classEncodeSplits({ train, test: Dataset.fromColumns({ label: ['neg', 'meh'] }) }, 'label'),
    /test split: the label at row 1 is "meh", not one of the 2 class names \("neg", "pos"\) from the train split/)
  t.throws(() => classEncodeSplits({ train: Dataset.fromColumns({ label: ['pos', null] }) }, 'label'), /train split: the label at row 1 is missing/)
  t.throws(() => classEncodeSplits({ train: Dataset.fromColumns({ label: ['pos', ' '] }) }, 'label'), /train split: the label at row 1 is empty/)
  // Rows that know their file (loadDataset records it) are named by file and line, through map too.
  const fromFile = setRowSource(Dataset.fromColumns({ label: ['neg', 'meh'] }), (i) => `dev.csv line ${i + 2}`)
  t.throws(() => classEncodeSplits({ train, dev: fromFile }, 'label'),
    /dev split: the label at dev\.csv line 3 \(row 1\) is "meh", not one of the 2 class names/)
  t.throws(() => classEncodeColumn(fromFile.map((r) => ({ label: r.label === 'meh' ? '' : r.label })), 'label'),
    /classEncodeColumn: the label at dev\.csv line 3 \(row 1\) is empty/)
  t.throws(() => classEncodeSplits({ validation: test }, 'label'), /no "train" split to take the class names from/)
  t.same(classEncodeSplits({ train }, 'label', { names: ['pos', 'neg'] }).splits.train.column('label'), [0, 1, 0], 'given names fix the order')
  t.throws(() => classEncodeColumn(train, 'labels'), /no label column "labels" \(columns: label\)/)
  t.throws(() => new ClassLabel(['a', 'a']), /"a" appears twice/)
  t.throws(() => new ClassLabel([]), /non-empty array/)
})
