// loadDataset: split resolution from file names (the `datasets` rules), local
// CSV/TSV/JSON/JSONL/parquet files, Hub datasets through a fake Hub on
// 127.0.0.1 (with the parquet-conversion branch and configs), the raw
// rt-polarity 80/10/10 rule on small synthetic files, and bad input.
import t from 'tap'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Dataset } from '../../lib/data/dataset.js'
import { DATASET_ALIASES, canonicalDatasetId, loadDataset, loadRottenTomatoesRaw } from '../../lib/data/load_dataset.js'
import { configFolders, dataFilesOfOneFormat, resolveSplitsFromFileNames } from '../../lib/data/data_files.js'
import { readCsv, readJson, readParquet } from '../../lib/data/readers.js'
import { FIXTURES, fixtureHub, readTree } from '../fixtures/hub/server.js'
import { scratchDirs } from '../helpers/scratch.js'

const { root, fresh: dir } = scratchDirs('bertkit-data-')
function write(d: string, name: string, content: string | Buffer): string {
  const p = join(d, name)
  mkdirSync(join(p, '..'), { recursive: true })
  writeFileSync(p, content)
  return p
}
for (const k of ['HF_ENDPOINT', 'HF_TOKEN', 'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_HUB_CACHE', 'HF_HOME']) delete process.env[k]
process.env.HF_TOKEN_PATH = join(root, 'no-token')

const LOCAL = join(FIXTURES, 'local')
const TRAIN_TEXT = ['a gorgeous, witty, seductive movie.', 'the film is strictly routine.', 'caf\u00e9 society, na\u00efve and charming \u2014 a delight.', 'boring and far too long.', "one of the year's best films!", 'a mess from start to finish.']

t.test('split resolution from file names, as the datasets library', async (t) => {
  const rt = ['.gitattributes', 'README.md', 'data/test-00000-of-00001.parquet', 'data/train-00000-of-00001.parquet', 'data/validation-00000-of-00001.parquet']
  t.same(resolveSplitsFromFileNames(rt), {
    train: ['data/train-00000-of-00001.parquet'],
    validation: ['data/validation-00000-of-00001.parquet'],
    test: ['data/test-00000-of-00001.parquet'],
  })
  t.same(Object.keys(resolveSplitsFromFileNames(rt)), ['train', 'validation', 'test'], 'train, validation, test order')
  t.same(resolveSplitsFromFileNames(['data/unsupervised-00000-of-00001.parquet', 'data/train-00001-of-00002.parquet', 'data/train-00000-of-00002.parquet', 'data/test-00000-of-00001.parquet']), {
    train: ['data/train-00000-of-00002.parquet', 'data/train-00001-of-00002.parquet'],
    test: ['data/test-00000-of-00001.parquet'],
    unsupervised: ['data/unsupervised-00000-of-00001.parquet'],
  }, 'sharded names: any word is a split, shards in order')
  t.same(resolveSplitsFromFileNames(['train.parquet', 'validation.parquet', 'test.parquet']), { train: ['train.parquet'], validation: ['validation.parquet'], test: ['test.parquet'] })
  t.same(resolveSplitsFromFileNames(['default/train/0000.parquet', 'default/train/0001.parquet', 'default/partial-test/0000.parquet']), {
    train: ['default/train/0000.parquet', 'default/train/0001.parquet'],
    test: ['default/partial-test/0000.parquet'],
  }, 'folder names, including the converter\'s partial-{split}')
  t.same(resolveSplitsFromFileNames(['dev.csv', 'my_train.csv', 'eval.csv']), { train: ['my_train.csv'], validation: ['dev.csv'], test: ['eval.csv'] }, 'keywords: dev, eval')
  t.same(resolveSplitsFromFileNames(['train/test.csv', 'test/x.csv']), { train: ['train/test.csv'], test: ['test/x.csv'] }, 'folder rule before file-name rule')
  t.same(resolveSplitsFromFileNames(['trainer.csv', 'contest.csv']), { train: ['contest.csv', 'trainer.csv'] }, 'keywords need delimiters; else all is train')
  t.same(resolveSplitsFromFileNames(['.hidden/train.csv', '__pycache__/test.csv', 'README.md', 'validation.csv']), { validation: ['validation.csv'] }, 'hidden and __ folders skipped')
  t.same(resolveSplitsFromFileNames([]), {})
  t.throws(() => resolveSplitsFromFileNames(['data/bad-name-00000-of-00001.parquet']), /split names must be words/)
  t.same(dataFilesOfOneFormat(['a.csv', 'b.csv', 'c.json', 'README.md']), { format: 'csv', files: ['a.csv', 'b.csv'] })
  t.same(dataFilesOfOneFormat(['a.csv', 'b.parquet'])?.format, 'parquet', 'ties: parquet')
  t.equal(dataFilesOfOneFormat(['x.py', 'README.md']), null)
  t.same(configFolders(['cola/train-00000-of-00001.parquet', 'sst2/train-00000-of-00001.parquet', 'README.md']), ['cola', 'sst2'])
  t.same(configFolders(['data/train-00000-of-00001.parquet']), [], '"data" is not a config')
  t.same(configFolders(['train/a.csv', 'test/b.csv']), [], 'split folders are not configs')
})

t.test('parquet: hyparquet with row groups, lists, nulls, int64, gzip and zstd', async (t) => {
  const c = await readParquet(join(LOCAL, 'sample.parquet'))
  t.same(c.names, ['text', 'label', 'score', 'tags', 'note'])
  t.same(c.columns, {
    text: ['first', 'second \u00e9', 'third', 'fourth', 'fifth'],
    label: [0, 1, 2, 1, 0],
    score: [0.5, -1.25, 3, 0, 2.5],
    tags: [['a'], [], ['b', 'c'], null, ['d']],
    note: ['x', null, 'z', null, 'w'],
  })
  t.equal(typeof c.columns.label[0], 'number', 'int64 narrowed to number')
  for (const codec of ['gzip', 'zstd']) {
    const d = await readParquet(join(LOCAL, `sample_${codec}.parquet`))
    t.same(d.columns, { text: c.columns.text, label: c.columns.label }, codec)
  }
  const bad = join(dir(), 'truncated.parquet')
  const bytes = readFileSync(join(LOCAL, 'sample.parquet'))
  writeFileSync(bad, bytes.subarray(0, bytes.length - 100))
  await t.rejects(readParquet(bad), { message: new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not a readable parquet file`) })
  const garbled = join(dir(), 'garbled.parquet')
  const copy = Buffer.from(bytes)
  copy.fill(0x41, 4, 400)
  writeFileSync(garbled, copy)
  await t.rejects(readParquet(garbled), /garbled\.parquet: corrupt or unsupported parquet data/)
  await t.rejects(readParquet(join(root, 'missing.parquet')), /missing\.parquet: cannot read the file/)
})

t.test('CSV and TSV: quoting, BOM, pandas-like types, empty cells', async (t) => {
  const d = dir()
  const p = write(d, 'a.csv', '\ufefftext,label,score,flag,empty\n"hello, world",1,0.5,True,\n"two\nlines ""quoted""",0,1e3,false,\nplain,2,-3,TRUE,\n')
  const c = readCsv(p)
  t.same(c.names, ['text', 'label', 'score', 'flag', 'empty'])
  t.same(c.columns.text, ['hello, world', 'two\nlines "quoted"', 'plain'])
  t.same(c.columns.label, [1, 0, 2])
  t.same(c.columns.score, [0.5, 1000, -3])
  t.same(c.columns.flag, [true, false, true])
  t.same(c.columns.empty, [null, null, null])
  const tsv = write(d, 'b.tsv', 'text\tlabel\nx, y\t1\n007\t0\n')
  t.same(readCsv(tsv).columns, { text: ['x, y', '007'], label: [1, 0] })
  t.same(readCsv(write(d, 'zip.csv', 'code\n007\n12\n')).columns.code, [7, 12], 'leading zeros parse as pandas does')
  t.throws(() => readCsv(write(d, 'empty.csv', '')), /empty\.csv: the file is empty/)
  t.throws(() => readCsv(write(d, 'ragged.csv', 'a,b\n1,2\n3\n')), /ragged\.csv: not valid CSV/)
  t.throws(() => readCsv(write(d, 'dup.csv', 'a,a\n1,2\n')), /dup\.csv: header names the column "a" twice/)
})

t.test('JSON and JSON Lines', async (t) => {
  const d = dir()
  t.same(readJson(write(d, 'rows.json', '[{"text":"a","label":1},{"text":"b"}]')).columns, { text: ['a', 'b'], label: [1, null] }, 'a missing key is null')
  t.same(readJson(write(d, 'cols.json', '{"text":["a","b"],"label":[0,1]}')).columns, { text: ['a', 'b'], label: [0, 1] })
  t.same(readJson(write(d, 'field.json', '{"version":1,"data":[{"text":"a","label":0}]}'), { field: 'data' }).columns, { text: ['a'], label: [0] })
  t.same(readJson(write(d, 'lines.jsonl', '{"text":"a","label":0}\n\n{"text":"b","label":1}\n')).columns, { text: ['a', 'b'], label: [0, 1] })
  t.same(readJson(write(d, 'lines_in.json', '{"text":"a"}\n{"text":"b"}\n')).columns, { text: ['a', 'b'] }, 'JSON Lines in a .json file')
  t.throws(() => readJson(write(d, 'bad.jsonl', '{"text":"a"}\n{"text": oops}\n')), /bad\.jsonl: line 2 is not valid JSON/)
  t.throws(() => readJson(write(d, 'scalar.jsonl', '{"a":1}\n[1]\n')), /scalar\.jsonl: line 2 is not a JSON object/)
  t.throws(() => readJson(write(d, 'bad.json', '{"text": [1, 2}')), /bad\.json: not valid JSON/)
  t.throws(() => readJson(write(d, 'meta.json', '{"version":1,"data":[]}')), /meta\.json: a JSON object that is not a table of equal-length columns; .*field/)
  t.throws(() => readJson(write(d, 'nofield.json', '{"x":[]}'), { field: 'data' }), /nofield\.json: has no top-level key "data"/)
})

t.test('loadDataset on local files: builders with dataFiles, folders, single files, globs', async (t) => {
  const d = dir()
  const a = write(d, 'part1.csv', 'text,label\nx,0\ny,1\n')
  const b = write(d, 'part2.csv', 'text,label\nz,1\n')
  const te = write(d, 'eval.csv', 'text,label\nw,0\n')
  const dict = await loadDataset('csv', { dataFiles: { train: [a, b], test: te } })
  t.same(Object.keys(dict), ['train', 'test'])
  t.ok(dict.train instanceof Dataset)
  t.same(dict.train.column('text'), ['x', 'y', 'z'], 'files of a split are concatenated in order')
  t.same(dict.test.column('label'), [0])
  const globbed = await loadDataset('csv', { dataFiles: { train: join(d, 'part*.csv') } })
  t.same(globbed.train.column('text'), ['x', 'y', 'z'])
  const folder = await loadDataset(d)
  t.same(Object.keys(folder), ['test'], 'as in datasets: once a keyword matches, files without one (part*.csv) are left out')
  const kd = dir()
  write(kd, 'data/train.csv', 'text,label\nx,0\ny,1\n')
  write(kd, 'data/dev.csv', 'text,label\nv,1\n')
  const keyed = await loadDataset(kd)
  t.same(Object.keys(keyed), ['train', 'validation'])
  t.same(keyed.validation.column('text'), ['v'])
  t.same((await loadDataset('csv', { dataFiles: join(kd, '**', '*.csv') })).train.column('text'), ['v', 'x', 'y'], '** reaches into folders; matches in sorted order')
  await t.rejects(loadDataset('csv', { dataFiles: join(kd, '*.csv') }), /no file matches/, '* stays in its folder')
  const one = await loadDataset(write(d, 'only.jsonl', '{"text":"q","label":1}\n'))
  t.same(Object.keys(one), ['train'])
  const split = await loadDataset(join(LOCAL, 'sample.parquet'), { split: 'train' })
  t.ok(split instanceof Dataset)
  t.equal(split.length, 5)
  const jd = dir()
  write(jd, 'train.jsonl', '{"sentence":"a","y":0}\n')
  write(jd, 'validation.jsonl', '{"sentence":"b","y":1}\n')
  const j = await loadDataset('json', { dataFiles: { train: join(jd, 'train.jsonl'), validation: join(jd, 'validation.jsonl') }, textColumn: 'sentence', labelColumn: 'y' })
  t.same(j.validation.column('sentence'), ['b'])
  await t.rejects(loadDataset('csv'), /pass dataFiles/)
  await t.rejects(loadDataset(kd, { split: 'test' }), /has no split "test" \(splits: train, validation\)/)
})

t.test('loadDataset: bad input names the file', async (t) => {
  const d = dir()
  const header = write(d, 'header_only.csv', 'text,label\n')
  await t.rejects(loadDataset('csv', { dataFiles: header }), /header_only\.csv: split "train" has no rows/)
  t.equal((await loadDataset('csv', { dataFiles: header, allowEmpty: true })).train.length, 0, 'allowEmpty')
  const good = write(d, 'good.csv', 'sentence,label\nhi,1\n')
  await t.rejects(loadDataset('csv', { dataFiles: good, textColumn: 'text' }), /good\.csv: split "train" has no text column "text" \(columns: sentence, label\)/)
  await t.rejects(loadDataset('csv', { dataFiles: good, labelColumn: 'labels' }), /good\.csv: split "train" has no label column "labels"/)
  const nonString = write(d, 'numbers.csv', 'text,label\n12,1\n')
  await t.rejects(loadDataset('csv', { dataFiles: nonString, textColumn: 'text' }), /numbers\.csv: split "train", row 0: text column "text" holds 12, not a string/)
  const missingLabel = write(d, 'nolabel.jsonl', '{"text":"a","label":1}\n{"text":"b"}\n')
  await t.rejects(loadDataset(missingLabel, { labelColumn: 'label' }), /nolabel\.jsonl: split "train", row 1: label column "label" holds null/)
  const other = write(d, 'other.csv', 'text,y\nz,1\n')
  await t.rejects(loadDataset('csv', { dataFiles: [good, other] }), /other\.csv: its columns \(text, y\) differ from those of .*good\.csv/)
  await t.rejects(loadDataset(join(d, 'nope.csv')), /nope\.csv: no such file or folder/)
  await t.rejects(loadDataset(write(d, 'notes.txt', 'x')), /notes\.txt: unknown data format/)
  await t.rejects(loadDataset('csv', { dataFiles: join(d, 'missing.csv') }), /missing\.csv: cannot read the file/)
  await t.rejects(loadDataset('csv', { dataFiles: join(d, 'zzz*.csv') }), /no file matches "zzz\*\.csv"/)
})

// The raw rt-polarity rule on 16 + 16 synthetic lines: i1 = int(16*0.8+0.5) = 13
// (plain truncation would give 12), i2 = int(16*0.9+0.5) = 14.
t.test('raw rt-polarity files: Latin-1, split on \\n only, strip, 80/10/10 with positives first', async (t) => {
  const d = dir()
  const posLines: Buffer[] = []
  const negLines: Buffer[] = []
  for (let i = 0; i < 16; i++) {
    posLines.push(Buffer.from(`pos ${i} `, 'latin1'))
    negLines.push(Buffer.from(` neg ${i}`, 'latin1'))
  }
  // 0xe9 is é; 0x97 and 0x85 are cp1252 bytes kept as U+0097/U+0085; 0x85 is no line break,
  // but Python's strip() removes it at the ends, as it does \r.
  posLines[0] = Buffer.concat([Buffer.from('caf'), Buffer.from([0xe9]), Buffer.from(' '), Buffer.from([0x97]), Buffer.from(' ok'), Buffer.from([0x85]), Buffer.from(' more'), Buffer.from([0x85])])
  negLines[15] = Buffer.from('windows line\r', 'latin1')
  writeFileSync(join(d, 'rt-polarity.pos'), Buffer.concat(posLines.flatMap((l) => [l, Buffer.from('\n')])))
  writeFileSync(join(d, 'rt-polarity.neg'), Buffer.concat(negLines.flatMap((l) => [l, Buffer.from('\n')])))
  const dict = loadRottenTomatoesRaw(d)
  t.same(Object.keys(dict), ['train', 'validation', 'test'])
  t.same([dict.train.length, dict.validation.length, dict.test.length], [26, 2, 4])
  t.equal(dict.train.get(0).text, 'caf\u00e9 \u0097 ok\u0085 more')
  t.same(dict.train.column('label'), [...Array(13).fill(1), ...Array(13).fill(0)])
  t.same(dict.train.column('text').slice(12, 14), ['pos 12', 'neg 0'], 'positives first, then negatives, stripped')
  t.same(dict.validation.column('text'), ['pos 13', 'neg 13'])
  t.same(dict.validation.column('label'), [1, 0])
  t.same(dict.test.column('text'), ['pos 14', 'pos 15', 'neg 14', 'windows line'])
  const viaLoad = await loadDataset('rotten_tomatoes', { rawDir: d })
  t.same(viaLoad.test.column('text'), dict.test.column('text'))
  await t.rejects(loadDataset('imdb', { rawDir: d }), /rawDir is only for "rotten_tomatoes"/)
  t.throws(() => loadRottenTomatoesRaw(dir()), /rt-polarity\.pos: cannot read the rt-polarity file/)
})

t.test('Hub datasets through a fake Hub: parquet splits, cache, offline, alias, conversion branch, configs', async (t) => {
  const hub = fixtureHub()
  const tomatoes = readTree(join(FIXTURES, 'dataset'))
  const parquet = (split: string) => tomatoes.get(`data/${split}-00000-of-00001.parquet`)!
  hub.addRepo({ type: 'dataset', id: 'cornell-movie-review-data/rotten_tomatoes', commit: '4'.repeat(40), files: tomatoes, lfs: new Set() })
  hub.addRepo({
    type: 'dataset',
    id: 'o/script-only',
    commit: '5'.repeat(40),
    files: new Map([['README.md', Buffer.from('# card')], ['script-only.py', Buffer.from('# a loading script')]]),
    lfs: new Set(),
    branches: new Map([['refs/convert/parquet', { commit: '6'.repeat(40), files: new Map([['default/train/0000.parquet', parquet('train')], ['default/test/0000.parquet', parquet('test')]]), lfs: new Set<string>() }]]),
  })
  hub.addRepo({
    type: 'dataset',
    id: 'o/multi',
    commit: '7'.repeat(40),
    files: new Map([['cola/train-00000-of-00001.parquet', parquet('train')], ['sst2/train-00000-of-00001.parquet', parquet('validation')], ['sst2/test-00000-of-00001.parquet', parquet('test')]]),
    lfs: new Set(),
  })
  const endpoint = await hub.start()
  t.teardown(() => hub.close())
  const cacheDir = dir()
  const opts = { endpoint, cacheDir, progress: false }

  const dict = await loadDataset('bertkit-test/tiny-tomatoes', opts)
  t.same(Object.keys(dict), ['train', 'validation', 'test'])
  t.same(dict.train.column('text'), TRAIN_TEXT)
  t.same(dict.train.column('label'), [1, 0, 1, 0, 1, 0])
  t.same(dict.test.column('text'), ['a small gem.', 'tedious.'])
  hub.clearLog()
  const offline = await loadDataset('bertkit-test/tiny-tomatoes', { ...opts, offline: true })
  t.same(offline.validation.column('text'), dict.validation.column('text'))
  t.equal(hub.requests.length, 0, 'offline: from the cached snapshot')
  await t.rejects(loadDataset('bertkit-test/tiny-tomatoes', { ...opts, cacheDir: dir(), offline: true }), /dataset repo "bertkit-test\/tiny-tomatoes" is not in the cache .* HF_HUB_OFFLINE/)

  t.equal(canonicalDatasetId('rotten_tomatoes'), 'cornell-movie-review-data/rotten_tomatoes')
  t.equal(DATASET_ALIASES.rotten_tomatoes, 'cornell-movie-review-data/rotten_tomatoes')
  hub.clearLog()
  const rt = await loadDataset('rotten_tomatoes', opts)
  t.same(rt.train.column('text'), TRAIN_TEXT)
  t.match(hub.requests[0].url, /^\/api\/datasets\/cornell-movie-review-data\/rotten_tomatoes\/revision\/main/, 'the alias resolves to the canonical id')

  const converted = await loadDataset('o/script-only', opts)
  t.same(Object.keys(converted), ['train', 'test'], 'no data on main: refs/convert/parquet')
  t.same(converted.train.column('text'), TRAIN_TEXT)
  t.equal(readFileSync(join(cacheDir, 'datasets--o--script-only', 'refs', 'refs', 'convert', 'parquet'), 'utf8'), '6'.repeat(40), 'ref of the conversion branch nested as in Python')

  await t.rejects(loadDataset('o/multi', opts), /dataset repo "o\/multi" has several configurations \(cola, sst2\); pick one with \{ name/)
  const sst2 = await loadDataset('o/multi', { ...opts, name: 'sst2' })
  t.same(Object.keys(sst2), ['train', 'test'])
  t.equal(sst2.train.length, 2)
  await t.rejects(loadDataset('o/multi', { ...opts, name: 'mnli' }), /has no configuration "mnli" \(configurations: cola, sst2\)/)
  const byFiles = await loadDataset('o/multi', { ...opts, dataFiles: { train: 'sst2/test-*.parquet' } })
  t.same(byFiles.train.column('text'), ['a small gem.', 'tedious.'], 'dataFiles patterns against the repo')
  await t.rejects(loadDataset('o/missing', opts), /dataset repo "o\/missing" was not found/)
})
