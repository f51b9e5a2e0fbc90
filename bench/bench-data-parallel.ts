// Data parallel on this CPU: the Trainer's step time for the MiniLM shape (6
// layers, hidden 384, full fine-tuning, sequence 64) with a global batch of
// 16 split three ways:
//   A  1 process  x 2 threads, batch 16           (what one process does today)
//   B  2 processes x 1 thread, batch 8 each        (bertkit launch, Gloo over loopback)
//   C  1 process  x 1 thread, batch 8              (B's per-rank compute without communication)
// plus Gloo all-reduce timings between 2 processes (1 MiB, 25 MiB, all gradients).
// Configurations alternate, each repeated; medians with min-max spread. Besides
// wall time, the CPU time each step costs (all threads of all ranks, from
// process.cpuUsage()): on a machine shared with other jobs the wall clock
// mostly measures the others, CPU time much less so.
// Usage: node dist/bench/bench-data-parallel.js [--steps 12 --warmup 3 --reps 3]
//        node dist/bench/bench-data-parallel.js --allreduce-only   (2 ranks, the all-reduces alone, wall and CPU time)
import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { performance } from 'node:perf_hooks'
import { BertConfig, BertForSequenceClassification, manualSeed, tensor } from '../lib/index.js'
import { Dataset, type Row } from '../lib/data/dataset.js'
import { Trainer, type DataCollator } from '../lib/train/trainer.js'
import { TrainingArguments } from '../lib/train/training_args.js'
import { getDefaultGroup, initProcessGroup, type ProcessGroup } from '../lib/distributed/index.js'
import { empty } from '../lib/tensor/tensor.js'
import { loadNative } from '../lib/native.js'
import { MINILM_SHAPE, median } from './common.js'

const shape = MINILM_SHAPE
const SEQ = 64


// ---- worker: one training run (one rank of it) ------------------------------------

/** Gloo all-reduce alone: a first bucket, a full bucket, every gradient at once (wall and this rank's CPU time). */
async function allreduceTimes(group: ProcessGroup, params: number) {
  const sizes = { '1 MiB': 262144, '25 MiB': 6553600, 'all gradients': params }
  const out: Record<string, { ms: number; minMs: number; maxMs: number; busGBs: number; cpuMs: number }> = {}
  for (const [name, n] of Object.entries(sizes)) {
    const t = empty([n], { device: 'cpu' })
    t.buffer.write(new Float32Array(n).fill(1))
    const times: number[] = [], cpu: number[] = []
    for (let r = 0; r < 6; r++) {
      await group.barrier()
      const c0 = process.cpuUsage()
      const t0 = performance.now()
      await group.allReduce(t)
      times.push(performance.now() - t0)
      const c = process.cpuUsage(c0)
      cpu.push((c.user + c.system) / 1000)
    }
    t.dispose()
    const ms = median(times.slice(1))
    // Ring all-reduce moves 2 (n - 1) / n of the data through each rank's link (NCCL's "bus bandwidth").
    out[name] = { ms, minMs: Math.min(...times.slice(1)), maxMs: Math.max(...times.slice(1)), busGBs: (n * 4 * 2 * (group.worldSize - 1) / group.worldSize) / (ms / 1000) / 1e9, cpuMs: median(cpu.slice(1)) }
  }
  return out
}

async function worker(): Promise<void> {
  if (process.env.BENCH_ALLREDUCE_ONLY) {
    const group = await initProcessGroup({ device: 'cpu' })
    const params = [...new BertForSequenceClassification(new BertConfig(shape)).namedParameters()].reduce((n, [, p]) => n + p.numel, 0)
    console.log(`BENCH${group.rank === 0 ? '' : '-RANK'} ` + JSON.stringify({ rank: group.rank, params, allreduce: await allreduceTimes(group, params) }))
    return
  }
  const steps = Number(process.env.BENCH_STEPS), warmup = Number(process.env.BENCH_WARMUP), batch = Number(process.env.BENCH_BATCH)
  manualSeed(0)
  const model = new BertForSequenceClassification(new BertConfig(shape))
  const rows: Row[] = []
  let s = 12345
  const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648)
  for (let i = 0; i < 4096; i++) rows.push({ input_ids: Array.from({ length: SEQ }, () => 1000 + Math.floor(rand() * 20000)), label: i % 2 })
  const collator: DataCollator = (rs) => ({
    inputIds: tensor(Int32Array.from(rs.flatMap((r) => r.input_ids as number[])), { shape: [rs.length, SEQ], dtype: 'int32' }),
    attentionMask: tensor(new Int32Array(rs.length * SEQ).fill(1), { shape: [rs.length, SEQ], dtype: 'int32' }),
    labels: tensor(Int32Array.from(rs.map((r) => r.label as number)), { dtype: 'int32' }),
  })
  const out = mkdtempSync(join(os.tmpdir(), 'bertkit-bench-dp-'))
  const args = new TrainingArguments(out, {
    learningRate: 2e-5, weightDecay: 0.01, perDeviceTrainBatchSize: batch, maxSteps: warmup + steps, loggingSteps: 10_000,
    saveStrategy: 'no', disableTqdm: true, plotCurves: false, device: 'cpu',
  })
  const stamps: number[] = []
  const cpu: number[] = []
  const trainer = new Trainer({ model, args, trainDataset: Dataset.fromRows(rows), dataCollator: collator })
  trainer.addCallback({ onStepEnd: () => {
    stamps.push(performance.now())
    const u = process.cpuUsage()
    cpu.push((u.user + u.system) / 1000)
  } })
  const started = performance.now()
  await trainer.train()
  const stepMs = stamps.slice(warmup).map((t, i) => t - stamps[warmup - 1 + i])
  const cpuMs = cpu.slice(warmup).map((t, i) => t - cpu[warmup - 1 + i])
  const result: Record<string, unknown> = {
    rank: Number(process.env.RANK ?? 0), threads: loadNative().addon.getNumThreads(), batch, stepMs, cpuMs, totalS: (performance.now() - started) / 1000,
    params: [...model.namedParameters()].reduce((n, [, p]) => n + p.numel, 0),
  }
  const group = getDefaultGroup()
  if (group && group.worldSize > 1) result.allreduce = await allreduceTimes(group, result.params as number)
  trainer.dispose()
  model.dispose()
  rmSync(out, { recursive: true, force: true })
  console.log(`BENCH${Number(process.env.RANK ?? 0) === 0 ? '' : '-RANK'} ` + JSON.stringify(result))
}

// ---- orchestrator --------------------------------------------------------------------

function run(cmd: string[], env: Record<string, string>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, cmd, { env: { ...process.env, ...env, BERTKIT_DEVICE: 'cpu' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = '', stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('exit', (code) => {
      const line = stdout.split('\n').find((l) => l.startsWith('BENCH '))
      if (code !== 0 || !line) return reject(new Error(`${cmd.join(' ')} failed (${code}): ${stderr.slice(-2000)}`))
      const main = JSON.parse(line.slice(6))
      // Other ranks' CPU time counts too: the cost of a step is the whole job's.
      for (const other of stdout.split('\n').filter((l) => l.startsWith('BENCH-RANK '))) {
        const r = JSON.parse(other.slice(11))
        if (main.cpuMs) main.cpuMs = (main.cpuMs as number[]).map((v: number, i: number) => v + r.cpuMs[i])
      }
      resolve(main)
    })
  })
}

async function main(): Promise<void> {
  if (process.env.BENCH_WORKER) return worker()
  const argv = process.argv.slice(2)
  const opt = (name: string, fallback: number) => (argv.includes(`--${name}`) ? Number(argv[argv.indexOf(`--${name}`) + 1]) : fallback)
  const steps = opt('steps', 12), warmup = opt('warmup', 3), reps = opt('reps', 3)
  const self = __filename
  const main = join(__dirname, '..', 'lib', 'cli', 'main.js')
  if (argv.includes('--allreduce-only')) {
    const env = { BENCH_WORKER: '1', BENCH_ALLREDUCE_ONLY: '1', RANK: '', WORLD_SIZE: '', MASTER_ADDR: '', MASTER_PORT: '', BERTKIT_NUM_THREADS: '' }
    const runs = []
    for (let r = 0; r < reps; r++) runs.push(await run([main, 'launch', '--nproc-per-node', '2', '--threads-per-proc', '1', self], env))
    const report = {
      machine: `${os.cpus()[0].model} (${os.availableParallelism()} cores)`, date: new Date().toISOString().slice(0, 10), node: process.version,
      command: `node dist/bench/bench-data-parallel.js --allreduce-only --reps ${reps}`, loadAverage1m: os.loadavg()[0], runs: runs.map((x) => x.allreduce),
    }
    writeFileSync(join(__dirname, '..', '..', 'benchmarks', 'data-parallel-allreduce-cpu.json'), JSON.stringify(report, null, 2) + '\n')
    console.log(JSON.stringify(report, null, 2))
    return
  }
  const base = { BENCH_WORKER: '1', BENCH_STEPS: String(steps), BENCH_WARMUP: String(warmup), RANK: '', WORLD_SIZE: '', MASTER_ADDR: '', MASTER_PORT: '' }
  const configs = {
    'A: 1 process x 2 threads, batch 16': () => run([self], { ...base, BENCH_BATCH: '16', BERTKIT_NUM_THREADS: '2' }),
    'B: 2 processes x 1 thread, batch 8 each (Gloo)': () => run([main, 'launch', '--nproc-per-node', '2', '--threads-per-proc', '1', self], { ...base, BENCH_BATCH: '8', BERTKIT_NUM_THREADS: '' }),
    'C: 1 process x 1 thread, batch 8 (B without communication)': () => run([self], { ...base, BENCH_BATCH: '8', BERTKIT_NUM_THREADS: '1' }),
  }
  const load = [os.loadavg()[0]]
  const results: Record<string, Array<Record<string, unknown>>> = {}
  for (let r = 0; r < reps; r++) {
    for (const [name, go] of Object.entries(configs)) {
      process.stderr.write(`rep ${r + 1}/${reps}: ${name}\n`)
      ;(results[name] ??= []).push(await go())
      load.push(os.loadavg()[0])
    }
  }
  const summary = Object.entries(results).map(([name, runs]) => {
    const medians = runs.map((x) => median(x.stepMs as number[]))
    const cpu = runs.map((x) => median(x.cpuMs as number[]))
    // Samples one step trains: C's single process takes 8, A's and B's 16 (B: 8 on each of 2 ranks).
    const perStep = name.startsWith('C') ? 8 : 16
    return {
      name, stepMs: median(medians), minMs: Math.min(...medians), maxMs: Math.max(...medians), samplesPerS: perStep / (median(medians) / 1000), runs: medians,
      // CPU time per 16 samples (C's batch is 8: twice its step).
      cpuMsPer16: median(cpu) * (16 / (runs[0].batch as number) / (name.startsWith('B') ? 2 : 1)), cpuRuns: cpu,
    }
  })
  const allreduce = results['B: 2 processes x 1 thread, batch 8 each (Gloo)'].map((x) => x.allreduce as Record<string, { ms: number; busGBs: number }>)
  const report = {
    machine: `${os.cpus()[0].model} (${os.availableParallelism()} cores), ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    date: new Date().toISOString().slice(0, 10), node: process.version, command: `node dist/bench/bench-data-parallel.js --steps ${steps} --warmup ${warmup} --reps ${reps}`,
    loadAverage1m: load, params: results['A: 1 process x 2 threads, batch 16'][0].params, steps, warmup, reps, summary, allreduce,
  }
  const dir = join(__dirname, '..', '..', 'benchmarks')
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'data-parallel-cpu.json'), JSON.stringify(report, null, 2) + '\n')
  console.log(JSON.stringify(report, null, 2))
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e)
  process.exit(1)
})
