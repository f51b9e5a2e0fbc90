// Training-step benchmark on this CPU with the recipe's real lengths: the
// MiniLM shape (6 layers, hidden 384, 12 heads, intermediate 1536, vocab
// 30522), batches of 16 rotten-tomatoes sentences (all-MiniLM-L6-v2
// tokenizer, shuffled) padded to their longest, forward + backward + clip +
// AdamW. bertkit padded and unpadded, fp32 and bf16 autocast; torch (HF
// BertForSequenceClassification, SDPA attention) fp32 and bf16 autocast, on
// the same batches and threads. Every configuration runs --reps times,
// interleaved, each rep timing --steps steps after --warmup untimed ones;
// reported: median [min–max] over reps of the per-rep median step, and the
// load average seen (the machine may be shared: compare only figures from
// one run).
//
// Usage: npm run bench:step -- --tokenized rt_minilm.json [--reps 3] [--steps 12] [--warmup 3]
//          [--threads 2] [--strategies full,head,index100] [--no-torch] [--out benchmarks/step-cpu]
// (rt_minilm.json: python3 bench/tokenize_rotten_tomatoes.py data/rotten_tomatoes MODEL_DIR rt_minilm.json)
import { spawnSync } from 'node:child_process'
import { writeFileSync, mkdirSync, readFileSync, mkdtempSync, rmSync } from 'node:fs'
import { join, dirname } from 'node:path'
import os from 'node:os'
import {
  BertConfig, BertForSequenceClassification, AdamW, clipGradNorm, tidy, tensor, manualSeed, autocast,
  freezeAllExcept, freezeIndexRange, setUnpadding, loadNative,
} from '../lib/index.js'
import { native } from '../lib/native.js'
import { args, MINILM_SHAPE, flag, median } from './common.js'

const tokenized = flag('tokenized', '')
if (!tokenized) throw new Error('usage: npm run bench:step -- --tokenized rt_minilm.json [--reps 3] [--steps 12] [--warmup 3] [--threads 2] [--strategies full,head,index100] [--no-torch]')
const reps = Number(flag('reps', '3'))
const steps = Number(flag('steps', '12'))
const warmup = Number(flag('warmup', '3'))
const threads = Number(flag('threads', '2'))
const strategies = flag('strategies', 'full,head,index100').split(',') as Strategy[]
const withTorch = !args.includes('--no-torch')
const outBase = flag('out', join('benchmarks', 'step-cpu'))
const batchSize = 16

type Strategy = 'full' | 'head' | 'index100'
const shape = MINILM_SHAPE

// The batches: the train split shuffled (a fixed LCG, so both sides get the same), batches of 16.
const data = JSON.parse(readFileSync(tokenized, 'utf8')) as { train: { input_ids: number[][]; labels: number[] } }
const order = data.train.input_ids.map((_, i) => i)
let lcg = 12345
for (let i = order.length - 1; i > 0; i--) {
  lcg = (lcg * 1103515245 + 12345) % 2147483648
  const j = lcg % (i + 1);
  [order[i], order[j]] = [order[j], order[i]]
}
const batches: number[][] = []
for (let b = 0; b < warmup + steps; b++) batches.push(order.slice(b * batchSize, (b + 1) * batchSize))
let real = 0, padded = 0
for (const idx of batches.slice(warmup)) {
  const lens = idx.map((i) => data.train.input_ids[i].length)
  real += lens.reduce((a, b) => a + b, 0)
  padded += Math.max(...lens) * lens.length
}

function collate(idx: number[]) {
  const rows = idx.map((i) => data.train.input_ids[i])
  const seq = Math.max(...rows.map((r) => r.length))
  const ids = new Int32Array(idx.length * seq), mask = new Int32Array(idx.length * seq)
  rows.forEach((r, b) => r.forEach((v, s) => { ids[b * seq + s] = v; mask[b * seq + s] = 1 }))
  return {
    inputIds: tensor(ids, { shape: [idx.length, seq], dtype: 'int32' }),
    attentionMask: tensor(mask, { shape: [idx.length, seq], dtype: 'int32' }),
    labels: tensor(Int32Array.from(idx.map((i) => data.train.labels[i])), { dtype: 'int32' }),
  }
}


interface Config { library: 'bertkit' | 'torch'; strategy: Strategy; precision: 'fp32' | 'bf16'; unpad: boolean }

const peakMiB = new Map<Config, number[]>()

function benchBertkit(c: Config): number {
  manualSeed(0)
  const model = new BertForSequenceClassification(new BertConfig(shape))
  model.train()
  if (c.strategy === 'head') freezeAllExcept(model, 'classifier')
  if (c.strategy === 'index100') freezeIndexRange(model, 0, 100)
  const trainable = model.parameters().filter((p) => p.requiresGrad)
  const optimizer = new AdamW(trainable, { lr: 2e-5, weightDecay: 0.01 })
  setUnpadding(c.unpad ? 'on' : 'off')
  native().emptyCache()
  native().resetPeakMemory()
  const times: number[] = []
  try {
    for (let s = 0; s < warmup + steps; s++) {
      const t0 = process.hrtime.bigint()
      tidy(() => {
        const batch = collate(batches[s])
        const loss = autocast(c.precision === 'bf16' ? 'bfloat16' : null, () => {
          const out = model.forward(batch)
          out.loss!.backward()
          return out.loss!
        })
        const clip = clipGradNorm(trainable, 1.0)
        optimizer.step({ gradScale: clip.coefficient })
        optimizer.zeroGrad()
        return loss.item()
      })
      if (s >= warmup) times.push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
    peakMiB.set(c, [...(peakMiB.get(c) ?? []), native().memoryStats().peakCpuBytes / 2 ** 20])
  } finally {
    setUnpadding('auto')
    optimizer.dispose()
    model.dispose()
  }
  return median(times)
}

function benchTorch(c: Config, batchFile: string): number | string {
  const script = join(__dirname, '..', '..', 'bench', 'bench_step_torch.py')
  const r = spawnSync('python3', [script, '--batches', batchFile, '--strategy', c.strategy, '--precision', c.precision,
    '--warmup', String(warmup), '--threads', String(threads)], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads) } })
  if (r.status !== 0) return (r.stderr || r.stdout).trim().split('\n').slice(-2).join(' | ')
  return (JSON.parse(r.stdout.trim().split('\n').pop()!) as { stepMs: number }).stepMs
}

function main() {
  native().setNumThreads(threads)
  const tmp = mkdtempSync(join(os.tmpdir(), 'bertkit-step-'))
  const batchFile = join(tmp, 'batches.json')
  writeFileSync(batchFile, JSON.stringify(batches.map((idx) => ({ input_ids: idx.map((i) => data.train.input_ids[i]), labels: idx.map((i) => data.train.labels[i]) }))))
  const configs: Config[] = []
  for (const strategy of strategies) {
    for (const precision of ['fp32', 'bf16'] as const) {
      configs.push({ library: 'bertkit', strategy, precision, unpad: false }, { library: 'bertkit', strategy, precision, unpad: true })
      if (withTorch) configs.push({ library: 'torch', strategy, precision, unpad: false })
    }
  }
  const results = new Map<Config, number[]>(configs.map((c) => [c, []]))
  const errors = new Map<Config, string>()
  const loads: number[] = []
  for (let rep = 0; rep < reps; rep++) {
    // Interleaved, the order rotating per rep, so a burst of load does not fall on one configuration.
    const turn = configs.map((_, i) => configs[(i + rep) % configs.length])
    for (const c of turn) {
      loads.push(os.loadavg()[0])
      const v = c.library === 'bertkit' ? benchBertkit(c) : benchTorch(c, batchFile)
      if (typeof v === 'number') results.get(c)!.push(v)
      else errors.set(c, v)
      process.stderr.write(`rep ${rep + 1}/${reps} ${c.library} ${c.strategy} ${c.precision}${c.library === 'bertkit' ? (c.unpad ? ' unpadded' : ' padded') : ''}: ${typeof v === 'number' ? `${v.toFixed(1)} ms` : v} (load ${os.loadavg()[0].toFixed(1)})\n`)
    }
  }
  rmSync(tmp, { recursive: true, force: true })
  const { addon } = loadNative()
  const fmt = (xs: number[]) => xs.length ? `${median(xs).toFixed(1)} [${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}]` : 'n/a'
  const lines = [
    '# Training step on this CPU: the recipe\'s real lengths, bertkit padded / unpadded, fp32 / bf16, vs torch',
    '',
    `MiniLM shape (6 layers, hidden 384, 12 heads, intermediate 1536, vocab 30522), batches of ${batchSize} rotten-tomatoes train sentences (all-MiniLM-L6-v2 ids from ${tokenized}, shuffled), each padded to its longest: real tokens are ${(100 * real / padded).toFixed(1)} % of the padded ones over the ${steps} timed batches. Forward + backward + clip_grad_norm + AdamW, ${threads} threads. torch: HF BertForSequenceClassification (SDPA attention), bf16 = torch.autocast('cpu', torch.bfloat16) around forward and loss.`,
    `Each configuration: ${reps} reps, interleaved; a rep = median of ${steps} steps after ${warmup} untimed. Shown: median [min–max] over reps, ms per step.`,
    `Machine: ${os.cpus()[0]?.model ?? 'unknown'} (${os.cpus().length} cores); bertkit GEMM: ${addon.getCpuGemm()}, bf16: ${addon.getCpuGemmBf16()}; date ${new Date().toISOString().slice(0, 10)}; load average (1 min) during the run: median ${median(loads).toFixed(1)} [${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}].`,
    `Command: \`npm run bench:step -- ${args.join(' ')}\``,
    '',
    'Peak MiB: the peak of live native tensor bytes during the steps (weights, gradients, optimizer state, activations), padded / unpadded.',
    '',
    '| strategy | precision | bertkit padded | bertkit unpadded | torch | bertkit unpadded / torch | bertkit unpadded bf16 / torch bf16 | bertkit peak MiB padded / unpadded |',
    '|---|---|---|---|---|---|---|---|',
  ]
  const find = (lib: string, s: Strategy, p: string, u: boolean) => configs.find((c) => c.library === lib && c.strategy === s && c.precision === p && (lib === 'torch' || c.unpad === u))!
  for (const strategy of strategies) {
    for (const precision of ['fp32', 'bf16'] as const) {
      const pad = results.get(find('bertkit', strategy, precision, false))!
      const unp = results.get(find('bertkit', strategy, precision, true))!
      const torchC = withTorch ? find('torch', strategy, precision, false) : null
      const tor = torchC ? results.get(torchC)! : []
      const torBf16 = withTorch ? results.get(find('torch', strategy, 'bf16', false))! : []
      const ratio = tor.length ? (median(unp) / median(tor)).toFixed(2) : (torchC && errors.get(torchC)) ? `error: ${errors.get(torchC)!.slice(0, 80)}` : 'n/a'
      const vsBf16 = torBf16.length ? (median(unp) / median(torBf16)).toFixed(2) : 'n/a'
      const mem = (u: boolean) => median(peakMiB.get(find('bertkit', strategy, precision, u)) ?? [NaN]).toFixed(0)
      lines.push(`| ${strategy} | ${precision} | ${fmt(pad)} | ${fmt(unp)} | ${fmt(tor)} | ${ratio} | ${precision === 'bf16' ? vsBf16 : ''} | ${mem(false)} / ${mem(true)} |`)
    }
  }
  const table = lines.join('\n') + '\n'
  mkdirSync(dirname(outBase) || '.', { recursive: true })
  writeFileSync(`${outBase}.md`, table)
  writeFileSync(`${outBase}.json`, JSON.stringify({ date: new Date().toISOString(), args, threads, loads,
    results: configs.map((c) => ({ ...c, stepMs: results.get(c), peakMiB: peakMiB.get(c) ?? null, error: errors.get(c) ?? null })) }, null, 2) + '\n')
  console.log(table)
}

main()
