// bertkit bench, bertkit's side only (the HF side needs Python): each configuration
// runs --runs times and the table shows medians with their spread; the untimed
// warm-up leaves the timed run's numbers unchanged; --pad-to-multiple-of reaches
// the collator; bad fairness flags are refused by name.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { runBench } from '../../lib/cli/bench.js'

const model = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'bert', 'one_layer')

function tokenized(dir: string): string {
  // Lengths 3-14 over the fixture's 50-token vocabulary: several padded shapes, some rounding to 8 or 16.
  let s = 7
  const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648)
  const split = (n: number) => {
    const ids = Array.from({ length: n }, () => [1, ...Array.from({ length: 1 + Math.floor(rand() * 12) }, () => 3 + Math.floor(rand() * 40)), 2])
    return { input_ids: ids, labels: ids.map((r) => r.length % 2) }
  }
  const path = join(dir, 'data.json')
  writeFileSync(path, JSON.stringify({ train: split(40), test: split(20) }))
  return path
}

interface BenchJson { results: Array<{ library: string; strategy: string; run: number; trainLoss: number; evalF1: number; steps: number; warmupSeconds: number | null }> }

t.test('--runs 3: three runs per configuration, medians with the spread, warm-up recorded', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-bench-'))
  const data = tokenized(dir)
  const quiet = console.log
  console.log = () => {}
  try {
    await runBench(['--model', model, '--tokenized', data, '--strategies', 'full,head', '--max-steps', '2', '--runs', '3', '--pad-to-multiple-of', '8', '--out', join(dir, 'r')])
    await runBench(['--model', model, '--tokenized', data, '--strategies', 'full', '--max-steps', '2', '--runs', '1', '--pad-to-multiple-of', '8', '--no-warmup', '--out', join(dir, 'cold')])
  } finally {
    console.log = quiet
  }
  const warm = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8')) as BenchJson
  t.same(warm.results.map((r) => `${r.strategy}:${r.run}`), ['full:0', 'full:1', 'full:2', 'head:0', 'head:1', 'head:2'])
  t.ok(warm.results.every((r) => r.library === 'bertkit' && r.steps === 2 && typeof r.warmupSeconds === 'number' && r.warmupSeconds > 0), 'each run warmed up before its timings')
  const full = warm.results.filter((r) => r.strategy === 'full')
  t.ok(full.every((r) => r.trainLoss === full[0].trainLoss), 'repeated runs train the same thing (same seed)')
  const cold = JSON.parse(readFileSync(join(dir, 'cold.json'), 'utf8')) as BenchJson
  t.equal(cold.results[0].warmupSeconds, null, '--no-warmup: none')
  t.equal(cold.results[0].trainLoss, full[0].trainLoss, 'the warm-up does not change what the timed run computes (the Trainer reseeds)')
  const table = readFileSync(join(dir, 'r.md'), 'utf8')
  t.match(table, /3 run\(s\) each: medians, times as median \[min–max\]/)
  t.match(table, /padding to a multiple of 8/)
  t.match(table, /\| full \| fp32 \| bertkit \| [\d.]+ \[[\d.]+–[\d.]+\] \|/, 'train time as median [min–max]')
  t.match(table, /untimed warm-up at every train and eval shape/)
  t.match(readFileSync(join(dir, 'cold.md'), 'utf8'), /no warm-up \(--no-warmup/)
  rmSync(dir, { recursive: true, force: true })
})

t.test('bad fairness flags are refused by name', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-bench-'))
  const data = tokenized(dir)
  const base = ['--model', model, '--tokenized', data, '--out', join(dir, 'x')]
  await t.rejects(runBench([...base, '--runs', '0']), /--runs must be a positive integer, got 0/)
  await t.rejects(runBench([...base, '--runs', '2.5']), /--runs must be a positive integer, got 2.5/)
  await t.rejects(runBench([...base, '--pad-to-multiple-of', 'eight']), /--pad-to-multiple-of must be a positive integer, got eight/)
  await t.rejects(runBench([...base, '--hf-cudnn-sdpa', 'maybe']), /--hf-cudnn-sdpa must be on or off, got maybe/)
  await t.rejects(runBench([...base, '--hf-nan-inf-filter', '1']), /--hf-nan-inf-filter must be on or off, got 1/)
  rmSync(dir, { recursive: true, force: true })
})
