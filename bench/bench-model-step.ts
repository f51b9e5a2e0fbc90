// Training-step benchmark on this CPU: a small BERT (the MiniLM shape: 6
// layers, hidden 384, 12 heads, intermediate 1536), batch 16, sequence 64,
// forward + backward + AdamW, for full fine-tuning, head only, and embeddings +
// lower half frozen — bertkit beside torch on the same threads and shapes.
// Usage: npm run bench:model [-- --steps 10 --threads 2 --no-torch]
import { spawnSync } from 'node:child_process'
import { writeFileSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import {
  BertConfig, BertForSequenceClassification, AdamW, clipGradNorm, tidy, tensor, manualSeed, memoryStats,
  freezeAllExcept, freezeEmbeddings, freezeEncoderLayers, parameterSummary, loadNative,
} from '../lib/index.js'
import { native } from '../lib/native.js'
import { args, MINILM_SHAPE, middleSample, numberFlag } from './common.js'

const steps = numberFlag('steps', 10)
const warmup = numberFlag('warmup', 2)
const threads = numberFlag('threads', 2)
const batch = numberFlag('batch', 16)
const seq = numberFlag('seq', 64)
const withTorch = !args.includes('--no-torch')

const shape = MINILM_SHAPE
type Strategy = 'full' | 'head' | 'embeddings+lower-half'
const strategies: Strategy[] = ['full', 'head', 'embeddings+lower-half']

function statusMiB(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'))
  return m ? Number(m[1]) / 1024 : NaN
}

/** Resets VmHWM so the next peak counts only what follows (Linux clear_refs). */
function resetPeakRss(): void {
  writeFileSync('/proc/self/clear_refs', '5')
}


function benchBertkit(strategy: Strategy) {
  manualSeed(0)
  const model = new BertForSequenceClassification(new BertConfig(shape))
  model.train()
  if (strategy === 'head') freezeAllExcept(model, 'classifier')
  if (strategy === 'embeddings+lower-half') {
    freezeEmbeddings(model)
    freezeEncoderLayers(model, 0, shape.num_hidden_layers / 2 - 1)
  }
  const trainable = model.parameters().filter((p) => p.requiresGrad)
  const optimizer = new AdamW(trainable, { lr: 2e-5, weightDecay: 0.01 })
  const ids = Int32Array.from({ length: batch * seq }, (_, i) => (i * 7919) % shape.vocab_size)
  const mask = Int32Array.from({ length: batch * seq }, (_, i) => (i % seq < seq - (Math.floor(i / seq) % 8) * 4 ? 1 : 0))
  const labels = Int32Array.from({ length: batch }, (_, i) => i % 2)
  native().emptyCache()
  native().resetPeakMemory()
  const baseline = memoryStats().cpuBytes
  // The same method as the torch side: RSS high-water during the steps minus RSS before, plus the weights.
  resetPeakRss()
  const rssBase = statusMiB('VmRSS')
  const times: number[] = []
  for (let s = 0; s < warmup + steps; s++) {
    const t0 = process.hrtime.bigint()
    tidy(() => {
      const out = model.forward({
        inputIds: tensor(ids, { shape: [batch, seq], dtype: 'int32' }),
        attentionMask: tensor(mask, { shape: [batch, seq], dtype: 'int32' }),
        labels: tensor(labels, { dtype: 'int32' }),
      })
      out.loss!.backward()
      const clip = clipGradNorm(trainable, 1.0)
      optimizer.step({ gradScale: clip.coefficient })
      optimizer.zeroGrad()
      return out.loss!.item()
    })
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    if (s >= warmup) times.push(ms)
  }
  const peakNative = memoryStats().peakCpuBytes
  const summary = parameterSummary(model)
  const peakRss = statusMiB('VmHWM') - rssBase + (summary.total * 4) / 2 ** 20
  optimizer.dispose()
  model.dispose()
  return { stepMs: middleSample(times), peakNativeMiB: peakNative / 2 ** 20, peakRssMiB: peakRss, baselineMiB: baseline / 2 ** 20, trainable: summary.trainable, total: summary.total }
}

function benchTorch(strategy: Strategy) {
  const script = join(__dirname, '..', '..', 'bench', 'bench_model_step_torch.py')
  const r = spawnSync('python3', [script, '--strategy', strategy, '--steps', String(steps), '--warmup', String(warmup),
    '--threads', String(threads), '--batch', String(batch), '--seq', String(seq)], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) } })
  if (r.status !== 0) return { error: (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ') }
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { stepMs: number; peakMiB: number; torch: string }
}

function main() {
  native().setNumThreads(threads)
  const { addon } = loadNative()
  const rows: Array<Record<string, unknown>> = []
  for (const strategy of strategies) {
    const ours = benchBertkit(strategy)
    // A separate process per torch run: its peak RSS is then its own.
    const theirs = withTorch ? benchTorch(strategy) : null
    rows.push({ strategy, bertkit: ours, torch: theirs })
    process.stderr.write(`${strategy}: bertkit ${ours.stepMs.toFixed(1)} ms${theirs && 'stepMs' in theirs ? `, torch ${theirs.stepMs.toFixed(1)} ms` : ''}\n`)
  }
  const full = (rows[0].bertkit as { stepMs: number }).stepMs
  const lines = [
    `# Training step: bertkit vs torch on this CPU`,
    ``,
    `MiniLM shape (6 layers, hidden 384, 12 heads, intermediate 1536, vocab 30522), batch ${batch}, sequence ${seq}, forward + backward + clip + AdamW, fp32, ${threads} threads, median of ${steps} steps after ${warmup} warm-up.`,
    `Machine: ${os.cpus()[0]?.model ?? 'unknown'} (${os.cpus().length} cores), ${new Date().toISOString().slice(0, 10)}; bertkit GEMM: ${addon.cpuGemm}. Command: \`npm run bench:model\`.`,
    `Peak memory: "peak RSS" is measured the same way for both (VmHWM reset before the steps, minus RSS before them, plus the weights' bytes; it counts allocator caches: bertkit's CPU block cache holds freed buffers for reuse). "bertkit tensors" is the peak of live native tensor bytes (weights, grads, optimizer state, activations).`,
    ``,
    `| strategy | trainable params | bertkit step (ms) | torch step (ms) | bertkit / torch time | speed-up vs full (bertkit) | bertkit peak RSS MiB | torch peak RSS MiB | bertkit tensors MiB |`,
    `|---|---|---|---|---|---|---|---|---|`,
  ]
  for (const r of rows) {
    const b = r.bertkit as ReturnType<typeof benchBertkit>
    const t = r.torch as { stepMs?: number; peakMiB?: number; error?: string } | null
    const ratio = t?.stepMs ? (b.stepMs / t.stepMs).toFixed(2) : 'n/a'
    lines.push(`| ${r.strategy} | ${b.trainable.toLocaleString('en-US')} | ${b.stepMs.toFixed(1)} | ${t?.stepMs?.toFixed(1) ?? (t?.error ? 'error' : 'n/a')} | ${ratio} | ${(full / b.stepMs).toFixed(2)}× | ${b.peakRssMiB.toFixed(0)} | ${t?.peakMiB?.toFixed(0) ?? 'n/a'} | ${b.peakNativeMiB.toFixed(0)} |`)
  }
  const out = join(__dirname, '..', '..', 'benchmarks')
  mkdirSync(out, { recursive: true })
  writeFileSync(join(out, 'model-step-cpu.md'), lines.join('\n') + '\n')
  writeFileSync(join(out, 'model-step-cpu.json'), JSON.stringify({ date: new Date().toISOString(), threads, batch, seq, steps, rows }, null, 2) + '\n')
  console.log(lines.join('\n'))
}

main()
