// SetFit benchmark: `bertkit setfit` against Python setfit on rotten
// tomatoes, the same sampled examples on both sides (setfit's sample_dataset,
// checked by the sha256 of the sampled rows), several sample sizes and seeds.
// Runs alternate between the libraries (which goes first flips every seed) so
// that both see the same share of a shared machine's load. Results are
// appended to OUT.json after every run (a rerun skips what is there) and
// summarised in OUT.md.
//
//   node dist/bench/bench-setfit.js --model DIR --data-dir data/rotten_tomatoes \
//     --sizes 8,64 --seeds 0,1,2,3,4 --out benchmarks/setfit-cpu-minilm
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir, hostname } from 'node:os'
import { join, resolve } from 'node:path'

interface Run {
  library: 'bertkit' | 'setfit'
  numSamples: number
  seed: number
  accuracy: number
  trainSeconds: number
  evalSeconds: number
  processSeconds: number
  sampleSha256: string
  globalStep: number
  embeddingLoss: number | null
  startedAt: string
}

function flag(argv: string[], name: string, fallback?: string): string {
  const i = argv.indexOf(`--${name}`)
  if (i >= 0 && i + 1 < argv.length) return argv[i + 1]
  if (fallback !== undefined) return fallback
  throw new Error(`--${name} is required`)
}

const root = resolve(__dirname, '..', '..')

function runBertkit(model: string, dataDir: string, n: number, seed: number): Run {
  const dir = mkdtempSync(join(tmpdir(), 'bertkit-setfit-bench-'))
  const resultsFile = join(dir, 'results.json')
  const startedAt = new Date().toISOString()
  const t0 = performance.now()
  const p = spawnSync(process.execPath, [join(root, 'dist', 'lib', 'cli', 'main.js'), 'setfit', '--model', model, '--dataset', 'rotten_tomatoes',
    '--data-dir', dataDir, '--num-samples', String(n), '--seed', String(seed), '--output-dir', 'none', '--no-progress', '--results', resultsFile,
    '--device', 'cpu'], { encoding: 'utf8', maxBuffer: 1 << 26 })
  const processSeconds = (performance.now() - t0) / 1000
  if (p.status !== 0) throw new Error(`bertkit setfit failed (${p.status}): ${p.stderr}`)
  const r = JSON.parse(readFileSync(resultsFile, 'utf8'))
  rmSync(dir, { recursive: true, force: true })
  return {
    library: 'bertkit', numSamples: n, seed, accuracy: r.eval.accuracy, trainSeconds: r.train.trainRuntime, evalSeconds: r.eval.eval_runtime,
    processSeconds, sampleSha256: r.train.trainSampleSha256, globalStep: r.train.globalStep, embeddingLoss: r.train.embeddingLoss, startedAt,
  }
}

// torch's OpenMP threads spin while they wait by default. That is the fastest setting on a quiet
// machine (the default, as a user runs it); on a machine shared with other jobs the spinning made a
// MiniLM step ~10x slower (about 50 s instead of 5 s at load 10 on 2 cores), and
// `--omp-wait-policy passive` is torch's fastest setting there.
let PYTHON_ENV: Record<string, string> = {}

function runSetfit(python: string, model: string, dataDir: string, n: number, seed: number): Run {
  const dir = mkdtempSync(join(tmpdir(), 'setfit-bench-'))
  const resultsFile = join(dir, 'results.json')
  const startedAt = new Date().toISOString()
  const t0 = performance.now()
  const p = spawnSync(python, [join(root, 'test', 'oracles', 'setfit_reference.py'), 'run', '--model', model, '--data-dir', dataDir, '--num-samples', String(n),
    '--seed', String(seed), '--out', resultsFile], { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, ...PYTHON_ENV } })
  const processSeconds = (performance.now() - t0) / 1000
  if (p.status !== 0) throw new Error(`setfit_reference.py failed (${p.status}): ${p.stderr.slice(-4000)}`)
  const r = JSON.parse(readFileSync(resultsFile, 'utf8'))
  rmSync(dir, { recursive: true, force: true })
  return {
    library: 'setfit', numSamples: n, seed, accuracy: r.accuracy, trainSeconds: r.train_seconds, evalSeconds: r.eval_seconds, processSeconds,
    sampleSha256: r.train_sample_sha256, globalStep: r.global_step, embeddingLoss: r.embedding_loss, startedAt,
  }
}

function stats(xs: number[]) {
  const n = xs.length
  const mean = xs.reduce((a, b) => a + b, 0) / n
  const sd = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : NaN
  return { n, mean, sd, se: sd / Math.sqrt(n), min: Math.min(...xs), max: Math.max(...xs) }
}

function summary(runs: Run[], meta: Record<string, string>): string {
  const sizes = [...new Set(runs.map((r) => r.numSamples))].sort((a, b) => a - b)
  const lines: string[] = []
  lines.push('# SetFit on rotten tomatoes: bertkit vs Python setfit (CPU, all-MiniLM-L6-v2 body)', '')
  for (const [k, v] of Object.entries(meta)) lines.push(`- ${k}: ${v}`)
  lines.push('', '## Accuracy (test split, 1,066 sentences)', '',
    '| examples per class | library | seeds | mean accuracy | sd | standard error | per seed | |mean difference| within 1 SE of setfit? |',
    '|---|---|---|---|---|---|---|---|')
  for (const n of sizes) {
    const bk = runs.filter((r) => r.numSamples === n && r.library === 'bertkit').sort((a, b) => a.seed - b.seed)
    const py = runs.filter((r) => r.numSamples === n && r.library === 'setfit').sort((a, b) => a.seed - b.seed)
    for (const [name, rs] of [['bertkit', bk], ['setfit', py]] as const) {
      if (rs.length === 0) continue
      const s = stats(rs.map((r) => r.accuracy))
      const ps = stats(py.map((r) => r.accuracy))
      const verdict = name === 'bertkit' && py.length > 1 ? `${Math.abs(s.mean - ps.mean).toFixed(4)} vs SE ${ps.se.toFixed(4)}: ${Math.abs(s.mean - ps.mean) <= ps.se ? 'yes' : 'no'}` : ''
      lines.push(`| ${n} | ${name} | ${rs.map((r) => r.seed).join(', ')} | ${s.mean.toFixed(4)} | ${s.sd.toFixed(4)} | ${s.se.toFixed(4)} | ${rs.map((r) => r.accuracy.toFixed(4)).join(', ')} | ${verdict} |`)
    }
  }
  lines.push('', '## Wall time (seconds; min / mean / max over seeds)', '',
    '| examples per class | library | phase-1 steps | train (both phases) | evaluation (1,066 texts) | whole process (load + train + eval) |',
    '|---|---|---|---|---|---|')
  for (const n of sizes) {
    for (const name of ['bertkit', 'setfit'] as const) {
      const rs = runs.filter((r) => r.numSamples === n && r.library === name)
      if (rs.length === 0) continue
      const f = (xs: number[]) => {
        const s = stats(xs)
        return `${s.min.toFixed(1)} / ${s.mean.toFixed(1)} / ${s.max.toFixed(1)}`
      }
      lines.push(`| ${n} | ${name} | ${[...new Set(rs.map((r) => r.globalStep))].join(', ')} | ${f(rs.map((r) => r.trainSeconds))} | ${f(rs.map((r) => r.evalSeconds))} | ${f(rs.map((r) => r.processSeconds))} |`)
    }
    const bk = runs.filter((r) => r.numSamples === n && r.library === 'bertkit')
    const py = runs.filter((r) => r.numSamples === n && r.library === 'setfit')
    const ratios = bk.map((b) => {
      const p = py.find((r) => r.seed === b.seed)
      return p ? p.trainSeconds / b.trainSeconds : NaN
    }).filter((x) => Number.isFinite(x))
    if (ratios.length) {
      const s = stats(ratios)
      lines.push(`| ${n} | setfit / bertkit train time, per seed | | ${ratios.map((x) => x.toFixed(2)).join(', ')} (mean ${s.mean.toFixed(2)}) | | |`)
    }
  }
  const same = sizes.flatMap((n) => [...new Set(runs.filter((r) => r.numSamples === n).map((r) => r.seed))].map((seed) => {
    const shas = new Set(runs.filter((r) => r.numSamples === n && r.seed === seed).map((r) => r.sampleSha256))
    return `${n}/${seed}: ${shas.size === 1 ? 'same' : 'DIFFERENT'}`
  }))
  lines.push('', `Same sampled examples on both sides (sha256 of the sampled [text, label] rows; size/seed): ${same.join(', ')}.`, '')
  return lines.join('\n')
}

function main(argv: string[]): void {
  const model = resolve(flag(argv, 'model'))
  const dataDir = resolve(flag(argv, 'data-dir', join(root, 'data', 'rotten_tomatoes')))
  const sizes = flag(argv, 'sizes', '8,64').split(',').map(Number)
  const seeds = flag(argv, 'seeds', '0,1,2,3,4').split(',').map(Number)
  const out = flag(argv, 'out', join(root, 'benchmarks', 'setfit-cpu-minilm'))
  const python = flag(argv, 'python', 'python3')
  const only = flag(argv, 'only', 'both')
  const waitPolicy = flag(argv, 'omp-wait-policy', 'default')
  if (waitPolicy === 'passive') PYTHON_ENV = { OMP_WAIT_POLICY: 'PASSIVE' }
  else if (waitPolicy !== 'default') throw new Error(`--omp-wait-policy must be default or passive, got ${waitPolicy}`)
  const jsonPath = `${out}.json`
  const runs: Run[] = existsSync(jsonPath) ? JSON.parse(readFileSync(jsonPath, 'utf8')).runs : []
  const meta = {
    machine: `${hostname()}, ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} logical cores, shared with other jobs (timings are noisy; min / max show the spread)`,
    command: `node dist/bench/bench-setfit.js ${argv.join(' ')}`,
    model,
    data: `${dataDir} (raw rt-polarity files, Hugging Face's train / test split)`,
    python: `environment ${Object.keys(PYTHON_ENV).length ? JSON.stringify(PYTHON_ENV) : 'as a user runs it (OMP_WAIT_POLICY unset)'}, torch's default threads (2); bertkit: its default thread pool (2 threads)`,
    settings: 'setfit defaults: batch 16, 1 epoch of pairs (oversampling), body lr 2e-5, warm-up 10 %, LogisticRegression head; seed = sampling seed = training seed',
  }
  const save = () => {
    writeFileSync(jsonPath, JSON.stringify({ meta: { ...meta, updated: new Date().toISOString() }, runs }, null, 2) + '\n')
    writeFileSync(`${out}.md`, summary(runs, { ...meta, updated: new Date().toISOString() }))
  }
  for (const n of sizes) {
    for (const [k, seed] of seeds.entries()) {
      const order: Array<'bertkit' | 'setfit'> = k % 2 === 0 ? ['bertkit', 'setfit'] : ['setfit', 'bertkit']
      for (const lib of order) {
        if (only !== 'both' && only !== lib) continue
        if (runs.some((r) => r.library === lib && r.numSamples === n && r.seed === seed)) continue
        process.stderr.write(`bench-setfit: ${lib} ${n} per class, seed ${seed} ...\n`)
        const r = lib === 'bertkit' ? runBertkit(model, dataDir, n, seed) : runSetfit(python, model, dataDir, n, seed)
        process.stderr.write(`bench-setfit: ${lib} ${n}/${seed}: accuracy ${r.accuracy.toFixed(4)}, train ${r.trainSeconds.toFixed(1)} s, eval ${r.evalSeconds.toFixed(1)} s\n`)
        runs.push(r)
        save()
      }
    }
  }
  save()
}

main(process.argv.slice(2))
