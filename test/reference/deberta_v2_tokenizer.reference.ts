// Reference suite (not part of `npm test`: it needs ../shared and Python with
// transformers, tokenizers and sentencepiece). Runs
// test/oracles/deberta_tokenizer_reference.py, which trains a SentencePiece
// Unigram model on rotten tomatoes and writes DeBERTa-v3 style directories
// (spm.model + tokenizer_config.json, no tokenizer.json); then checks that
// bertkit's AutoTokenizer gives transformers' ids on every one of the 10,662
// sentences, on sentence pairs truncated longest-first, and on a probe text
// around every code point below U+30000, for the Hub's tokenizer_config.json
// and for do_lower_case, split_by_punct and add_prefix_space: false.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { runTokenizerOracle } from '../helpers/python.js'
import { AutoTokenizer, PreTrainedTokenizerFast, debertaV2TokenizerJson, readSentencePieceModel } from '../../lib/tokenization/index.js'

interface Variant {
  dir: string
  ids: number[][]
  pairIds: number[][]
  pairTypeIds: number[][]
  probeIds: number[][]
}
interface Reference {
  versions: Record<string, string>
  maxLength: number
  pairMaxLength: number
  sentences: string[]
  pairs: Array<[number, number]>
  probeCodepoints: number[]
  variants: Record<string, Variant>
}

const reference = runTokenizerOracle<Reference>('deberta_tokenizer_reference.py', 'DeBERTa-v2 tokenizer reference', 900_000)

function firstDifferences(got: number[][], want: number[][], label: (i: number) => string): { count: number; detail: string[] } {
  let count = 0
  const detail: string[] = []
  for (let i = 0; i < want.length; i++) {
    if (JSON.stringify(got[i]) === JSON.stringify(want[i])) continue
    count++
    if (detail.length < 10) detail.push(`${label(i)}\n  got  ${got[i].join(' ')}\n  want ${want[i].join(' ')}`)
  }
  return { count, detail }
}

const hex = (cp: number) => `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`
const probeText = (cp: number) => { const c = String.fromCodePoint(cp); return `a${c}b ${c}${c} ${c}b${c}` }

if (reference) {
  const ref = reference
  for (const [name, v] of Object.entries(ref.variants)) {
    t.test(`${name}: every sentence, pair and code point as transformers' DebertaV2Tokenizer from spm.model`, async (t) => {
      const tok = AutoTokenizer.fromDirectory(v.dir)
      const started = performance.now()
      const got = tok(ref.sentences, { truncation: true, maxLength: ref.maxLength })
      const ms = performance.now() - started
      const single = firstDifferences(got.inputIds, v.ids, (i) => `#${i} ${JSON.stringify(ref.sentences[i]).slice(0, 100)}`)
      t.equal(single.count, 0, `${ref.sentences.length - single.count}/${ref.sentences.length} sentences match${single.detail.length ? '\n' + single.detail.join('\n') : ''}`)
      t.comment(`${name}: ${ref.sentences.length} sentences in ${ms.toFixed(0)} ms, ${single.count} mismatches`)

      const pairs = tok(ref.pairs.map(([i]) => ref.sentences[i]), { textPair: ref.pairs.map(([, j]) => ref.sentences[j]), truncation: true, maxLength: ref.pairMaxLength })
      const pairLabel = (k: number) => `${ref.sentences[ref.pairs[k][0]]} || ${ref.sentences[ref.pairs[k][1]]}`
      const pairIds = firstDifferences(pairs.inputIds, v.pairIds, pairLabel)
      t.equal(pairIds.count, 0, `pairs truncated to ${ref.pairMaxLength}: ${ref.pairs.length - pairIds.count}/${ref.pairs.length} match${pairIds.detail.length ? '\n' + pairIds.detail.join('\n') : ''}`)
      t.equal(firstDifferences(pairs.tokenTypeIds, v.pairTypeIds, pairLabel).count, 0, 'pair token type ids')

      const probes = tok(ref.probeCodepoints.map(probeText)).inputIds
      const probe = firstDifferences(probes, v.probeIds, (i) => `${hex(ref.probeCodepoints[i])} ${JSON.stringify(probeText(ref.probeCodepoints[i]))}`)
      t.equal(probe.count, 0, `code points: ${ref.probeCodepoints.length - probe.count}/${ref.probeCodepoints.length} probe texts match${probe.detail.length ? '\n' + probe.detail.join('\n') : ''}`)
      if (probe.count > 0) {
        const all = probes.flatMap((row, i) => (JSON.stringify(row) === JSON.stringify(v.probeIds[i]) ? [hex(ref.probeCodepoints[i])] : [])).length
        t.comment(`${name}: ${all} probes match; the first mismatching code points: ${ref.probeCodepoints.filter((_, i) => JSON.stringify(probes[i]) !== JSON.stringify(v.probeIds[i])).slice(0, 40).map(hex).join(' ')}`)
      }

      // For the record: the same tokenizer.json run by @huggingface/tokenizers alone (no Rust-faithful pipeline).
      const config = JSON.parse(readFileSync(join(v.dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>
      const built = debertaV2TokenizerJson(readSentencePieceModel(join(v.dir, 'spm.model')), config, join(v.dir, 'spm.model'))
      const plain = new PreTrainedTokenizerFast(built.tokenizerJson, built.config)
      const plainSentences = firstDifferences(plain(ref.sentences, { truncation: true, maxLength: ref.maxLength }).inputIds, v.ids, () => '').count
      const plainProbes = firstDifferences(plain(ref.probeCodepoints.map(probeText)).inputIds, v.probeIds, () => '').count
      t.comment(`${name}: @huggingface/tokenizers alone: ${plainSentences} sentence and ${plainProbes} code point mismatches`)
    })
  }
}
