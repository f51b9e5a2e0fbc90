// Length-aware batching as transformers' LengthGroupedSampler
// (trainer_pt_utils.get_length_grouped_indices), step for step: a random
// permutation cut into mega-batches of mega_batch_mult · batch_size indices
// (mega_batch_mult = min(n // (4 · batch_size), 50), at least 1), each sorted
// by length, longest first (a stable sort, as Python's sorted), then the
// longest element of all swapped into the very first place so an
// out-of-memory shows up at the first step. The Trainer passes
// batch_size = per-device batch × gradient accumulation steps, as
// transformers does. Only the permutation differs: transformers draws it
// from torch's global generator, bertkit from its seeded data-order
// generator; given the same permutation the order is the same
// (test/train/length_grouped.test.ts, against a fixture transformers wrote).

/** The order of one epoch: `permutation` (of 0..n-1) grouped by `lengths`. */
export function lengthGroupedIndices(lengths: ArrayLike<number>, batchSize: number, permutation: readonly number[], megaBatchMult?: number): number[] {
  const n = lengths.length
  if (permutation.length !== n) throw new Error(`lengthGroupedIndices: the permutation has ${permutation.length} entries for ${n} lengths`)
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`lengthGroupedIndices: batchSize must be a positive integer, got ${batchSize}`)
  const mult = megaBatchMult ?? Math.max(1, Math.min(Math.floor(n / (batchSize * 4)), 50))
  const size = mult * batchSize
  const megabatches: number[][] = []
  for (let i = 0; i < n; i += size) {
    megabatches.push(permutation.slice(i, i + size).sort((a, b) => lengths[b] - lengths[a]))
  }
  if (megabatches.length === 0) return []
  // torch.argmax: the first of equal maxima.
  let maxIdx = 0
  for (let m = 1; m < megabatches.length; m++) if (lengths[megabatches[m][0]] > lengths[megabatches[maxIdx][0]]) maxIdx = m
  ;[megabatches[0][0], megabatches[maxIdx][0]] = [megabatches[maxIdx][0], megabatches[0][0]]
  return megabatches.flat()
}
