// The text-to-tokens path of a SentencePiece-style tokenizer.json (Unigram
// model, Metaspace pre-tokenizer), written to do what the Rust tokenizers
// crate does where the JavaScript @huggingface/tokenizers does otherwise:
//
// - Strip uses Rust's char::is_whitespace (Unicode White_Space): JavaScript's
//   trim also strips U+FEFF and keeps U+0085 (cp1252's "…" in Latin-1 text).
// - Lowercase maps each character on its own, as Rust does: JavaScript's
//   toLowerCase turns a final Σ into ς.
// - Metaspace with split: true cuts the text before each "▁" and Punctuation
//   isolates each punctuation character; JavaScript's Metaspace never splits
//   and its Punctuation keeps runs ("...") together. Punctuation is Rust's
//   (ASCII punctuation and P* of its older Unicode tables, the same set as
//   the BERT pre-tokenizer's): the engine's newer \p{P} has more (143 more
//   below U+30000 with Node 20.20 / Unicode 17).
// - The Unigram Viterbi runs on each pre-token and fuses the unknown
//   characters inside it, and the unknown piece keeps its own score when it
//   is matched literally, as in Rust.
//
// Only the shapes below are taken; for anything else rustUnigramPipeline
// returns null and the JavaScript tokenizer is used as it is.
import * as tokenizers from '@huggingface/tokenizers'
import { PUNCTUATION as RUST_PUNCTUATION } from './bert_unicode_tables.js'
import { isPlainObject, type TokenizerJson } from './tokenization_utils_fast.js'

// Exported at run time, but the package's type declarations re-export it
// through extensionless paths that "nodenext" resolution cannot follow.
const { ReplaceNormalizer } = tokenizers as unknown as { ReplaceNormalizer: new (config: unknown) => { pattern: RegExp | null } }

/** Rust's Unigram puts unknown characters this far below the lowest piece score. */
const UNKNOWN_PENALTY = 10

type Step = (text: string) => string

/** text -> tokens (before the post-processor), or null when the tokenizer.json has a part this does not model. */
export function rustUnigramPipeline(json: TokenizerJson): ((text: string) => string[]) | null {
  const model = unigramModel(json.model)
  const normalize = normalizerSteps(json.normalizer ?? null)
  const preTokenizer = preTokenizerOf(json.pre_tokenizer ?? null)
  const splitAdded = addedTokenSplitter(json.added_tokens ?? [])
  if (model === null || normalize === null || preTokenizer === null || splitAdded === null) return null
  // "first" prepends "▁" only to the text at offset 0 of the input; a
  // normalizer that drops leading characters would move that offset in Rust.
  if (preTokenizer.prependScheme === 'first' && normalize.mayDropLeading) return null
  return (text: string) => {
    const tokens: string[] = []
    for (const segment of splitAdded(text)) {
      if (segment.added) {
        tokens.push(segment.text)
        continue
      }
      const normalized = normalize.run(segment.text)
      if (normalized === '') continue
      const words = preTokenizer.run(normalized, segment.start === 0)
      for (const word of words) tokens.push(...model.encode(word))
    }
    return tokens
  }
}

// ---- added tokens -------------------------------------------------------------

interface Segment { text: string; start: number; added: boolean }

/** Splits out the added tokens, matched leftmost-longest on the raw text (all must be normalized: false, without strip options). */
function addedTokenSplitter(added: unknown): ((text: string) => Segment[]) | null {
  if (!Array.isArray(added)) return null
  const contents: string[] = []
  for (const token of added) {
    if (!isPlainObject(token) || typeof token.content !== 'string' || token.content === '') return null
    if (token.normalized === true || token.lstrip === true || token.rstrip === true || token.single_word === true) return null
    contents.push(token.content)
  }
  // An alternation takes its first matching alternative, so longest first gives leftmost-longest.
  contents.sort((a, b) => b.length - a.length)
  const pattern = contents.length === 0 ? null : new RegExp(contents.map(escapeRegExp).join('|'), 'gu')
  return (text: string) => {
    const segments: Segment[] = []
    let last = 0
    if (pattern !== null) {
      for (const match of text.matchAll(pattern)) {
        if (match.index > last) segments.push({ text: text.slice(last, match.index), start: last, added: false })
        segments.push({ text: match[0], start: match.index, added: true })
        last = match.index + match[0].length
      }
    }
    if (last < text.length) segments.push({ text: text.slice(last), start: last, added: false })
    return segments
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

// ---- normalizer -----------------------------------------------------------------

const TRAILING_WHITE_SPACE = /\p{White_Space}+$/u
const LEADING_WHITE_SPACE = /^\p{White_Space}+/u

/** Rust's NormalizedString::lowercase: char by char, so Σ is always σ (JavaScript makes a final Σ ς). */
function lowercaseEachChar(text: string): string {
  if (!text.includes('\u03a3')) return text.toLowerCase()
  let out = ''
  for (const c of text) out += c.toLowerCase()
  return out
}

function normalizerSteps(config: unknown): { run: Step; mayDropLeading: boolean } | null {
  if (config === null) return { run: (t) => t, mayDropLeading: false }
  if (!isPlainObject(config)) return null
  const list = config.type === 'Sequence' ? config.normalizers : [config]
  if (!Array.isArray(list)) return null
  const steps: Step[] = []
  let mayDropLeading = false
  for (const n of list) {
    if (!isPlainObject(n)) return null
    switch (n.type) {
      case 'Lowercase':
        steps.push(lowercaseEachChar)
        break
      case 'NFC': case 'NFD': case 'NFKC': case 'NFKD': {
        const form = n.type
        steps.push((t) => t.normalize(form))
        break
      }
      case 'Strip': {
        const left = n.strip_left === true
        const right = n.strip_right === true
        if (left) mayDropLeading = true
        steps.push((t) => {
          if (left) t = t.replace(LEADING_WHITE_SPACE, '')
          if (right) t = t.replace(TRAILING_WHITE_SPACE, '')
          return t
        })
        break
      }
      case 'Replace': {
        if (typeof n.content !== 'string' || !isPlainObject(n.pattern)) return null
        // The JavaScript library translates the Rust (Oniguruma) pattern, \s as White_Space included.
        const pattern = new ReplaceNormalizer(n).pattern
        if (pattern === null) return null
        const content = n.content
        if (content === '') mayDropLeading = true
        steps.push((t) => t.replace(pattern, () => content))
        break
      }
      default:
        return null
    }
  }
  return { run: (text) => steps.reduce((t, step) => step(t), text), mayDropLeading }
}

// ---- pre-tokenizer --------------------------------------------------------------

/** ASCII punctuation and Unicode P*, as the Rust Punctuation pre-tokenizer has them (its is_punc is BERT's). */
const PUNCTUATION = codePointSet(RUST_PUNCTUATION)

/** "21-2f,a1" -> the code points listed (hexadecimal, first-last ranges). */
function codePointSet(list: string): Set<number> {
  const set = new Set<number>()
  for (const item of list.split(',')) {
    const [first, last = first] = item.split('-').map((h) => parseInt(h, 16))
    for (let cp = first; cp <= last; cp++) set.add(cp)
  }
  return set
}

interface PreTokenizer {
  prependScheme: 'always' | 'first' | 'never' | null
  run(text: string, atInputStart: boolean): string[]
}

function preTokenizerOf(config: unknown): PreTokenizer | null {
  if (config === null) return { prependScheme: null, run: (t) => [t] }
  if (!isPlainObject(config)) return null
  const list = config.type === 'Sequence' ? config.pretokenizers : [config]
  if (!Array.isArray(list)) return null
  const stages: Array<(pieces: string[], atInputStart: boolean) => string[]> = []
  let prependScheme: PreTokenizer['prependScheme'] = null
  for (const p of list) {
    if (!isPlainObject(p)) return null
    if (p.type === 'Punctuation' && String(p.behavior ?? 'Isolated').toLowerCase() === 'isolated') {
      stages.push((pieces) => pieces.flatMap(isolatePunctuation))
    } else if (p.type === 'Metaspace' && typeof p.replacement === 'string' && [...p.replacement].length === 1) {
      const scheme = p.prepend_scheme ?? 'always'
      if (scheme !== 'always' && scheme !== 'first' && scheme !== 'never') return null
      if (prependScheme !== null) return null
      prependScheme = scheme
      const replacement = p.replacement
      const split = p.split !== false
      stages.push((pieces, atInputStart) => pieces.flatMap((piece, i) => {
        let text = piece.replaceAll(' ', replacement)
        const prepend = scheme === 'always' || (scheme === 'first' && atInputStart && i === 0)
        if (prepend && !text.startsWith(replacement)) text = replacement + text
        return split ? splitBeforeEach(text, replacement) : [text]
      }))
    } else {
      return null
    }
  }
  return { prependScheme, run: (text, atInputStart) => stages.reduce((pieces, stage) => stage(pieces, atInputStart), [text]) }
}

/** Each punctuation character on its own, the text between kept whole (Rust's SplitDelimiterBehavior::Isolated). */
function isolatePunctuation(text: string): string[] {
  const out: string[] = []
  let run = ''
  for (const c of text) {
    if (PUNCTUATION.has(c.codePointAt(0)!)) {
      if (run !== '') out.push(run)
      out.push(c)
      run = ''
    } else {
      run += c
    }
  }
  if (run !== '') out.push(run)
  return out
}

/** "▁a▁▁b" -> "▁a", "▁", "▁b" (Rust's MergedWithNext: the delimiter starts the next piece). */
function splitBeforeEach(text: string, delimiter: string): string[] {
  const out: string[] = []
  let start = 0
  for (let i = text.indexOf(delimiter, 1); i !== -1; i = text.indexOf(delimiter, i + delimiter.length)) {
    out.push(text.slice(start, i))
    start = i
  }
  if (start < text.length) out.push(text.slice(start))
  return out
}

// ---- Unigram model ----------------------------------------------------------------

interface UnigramModel { encode(word: string): string[] }

function unigramModel(config: unknown): UnigramModel | null {
  if (!isPlainObject(config) || config.type !== 'Unigram' || !Array.isArray(config.vocab)) return null
  if (config.byte_fallback === true) return null
  const unkId = config.unk_id
  if (typeof unkId !== 'number' || !Number.isInteger(unkId) || unkId < 0 || unkId >= config.vocab.length) return null
  const ids = new Map<string, number>()
  const scores: number[] = []
  let minScore = Infinity
  let longest = 0
  for (const [id, entry] of config.vocab.entries()) {
    if (!Array.isArray(entry) || typeof entry[0] !== 'string' || typeof entry[1] !== 'number') return null
    const [piece, score] = entry as [string, number]
    // A piece listed twice answers to its last id, as in Rust's HashMap.
    ids.set(piece, id)
    scores.push(score)
    minScore = Math.min(minScore, score)
    longest = Math.max(longest, [...piece].length)
  }
  const unknownScore = minScore - UNKNOWN_PENALTY

  return {
    /**
     * Best segmentation by total score (Viterbi). For each end position the
     * best path ending there is kept; candidates come in order of their start
     * and only a strictly better score replaces one, so ties go to the
     * longest last piece, as in Rust's encode_optimized.
     */
    encode(word: string): string[] {
      const chars = Array.from(word)
      const n = chars.length
      const bestScore = new Float64Array(n + 1)
      const bestStart = new Int32Array(n + 1).fill(-1)
      const bestId = new Int32Array(n + 1)
      for (let start = 0; start < n; start++) {
        if (start > 0 && bestStart[start] === -1) continue
        const base = bestScore[start]
        let piece = ''
        let singleCharPiece = false
        for (let end = start + 1; end <= Math.min(n, start + longest); end++) {
          piece += chars[end - 1]
          const id = ids.get(piece)
          if (id === undefined) continue
          if (end === start + 1) singleCharPiece = true
          const score = base + scores[id]
          if (bestStart[end] === -1 || score > bestScore[end]) {
            bestScore[end] = score
            bestStart[end] = start
            bestId[end] = id
          }
        }
        if (!singleCharPiece) {
          const score = base + unknownScore
          if (bestStart[start + 1] === -1 || score > bestScore[start + 1]) {
            bestScore[start + 1] = score
            bestStart[start + 1] = start
            bestId[start + 1] = unkId as number
          }
        }
      }
      // Walk back from the end; consecutive unknown pieces become one token (Rust's fuse_unk).
      const tokens: string[] = []
      let unknownRun = ''
      for (let end = n; end > 0; end = bestStart[end]) {
        const text = chars.slice(bestStart[end], end).join('')
        if (bestId[end] === unkId) {
          unknownRun = text + unknownRun
          continue
        }
        if (unknownRun !== '') tokens.push(unknownRun)
        unknownRun = ''
        tokens.push(text)
      }
      if (unknownRun !== '') tokens.push(unknownRun)
      return tokens.reverse()
    },
  }
}
