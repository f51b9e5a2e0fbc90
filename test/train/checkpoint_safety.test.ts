// What a killed run leaves behind, and checkpoints that are not what they
// should be: stale .tmp-checkpoint folders are removed (only ours, only when
// their writer is gone), trainer_log.jsonl is cut back to the resumed step,
// damaged or foreign trainer_state.json files are named; output folders that
// cannot be made fail at once (never the Node 20 mkdir loop); labels out of
// range are reported with their file and line before any step runs.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { appendFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { BertForSequenceClassification, tensor } from '../../lib/index.js'
import { Dataset, type Row } from '../../lib/data/dataset.js'
import { loadDataset } from '../../lib/data/load_dataset.js'
import { Trainer, type DataCollator } from '../../lib/train/trainer.js'
import { TrainingArguments } from '../../lib/train/training_args.js'
import { ensureWritableDir, makeDirs } from '../../lib/hub/dirs.js'

const fixture = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'bert', 'one_layer')
const distLib = join(__dirname, '..', '..', 'lib')
const root = mkdtempSync(join(tmpdir(), 'bertkit-ckpt-safety-'))
t.teardown(() => rmSync(root, { recursive: true, force: true }))
let n = 0
const fresh = (name = 'out') => join(root, `${name}${n++}`)
const childEnv = { ...process.env, NODE_OPTIONS: '' }

function rows(count: number, labelOf: (i: number) => number = (i) => i % 2): Row[] {
  return Array.from({ length: count }, (_, i) => ({ input_ids: [1, 10 + (i % 7), 7 * (i % 2), 2], label: labelOf(i) }))
}

const collator: DataCollator = (batch) => {
  const longest = Math.max(...batch.map((r) => (r.input_ids as number[]).length))
  const ids = new Int32Array(batch.length * longest)
  batch.forEach((r, i) => (r.input_ids as number[]).forEach((v, j) => { ids[i * longest + j] = v }))
  return {
    inputIds: tensor(ids, { shape: [batch.length, longest], dtype: 'int32' }),
    labels: tensor(Int32Array.from(batch.map((r) => r.label as number)), { dtype: 'int32' }),
  }
}

async function trainer(outputDir: string, extra: Record<string, unknown> = {}, data = Dataset.fromRows(rows(32))) {
  const model = await BertForSequenceClassification.fromPretrained(fixture, { numLabels: 2 })
  const args = new TrainingArguments(outputDir, { learningRate: 1e-3, perDeviceTrainBatchSize: 8, maxSteps: 8, loggingSteps: 1, saveStrategy: 'steps', saveSteps: 4, disableTqdm: true, plotCurves: false, ...extra })
  const tr = new Trainer({ model, args, trainDataset: data, dataCollator: collator })
  return { model, tr, dispose: () => { tr.dispose(); model.dispose() } }
}

/** The pid of a process that has exited (reuse within the test is not a concern). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
  return Number(r.stdout)
}

t.test('stale .tmp-checkpoint folders: removed only when ours and their writer is gone', async (t) => {
  const out = fresh()
  mkdirSync(out)
  const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
  t.teardown(() => { sleeper.kill() })
  const dead = deadPid()
  const mk = (name: string, owner?: object) => {
    mkdirSync(join(out, name))
    writeFileSync(join(out, name, 'model.safetensors'), 'half')
    if (owner) writeFileSync(join(out, name, '.bertkit-owner.json'), JSON.stringify(owner))
  }
  mk(`.tmp-checkpoint-4-${dead}`, { pid: dead, host: hostname() }) // killed mid-save: remove
  mk(`.tmp-checkpoint-6-${dead}`) // killed before the owner file: the name's pid decides, remove
  mk(`.tmp-checkpoint-4-${process.pid}`) // this process, no save in flight (an earlier train() that threw): remove
  mk(`.tmp-checkpoint-8-${sleeper.pid}`) // a live process may still be writing: keep
  mk(`.tmp-checkpoint-9-${dead}`, { pid: dead, host: 'another-host.example' }) // shared folder, other host: cannot tell, keep
  mk('.tmp-checkpoint-x-1') // not our pattern: keep
  mk('.tmp-something-else') // not ours: keep
  mk(`tmp-checkpoint-4-${dead}`) // not ours (no dot): keep
  // Files of an atomic write cut short (the final model.safetensors): pid dead and untouched for 10 minutes.
  const old = new Date(Date.now() - 3600_000)
  const file = (name: string, mtime?: Date) => {
    writeFileSync(join(out, name), 'partial')
    if (mtime) utimesSync(join(out, name), mtime, mtime)
  }
  file(`.model.safetensors.tmp-${dead}-0123456789ab`, old) // remove
  file(`.config.json.tmp-${dead}-0123456789ab`) // recent: maybe another host's live write, keep
  file(`.model.safetensors.tmp-${sleeper.pid}-0123456789ab`, old) // writer alive: keep
  const stderr: string[] = []
  const write = process.stderr.write.bind(process.stderr)
  process.stderr.write = ((s: string) => { stderr.push(String(s)); return true }) as typeof process.stderr.write
  const { tr, dispose } = await trainer(out, { maxSteps: 2, saveSteps: 2 })
  try {
    await tr.train()
  } finally {
    process.stderr.write = write
    dispose()
  }
  const left = readdirSync(out).filter((d) => d.includes('tmp')).sort()
  t.same(left, [`.tmp-checkpoint-8-${sleeper.pid}`, `.tmp-checkpoint-9-${dead}`, '.tmp-checkpoint-x-1', '.tmp-something-else', `tmp-checkpoint-4-${dead}`,
    `.config.json.tmp-${dead}-0123456789ab`, `.model.safetensors.tmp-${sleeper.pid}-0123456789ab`].sort())
  t.equal(stderr.filter((l) => /removed .*\.tmp-checkpoint-\d+-\d+, a checkpoint left half-written by process \d+/.test(l)).length, 3, 'each removal is reported')
  t.equal(stderr.filter((l) => /removed .*\.model\.safetensors\.tmp-\d+-0123456789ab, a file left half-written/.test(l)).length, 1)
  t.ok(existsSync(join(out, 'checkpoint-2', 'trainer_state.json')))
  t.notOk(existsSync(join(out, 'checkpoint-2', '.bertkit-owner.json')), 'the owner mark does not stay in the checkpoint')
})

t.test('resume: trainer_log.jsonl is cut back to the checkpoint, so no step is logged twice', async (t) => {
  const out = fresh()
  {
    const { tr, dispose } = await trainer(out)
    await tr.train()
    dispose()
  }
  // As if killed at step 7 while writing: checkpoint-8 never happened, a line is cut short.
  rmSync(join(out, 'checkpoint-8'), { recursive: true })
  const log = join(out, 'trainer_log.jsonl')
  const before = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  t.ok(before.some((e) => e.step === 7), 'the first run logged past checkpoint-4')
  appendFileSync(log, '{"loss": 0.69, "epo')
  const { tr, dispose } = await trainer(out, { resumeFromCheckpoint: true })
  await tr.train()
  dispose()
  const after = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  const losses = after.filter((e) => 'loss' in e).map((e) => e.step)
  t.same(losses, [1, 2, 3, 4, 5, 6, 7, 8], 'each step once, in order')
  t.ok(after.every((e) => typeof e.step === 'number'), 'the partial line is gone')
})

t.test('a checkpoint whose trainer_state.json is foreign, cut short or wrong is named', async (t) => {
  const out = fresh()
  {
    const { tr, dispose } = await trainer(out, { maxSteps: 4 })
    await tr.train()
    dispose()
  }
  const ckpt = join(out, 'checkpoint-4')
  const statePath = join(ckpt, 'trainer_state.json')
  const bertkitPath = join(ckpt, 'bertkit_state.json')
  const good = readFileSync(statePath, 'utf8')
  const goodBertkit = readFileSync(bertkitPath, 'utf8')
  const state = JSON.parse(good)
  const bertkit = JSON.parse(goodBertkit)
  const resumeWith = async (content: string | null, bertkitContent: string | null = goodBertkit) => {
    if (content === null) rmSync(statePath, { force: true })
    else writeFileSync(statePath, content)
    if (bertkitContent === null) rmSync(bertkitPath, { force: true })
    else writeFileSync(bertkitPath, bertkitContent)
    const { tr, dispose } = await trainer(fresh(), { resumeFromCheckpoint: ckpt })
    try {
      await tr.train()
    } finally {
      dispose()
    }
  }
  const re = (path: string) => path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const esc = re(statePath), escB = re(bertkitPath)
  // A transformers checkpoint has a trainer_state.json but no bertkit_state.json.
  await t.rejects(resumeWith(good, null), new RegExp(`${re(ckpt)}: it has no bertkit_state.json .* not written by bertkit's Trainer`))
  await t.rejects(resumeWith(good.slice(0, good.length >> 1)), new RegExp(`${esc}: it is not valid JSON`))
  await t.rejects(resumeWith(''), new RegExp(`${esc}: it is not valid JSON`))
  await t.rejects(resumeWith('[1, 2]'), new RegExp(`${esc}: it does not hold a JSON object`))
  await t.rejects(resumeWith(good, goodBertkit.slice(0, 20)), new RegExp(`${escB}: it is not valid JSON`))
  await t.rejects(resumeWith(good, JSON.stringify({ ...bertkit, rng: {} })), new RegExp(`${escB}: "rng" is missing or incomplete`))
  await t.rejects(resumeWith(JSON.stringify({ ...state, global_step: '4' })), new RegExp(`${esc}: "global_step" is "4"`))
  await t.rejects(resumeWith(good, JSON.stringify({ ...bertkit, data_position: null })), new RegExp(`${escB}: "data_position" is null`))
  // Checkpoints of older bertkit versions: the section inside trainer_state.json, camelCase log keys.
  const legacy = { ...state, bertkit: { ...bertkit, data_position: null }, log_history: [{ loss: 0.7, gradNorm: 1, learningRate: 1e-3, epoch: 0.1, step: 1 }] }
  await t.rejects(resumeWith(JSON.stringify(legacy), null), new RegExp(`${esc}: "bertkit.data_position" is null`))
  await t.resolves(resumeWith(JSON.stringify({ ...legacy, bertkit }), null), 'an older checkpoint (bertkit section in trainer_state.json) still resumes')
  await t.rejects(resumeWith(null), /is not a checkpoint \(no trainer_state\.json\)/)
  writeFileSync(bertkitPath, goodBertkit)
  writeFileSync(statePath, good)
  rmSync(join(ckpt, 'optimizer.safetensors'))
  await t.rejects(resumeWith(good), /cannot resume from .*checkpoint-4: it has no optimizer\.safetensors/)
})

t.test('output folders that cannot be made fail at once with the reason', async (t) => {
  // Node 20's mkdirSync(recursive) spins forever on /proc/self/nope: run in a child with a deadline.
  const probe = (dir: string) => {
    const script = `const { makeDirs } = require(${JSON.stringify(join(distLib, 'hub', 'dirs.js'))}); try { makeDirs(${JSON.stringify(dir)}, 'output directory'); console.log('made') } catch (e) { console.log(e.message) }`
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000, env: childEnv })
    return { timedOut: r.error !== undefined || r.signal !== null, out: r.stdout.trim() }
  }
  if (existsSync('/proc/self')) {
    for (const dir of ['/proc/self/nope', '/proc/self/nope/deeper/still']) {
      const r = probe(dir)
      t.notOk(r.timedOut, `${dir}: returns instead of looping`)
      t.match(r.out, /output directory "\/proc\/self\/nope.*" cannot be created: \/proc\/self does not allow new folders/)
    }
  }
  const file = join(root, 'a-file')
  writeFileSync(file, 'x')
  t.throws(() => makeDirs(join(file, 'sub'), 'output directory'), /cannot be created: a part of the path is a file/)
  t.throws(() => makeDirs(file, 'output directory'), /exists and is not a folder/)
  t.throws(() => ensureWritableDir('', '--output-dir'), /expected a path/)
  const deep = join(root, 'a', 'b', 'c')
  t.equal(makeDirs(deep), resolve(deep))
  t.equal(makeDirs(deep), resolve(deep), 'an existing folder is fine')

  // The same through the public API: a Trainer and savePretrained return an error, not a hang.
  if (existsSync('/proc/self')) {
    const script = `
      const { BertForSequenceClassification } = require(${JSON.stringify(join(distLib, 'index.js'))});
      const { Trainer } = require(${JSON.stringify(join(distLib, 'train', 'trainer.js'))});
      const { TrainingArguments } = require(${JSON.stringify(join(distLib, 'train', 'training_args.js'))});
      const { Dataset } = require(${JSON.stringify(join(distLib, 'data', 'dataset.js'))});
      (async () => {
        const model = await BertForSequenceClassification.fromPretrained(${JSON.stringify(fixture)}, { numLabels: 2 });
        try { model.savePretrained('/proc/self/nope') } catch (e) { console.log('save: ' + e.message) }
        const tr = new Trainer({ model, args: new TrainingArguments('/proc/self/nope', { disableTqdm: true }), trainDataset: Dataset.fromRows([{ input_ids: [1, 2], label: 0 }]), dataCollator: () => { throw new Error('not reached') } });
        try { await tr.train() } catch (e) { console.log('train: ' + e.message) }
      })()`
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60000, env: childEnv })
    t.equal(r.signal, null, 'no hang')
    t.match(r.stdout, /save: model directory "\/proc\/self\/nope" cannot be created/)
    t.match(r.stdout, /train: Trainer: outputDir "\/proc\/self\/nope" cannot be created/)
  }
})

t.test('a read-only output folder is reported as not writable', async (t) => {
  const ro = join(root, 'readonly')
  mkdirSync(ro)
  chmodSync(root, 0o755)
  chmodSync(ro, 0o555)
  t.teardown(() => chmodSync(ro, 0o755))
  const script = `const { ensureWritableDir } = require(${JSON.stringify(join(distLib, 'hub', 'dirs.js'))});
    for (const d of [${JSON.stringify(ro)}, ${JSON.stringify(join(ro, 'out'))}]) { try { ensureWritableDir(d, '--output-dir'); console.log('writable') } catch (e) { console.log(e.message) } }`
  // Root ignores permission bits: drop to nobody for the check where that is possible.
  const asRoot = process.getuid?.() === 0
  // env -i: tap's spawn hooks would make the child write into .tap, which nobody may not.
  const plain = ['env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, process.execPath, '-e', script]
  const cmd = asRoot ? ['setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...plain]] as const : [plain[0], plain.slice(1)] as const
  const r = spawnSync(cmd[0], [...cmd[1]], { encoding: 'utf8', timeout: 20000, env: childEnv })
  if (asRoot && (r.error || /setpriv|Permission denied.*node|EACCES.*dirs\.js/.test(r.stderr))) {
    t.comment(`running as root and cannot drop privileges here (${(r.error?.message ?? r.stderr).trim().slice(0, 120)}); checked without it below`)
    t.throws(() => ensureWritableDir('/proc/self', '--output-dir'), /--output-dir "\/proc\/self" is not writable/)
    return
  }
  const lines = r.stdout.trim().split('\n')
  t.match(lines[0], /--output-dir ".*readonly" is not writable \(permission denied\)/, r.stderr)
  t.match(lines[1], /--output-dir ".*readonly\/out" cannot be created: .*readonly is not writable \(permission denied\)/)
})

t.test('labels out of range are named with their file and line before the first step', async (t) => {
  const dir = fresh('data')
  mkdirSync(dir)
  const csv = join(dir, 'train.csv')
  writeFileSync(csv, ['text,label', 'a,0', 'b,1', '"multi', 'line",1', 'c,5', 'd,0'].join('\n') + '\n')
  const raw = await loadDataset('csv', { dataFiles: { train: csv }, split: 'train' })
  const ds = raw.map((r: Row) => ({ input_ids: [1, String(r.text).length + 3, 2] }))
  const { tr, dispose } = await trainer(fresh(), {}, ds.shuffle({ seed: 1 }))
  try {
    await t.rejects(tr.train(), new RegExp(`Trainer: the train dataset's label at ${csv.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} line 6 \\(row \\d+\\) is 5, outside \\[0, 1\\] for a model with num_labels = 2`))
  } finally {
    dispose()
  }
  // Rows made in memory are named by index; multi-label rows need num_labels values.
  const inMemory = Dataset.fromRows([{ input_ids: [1, 2], label: 0 }, { input_ids: [1, 2], label: -3 }])
  const b = await trainer(fresh(), {}, inMemory)
  await t.rejects(b.tr.train(), /label at row 1 is -3, outside \[0, 1\]/)
  await t.rejects(b.tr.evaluate(Dataset.fromRows([{ input_ids: [1, 2], labels: [1, 0, 0] }])), /evaluation dataset's label at row 0 has 3 values; a model with num_labels = 2 needs 2/)
  b.dispose()
  const c = await trainer(fresh(), { maxSteps: 1 }, Dataset.fromRows([{ input_ids: [1, 2], label: -100 }, { input_ids: [1, 2], label: 1 }]))
  await c.tr.train()
  t.pass('-100 (ignore_index) is accepted, as in torch')
  c.dispose()
})
