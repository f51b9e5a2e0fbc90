// The Trainer data-parallel on 2 CPU processes over loopback (Gloo), against
// one process with the same global batch and data order: same weights (1e-6
// relative), same loss curve, same gradient norms, same evaluation; every
// replica bit-identical; resume with the same world size reproduces the run,
// another world size is refused; a rank killed mid-run stops the others.
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { readSafetensors } from '../../lib/hub/safetensors.js'
import { freePort, glooMissing, root, runRanks, workers, type RankRun } from './helpers.js'

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Tap = any

const skip = glooMissing()
const script = join(workers, 'train_tiny.js')
const dirs: string[] = []
t.teardown(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

function tmp(name: string): string {
  const d = mkdtempSync(join(os.tmpdir(), `bertkit-dp-${name}-`))
  dirs.push(d)
  return d
}

/** A plain process: no launcher environment at all, so no process group. */
async function single(env: Record<string, string>): Promise<RankRun> {
  const clean = { RANK: '', WORLD_SIZE: '', MASTER_ADDR: '', MASTER_PORT: '', LOCAL_RANK: '' }
  const [r] = await runRanks(script, [0], { ...clean, ...env })
  return r
}

async function ranks(world: number, env: Record<string, string>, limitMs?: number): Promise<RankRun[]> {
  const port = await freePort()
  return runRanks(script, Array.from({ length: world }, (_, i) => i), { WORLD_SIZE: String(world), MASTER_PORT: String(port), ...env }, limitMs)
}

function ok(t: Tap, runs: RankRun[]): void {
  for (const r of runs) t.equal(r.code, 0, `rank ${r.rank} exits 0${r.code ? `: ${String(r.result?.error ?? r.stderr.slice(-2000))}` : ''}`)
}

/**
 * |a - b| <= tol * max |a| over the array (relative to the tensor's scale:
 * element-wise ratios of values near zero measure rounding, not agreement).
 */
function relClose(t: Tap, a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  t.equal(a.length, b.length, `${what}: lengths`)
  let scale = 0, worst = 0, at = -1
  for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(a[i]))
  for (let i = 0; i < a.length; i++) {
    const err = Math.abs(a[i] - b[i]) / scale
    if (err > worst) { worst = err; at = i }
  }
  t.ok(worst <= tol, `${what}: worst difference ${worst.toExponential(2)} of the largest value${at >= 0 ? ` (at ${at}: ${a[at]} vs ${b[at]})` : ''} <= ${tol}`)
}

function weights(dir: string): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>()
  for (const [name, t] of readSafetensors(join(dir, 'final', 'model.safetensors')).tensors) out.set(name, t.data as Float32Array)
  return out
}

/** Two runs' final weights, losses, grad norms, evaluation and predictions agree. */
function sameRun(t: Tap, one: { run: RankRun; dir: string }, two: { runs: RankRun[]; dir: string }): void {
  const a = one.run.result!, b = two.runs[0].result!
  t.equal(b.globalStep, 20, '20 optimizer steps')
  t.equal(two.runs[1].result!.weights, b.weights, 'both replicas hold bit-identical weights')
  relClose(t, a.losses as number[], b.losses as number[], 1e-6, 'loss curve (20 logged steps)')
  relClose(t, a.gradNorms as number[], b.gradNorms as number[], 1e-5, 'gradient norms')
  relClose(t, [a.evalLoss as number], [b.evalLoss as number], 1e-6, 'eval loss, padding removed')
  t.equal(b.evalAccuracy, a.evalAccuracy, 'eval accuracy')
  relClose(t, a.predictions as number[], b.predictions as number[], 1e-5, 'predict() logits in dataset order')
  const wa = weights(one.dir), wb = weights(two.dir)
  t.same([...wb.keys()], [...wa.keys()], 'same parameters saved')
  for (const [name, values] of wa) relClose(t, values, wb.get(name)!, 1e-6, `${name} after training`)
  // The run must have moved the weights, or equality would prove nothing.
  const start = readSafetensors(join(root, 'test', 'fixtures', 'bert', 'one_layer', 'model.safetensors')).tensors.get('bert.encoder.layer.0.attention.self.query.weight')!.data as Float32Array
  const end = wb.get('bert.encoder.layer.0.attention.self.query.weight')!
  t.ok(start.some((v, i) => Math.abs(v - end[i]) > 1e-4), 'training changed the weights')
}

t.test('2 processes x batch 4 = 1 process x batch 8, dataset order (plain single process, no launcher)', { skip: skip ?? false }, async (t) => {
  const d1 = tmp('seq1'), d2 = tmp('seq2')
  const one = await single({ BATCH: '8', SAMPLING: 'sequential', OUT_DIR: d1 })
  const two = await ranks(2, { BATCH: '4', SAMPLING: 'sequential', OUT_DIR: d2 })
  ok(t, [one, ...two])
  sameRun(t, { run: one, dir: d1 }, { runs: two, dir: d2 })
})

t.test('2 processes x batch 4 = 1 process x batch 8, shuffled as torch DistributedSampler, several gradient buckets, rank 1 starting from other weights', { skip: skip ?? false }, async (t) => {
  const d1 = tmp('rnd1'), d2 = tmp('rnd2')
  // A 0.01 MiB bucket cap splits the 1-layer model's gradients into several all-reduces.
  const [one] = await ranks(1, { BATCH: '8', OUT_DIR: d1, BUCKET_MB: '0.01' })
  // Rank 1 starts from other classifier weights: rank 0's are broadcast before the first step.
  const two = await ranks(2, { BATCH: '4', OUT_DIR: d2, BUCKET_MB: '0.01', PERTURB_RANK: '1' })
  ok(t, [one, ...two])
  sameRun(t, { run: one, dir: d1 }, { runs: two, dir: d2 })
})

t.test('gradient accumulation: 2 processes x batch 2 x 2 micro-steps = 1 process x batch 8', { skip: skip ?? false }, async (t) => {
  const d1 = tmp('acc1'), d2 = tmp('acc2')
  const [one] = await ranks(1, { BATCH: '8', OUT_DIR: d1 })
  const two = await ranks(2, { BATCH: '2', ACCUM: '2', OUT_DIR: d2 })
  ok(t, [one, ...two])
  sameRun(t, { run: one, dir: d1 }, { runs: two, dir: d2 })
})

t.test('gradient checkpointing: gradients of recomputed layers are reduced too (at the end of backward)', { skip: skip ?? false }, async (t) => {
  const d1 = tmp('ckpt1'), d2 = tmp('ckpt2')
  const [one] = await ranks(1, { BATCH: '8', OUT_DIR: d1, BUCKET_MB: '0.01' })
  const two = await ranks(2, { BATCH: '4', OUT_DIR: d2, BUCKET_MB: '0.01', CHECKPOINTING: '1' })
  ok(t, [one, ...two])
  sameRun(t, { run: one, dir: d1 }, { runs: two, dir: d2 })
})

t.test('ranks that train different parameters are refused before the first step', { skip: skip ?? false }, async (t) => {
  const runs = await ranks(2, { BATCH: '4', OUT_DIR: tmp('mismatch'), FREEZE_RANK: '1' }, 60_000)
  for (const r of runs) {
    t.equal(r.code, 3, `rank ${r.rank} fails`)
    // Each rank finds the difference itself, or hears it from the other, which found it first.
    t.match(String(r.result!.error), /data parallel: rank [01]'s model differs from rank [01]'s \(parameter names, shapes or which are trainable\)/)
  }
})

t.test('resume: same world size reproduces the run (dropout on), another world size is refused', { skip: skip ?? false }, async (t) => {
  const full = tmp('full')
  const a = await ranks(2, { BATCH: '4', OUT_DIR: full, SAVE_STEPS: '10', DROPOUT: '1' })
  ok(t, a)
  const ckpt = join(full, 'checkpoint-10')
  t.ok(existsSync(join(ckpt, 'distributed_state.json')), 'the checkpoint records the world size and each rank\'s random state')
  const state = JSON.parse(readFileSync(join(ckpt, 'distributed_state.json'), 'utf8'))
  t.equal(state.world_size, 2)
  t.equal(state.rng.length, 2)
  t.not(state.rng[0].offset, state.rng[1].offset, 'the ranks\' dropout streams differ (different batch shapes), so each is saved')
  const part = tmp('part')
  const b = await ranks(2, { BATCH: '4', OUT_DIR: part, RESUME: ckpt, DROPOUT: '1' })
  ok(t, b)
  const fullLosses = a[0].result!.losses as number[], resumed = b[0].result!.losses as number[]
  t.same(resumed.slice(10), fullLosses.slice(10), 'steps 11..20 give bit-identical losses')
  t.equal(b[0].result!.weights, a[0].result!.weights, 'and bit-identical final weights')
  const [wrong] = await ranks(1, { BATCH: '8', OUT_DIR: tmp('wrong'), RESUME: ckpt })
  t.equal(wrong.code, 3)
  t.match(String(wrong.result!.error), /cannot resume from .*checkpoint-10: it was written by a run of 2 processes \(bertkit launch\) but this run has 1 process/)
  const plain = await single({ BATCH: '8', OUT_DIR: tmp('plain'), RESUME: ckpt })
  t.match(String(plain.result!.error), /written by a run of 2 processes .* but this run has a single process \(no launcher\)/)
})

t.test('bertkit launch: a rank killed mid-run stops the run within 60 s, naming the rank', { skip: skip ?? false }, async (t) => {
  const dir = tmp('kill')
  const started = Date.now()
  const child = spawn(process.execPath, [join(root, 'dist', 'lib', 'cli', 'main.js'), 'launch', '--nproc-per-node', '2', '--grace-period', '30', script], {
    env: { ...process.env, BERTKIT_DEVICE: 'cpu', BATCH: '4', MAX_STEPS: '1000000', OUT_DIR: dir, PRINT_STEPS: '1', RANK: '', WORLD_SIZE: '', MASTER_PORT: '', MASTER_ADDR: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = '', stderr = '', killedAt = 0
  const pids = new Map<string, number>()
  child.stderr.on('data', (d) => (stderr += d))
  child.stdout.on('data', (d) => {
    stdout += d
    for (const m of String(d).matchAll(/^PID (\d+) (\d+)$/gm)) pids.set(m[1], Number(m[2]))
    // Rank 1 is killed from outside at some point of its 6th step, whatever it is doing then.
    if (!killedAt && /^STEP 1 5$/m.test(stdout) && pids.has('1')) {
      killedAt = Date.now()
      process.kill(pids.get('1')!, 'SIGKILL')
    }
  })
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
    child.on('exit', (c) => { clearTimeout(timer); resolve(c) })
  })
  t.ok(killedAt > 0, 'rank 1 was killed after step 5')
  const seconds = (Date.now() - killedAt) / 1000
  t.equal(code, 1, 'the launcher exits non-zero')
  t.ok(seconds < 60, `everything stopped ${seconds.toFixed(1)} s after the kill (total ${((Date.now() - started) / 1000).toFixed(1)} s)`)
  t.match(stderr, /bertkit launch: rank 1 \(local rank 1, pid \d+\) was killed by SIGKILL/, 'the launcher names the killed rank')
  // The store's watch usually speaks first; a socket error of Gloo's, mapped to the rank, may beat it.
  // Either reaches rank 0's output: the group's line on stderr, or the Trainer's error (RESULT on stdout).
  t.match(stderr + stdout, /(process group (is )?broken|gloo [\w ()]+ failed on rank 0).*(rank 1 died: its connection closed without a goodbye|\(rank 1\)|\(the peer is rank 1\))/, 'rank 0 itself says which rank died')
  t.match(stderr, /bertkit launch: failed: rank 1 .* rank 0 exited with code [1-9]/, 'rank 0 stopped on its own, non-zero')
})
