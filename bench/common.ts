// What the TypeScript benchmarks share: their "--name value" flags, the two
// medians they report, and the MiniLM shape several of them time.
import { join } from 'node:path'

/** The repository root (benchmarks run from dist/bench). */
export const REPO_ROOT = join(__dirname, '..', '..')

/** The command line after the script. */
export const args = process.argv.slice(2)

/** The value after --name, or the fallback when the flag (or its value) is absent. */
export function flag(name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback
}

/** flag() as a number. */
export function numberFlag(name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && i + 1 < args.length ? Number(args[i + 1]) : fallback
}

/** The median (the mean of the two middle values for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** The middle sample: the median for an odd count, the upper of the two middle values for an even one. */
export function middleSample(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

/** all-MiniLM-L6's shape (6 layers, hidden 384, 12 heads, intermediate 1536) with BERT's vocabulary and two labels. */
export const MINILM_SHAPE = { vocab_size: 30522, hidden_size: 384, num_hidden_layers: 6, num_attention_heads: 12, intermediate_size: 1536, max_position_embeddings: 512, type_vocab_size: 2, num_labels: 2 }
