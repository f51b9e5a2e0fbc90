// Text files are decoded strictly: a CSV or JSON file that is not UTF-8 is an
// error naming the file and line (never text with U+FFFD in it), and the
// encoding option reads Latin-1 / Windows-1252 / UTF-16 files. Rows remember
// the file and line they came from, through map, select and shuffle.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadDataset } from '../../lib/data/load_dataset.js'
import { Dataset, describeRow } from '../../lib/data/dataset.js'
import { decodeText, firstInvalidUtf8 } from '../../lib/data/readers.js'

const root = mkdtempSync(join(tmpdir(), 'bertkit-encoding-'))
t.teardown(() => rmSync(root, { recursive: true, force: true }))
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

// "café" and a cp1252 curly quote (0x92) in Latin-1 / Windows-1252 bytes.
const latin1Csv = Buffer.concat([
  Buffer.from('text,label\nfine,1\n'),
  Buffer.from('caf'), Buffer.from([0xe9]), Buffer.from(' au lait,0\n'),
  Buffer.from('it'), Buffer.from([0x92]), Buffer.from('s good,1\n'),
])

t.test('invalid UTF-8 in CSV and JSON is an error naming file and line', async (t) => {
  const csv = join(root, 'latin1.csv')
  writeFileSync(csv, latin1Csv)
  await t.rejects(loadDataset('csv', { dataFiles: { train: csv } }), { message: new RegExp(`^${esc(csv)}: line 3 \\(byte 0xe9 at column 4\\) is not valid UTF-8; if the file is Latin-1 or Windows-1252, pass --encoding latin1 or cp1252`) })
  const jsonl = join(root, 'bad.jsonl')
  writeFileSync(jsonl, Buffer.concat([Buffer.from('{"text": "ok", "label": 0}\n{"text": "na'), Buffer.from([0xef, 0xbf]), Buffer.from('ve", "label": 1}\n')]))
  await t.rejects(loadDataset(jsonl), new RegExp(`${esc(jsonl)}: line 2 \\(byte 0xef at column 13\\) is not valid UTF-8`), 'a truncated 3-byte sequence')
  const json = join(root, 'bad.json')
  writeFileSync(json, Buffer.concat([Buffer.from('[{"text": "'), Buffer.from([0xc0, 0xaf]), Buffer.from('", "label": 0}]')]))
  await t.rejects(loadDataset(json), /bad\.json: line 1 \(byte 0xc0 at column 12\) is not valid UTF-8/, 'an overlong encoding')
  await t.rejects(loadDataset('csv', { dataFiles: { train: csv }, encoding: 'klingon' }), /unknown encoding "klingon"/)
})

t.test('the encoding option reads Latin-1, Windows-1252 and UTF-16', async (t) => {
  const csv = join(root, 'latin1-ok.csv')
  writeFileSync(csv, latin1Csv)
  const l1 = await loadDataset('csv', { dataFiles: { train: csv }, encoding: 'latin1', split: 'train' })
  t.same(l1.column('text'), ['fine', 'café au lait', 'it\u0092s good'], 'ISO-8859-1 as Python\'s latin-1: 0x92 is U+0092')
  const cp = await loadDataset('csv', { dataFiles: { train: csv }, encoding: 'cp1252', split: 'train' })
  t.same(cp.column('text'), ['fine', 'café au lait', 'it\u2019s good'], 'cp1252: 0x92 is a right single quote')
  const u16 = join(root, 'u16.csv')
  writeFileSync(u16, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('text,label\nnaïve,1\n', 'utf16le')]))
  const w = await loadDataset('csv', { dataFiles: { train: u16 }, encoding: 'utf-16le', split: 'train' })
  t.same(w.column('text'), ['naïve'])
  const utf8 = join(root, 'utf8.csv')
  writeFileSync(utf8, '\ufefftext,label\ncafé ☕ 𝄞,1\n')
  t.same((await loadDataset('csv', { dataFiles: { train: utf8 }, split: 'train' })).column('text'), ['café ☕ 𝄞'], 'valid UTF-8 (with a BOM) reads as before')
})

t.test('the UTF-8 check follows RFC 3629', async (t) => {
  const b = (...x: number[]) => Uint8Array.from(x)
  t.equal(firstInvalidUtf8(Buffer.from('plain ascii, é, €, 𝄞')), -1)
  t.equal(firstInvalidUtf8(b(0x61, 0x80)), 1, 'a lone continuation byte')
  t.equal(firstInvalidUtf8(b(0xc1, 0xbf)), 0, 'overlong 2-byte')
  t.equal(firstInvalidUtf8(b(0xe0, 0x80, 0x80)), 0, 'overlong 3-byte')
  t.equal(firstInvalidUtf8(b(0xed, 0xa0, 0x80)), 0, 'a UTF-16 surrogate')
  t.equal(firstInvalidUtf8(b(0xf4, 0x90, 0x80, 0x80)), 0, 'past U+10FFFF')
  t.equal(firstInvalidUtf8(b(0x61, 0x62, 0xe2, 0x82)), 2, 'cut short at the end')
  t.throws(() => decodeText(b(0x61, 0x0a, 0x0a, 0x62, 0xff), 'f.txt'), /f\.txt: line 3 \(byte 0xff at column 2\)/)
  t.throws(() => decodeText(b(0xe9), 'f.txt', 'ascii'), /line 1 \(byte 0xe9 at column 1\) is not ASCII/)
})

t.test('rows remember their file and line through map, select and shuffle', async (t) => {
  const a = join(root, 'a.csv')
  const bfile = join(root, 'b.jsonl')
  writeFileSync(a, 'text,label\nx,0\n"two\nlines",1\n\ny,0\n')
  writeFileSync(bfile, '{"text": "p", "label": 1}\n\n{"text": "q", "label": 0}\n')
  const ds = await loadDataset('csv', { dataFiles: { train: [a] }, split: 'train' })
  t.same([0, 1, 2].map((i) => describeRow(ds, i)), [`${a} line 2 (row 0)`, `${a} line 3 (row 1)`, `${a} line 6 (row 2)`], 'a quoted field spanning lines starts on its first; empty lines count')
  const both = await loadDataset('json', { dataFiles: { train: [bfile] }, split: 'train' })
  t.same([0, 1].map((i) => describeRow(both, i)), [`${bfile} line 1 (row 0)`, `${bfile} line 3 (row 1)`])
  const mapped = ds.map((r) => ({ n: String(r.text).length })).select([2, 0]).removeColumns(['text']).renameColumn('n', 'len')
  t.equal(describeRow(mapped, 0), `${a} line 6 (row 0)`)
  const shuffled = ds.shuffle({ seed: 3 })
  for (let i = 0; i < 3; i++) t.match(describeRow(shuffled, i), new RegExp(`line ${({ x: 2, 'two\nlines': 3, y: 6 } as Record<string, number>)[shuffled.get(i).text as string]} `))
  t.equal(describeRow(Dataset.fromRows([{ a: 1 }]), 0), 'row 0', 'rows made in memory: their index')
})
