// bertkit launch: torchrun's options and environment, threads split among
// the local ranks, and a failed rank named while the others are stopped.
import t from 'tap'
import { spawn } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { parseLaunchArgs } from '../../lib/cli/launch.js'
import { BertConfig, BertForSequenceClassification, manualSeed } from '../../lib/index.js'
import { glooMissing } from '../distributed/helpers.js'

const root = join(__dirname, '..', '..', '..')
const main = join(root, 'dist', 'lib', 'cli', 'main.js')
const printEnv = join(root, 'dist', 'test', 'distributed', 'workers', 'print_env.js')

function launch(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string; seconds: number }> {
  return new Promise((resolve) => {
    const started = Date.now()
    const child = spawn(process.execPath, [main, 'launch', ...args], {
      env: { ...process.env, RANK: '', WORLD_SIZE: '', MASTER_ADDR: '', MASTER_PORT: '', BERTKIT_NUM_THREADS: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = '', stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr, seconds: (Date.now() - started) / 1000 }) })
  })
}

t.test('options as torchrun names them; the command starts at the first non-option', async (t) => {
  const o = parseLaunchArgs(['--nproc-per-node', '4', '--nnodes=2', '--node_rank', '1', '--master-addr', '10.0.0.1', '--master-port', '29600', 'train.js', '--lr', '3'])
  t.match(o, { nprocPerNode: 4, nnodes: 2, nodeRank: 1, masterAddr: '10.0.0.1', masterPort: 29600, command: ['train.js', '--lr', '3'] })
  t.throws(() => parseLaunchArgs(['--nproc-per-node', '0', 'x.js']), /--nproc-per-node must be an integer in \[1, 1024\], got "0"/)
  t.throws(() => parseLaunchArgs(['--nnodes', '2', '--node-rank', '2', 'x.js']), /--node-rank 2 must be below --nnodes 2/)
  t.throws(() => parseLaunchArgs(['--nproc-per-node', '2']), /no script or command given/)
  t.throws(() => parseLaunchArgs(['--nprocs', '2', 'x.js']), /unknown option --nprocs/)
  t.throws(() => parseLaunchArgs(['--master-port', 'x.js']), /--master-port must be an integer/)
})

t.test('each rank gets torchrun\'s environment and its share of the threads', async (t) => {
  const r = await launch(['--nproc-per-node', '2', '--threads-per-proc', '3', printEnv, '--flag', 'v'])
  t.equal(r.code, 0, r.stderr)
  const envs = [...r.stdout.matchAll(/^ENV (\{.*\}) ARGS (.*)$/gm)].map((m) => ({ env: JSON.parse(m[1]), args: JSON.parse(m[2]) }))
  t.equal(envs.length, 2)
  const byRank = envs.sort((a, b) => Number(a.env.RANK) - Number(b.env.RANK))
  byRank.forEach(({ env, args }, i) => {
    t.match(env, { RANK: String(i), LOCAL_RANK: String(i), WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '2', GROUP_RANK: '0', MASTER_ADDR: '127.0.0.1', BERTKIT_NUM_THREADS: '3', OMP_NUM_THREADS: '3' })
    t.same(args, ['--flag', 'v'], 'script arguments pass through')
  })
  t.equal(byRank[0].env.MASTER_PORT, byRank[1].env.MASTER_PORT, 'one rendezvous port')
  t.match(r.stderr, /bertkit launch: 2 processes on node 0 of 1 \(ranks 0-1 of 2\), 3 CPU threads each, rendezvous at tcp:\/\/127\.0\.0\.1:\d+/)
  // Without --threads-per-proc the machine's cores are split; a node of a multi-node run numbers its ranks after the others'.
  const s = await launch(['--nproc-per-node', '2', '--nnodes', '3', '--node-rank', '2', '--master-port', '29999', printEnv])
  const ranks = [...s.stdout.matchAll(/"RANK":"(\d+)"/g)].map((m) => Number(m[1])).sort()
  t.same(ranks, [4, 5], 'node 2 of 3 runs ranks 4 and 5')
  t.match(s.stdout, /"WORLD_SIZE":"6"/)
  t.match(s.stdout, /"MASTER_PORT":"29999"/)
  const cores = (await import('node:os')).availableParallelism()
  t.match(s.stdout, new RegExp(`"BERTKIT_NUM_THREADS":"${Math.max(1, Math.floor(cores / 2))}"`), `${cores} cores / 2 processes`)
})

t.test('a rank that fails is named, and the others are stopped after the grace period', async (t) => {
  const r = await launch(['--nproc-per-node', '3', '--grace-period', '1', printEnv], { FAIL_RANK: '1', FAIL_CODE: '7', SLEEP_MS: '600000' })
  t.equal(r.code, 1, 'the launcher exits non-zero')
  t.ok(r.seconds < 30, `done in ${r.seconds} s, not after the others' 10 minutes`)
  t.match(r.stderr, /bertkit launch: rank 1 \(local rank 1, pid \d+\) exited with code 7; waiting up to 1 s for the other ranks to stop/)
  t.match(r.stderr, /bertkit launch: terminating ranks 0, 2 \(still running after rank 1 failed\)/)
  t.match(r.stderr, /bertkit launch: failed: rank 1 \(local rank 1, pid \d+\) exited with code 7; rank 0 was killed by SIGTERM, rank 2 was killed by SIGTERM/)
})

t.test('a missing script is named', async (t) => {
  const r = await launch(['--nproc-per-node', '2', 'no-such-script.js'])
  t.equal(r.code, 1)
  t.match(r.stderr, /bertkit launch: no-such-script\.js is neither a script that exists nor a bertkit command \(train, eval\)/)
})

t.test('bertkit launch train: 2 ranks train data-parallel, rank 0 alone saves and reports', { skip: glooMissing() ?? false }, async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-launch-train-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  manualSeed(1)
  const modelDir = join(dir, 'tiny')
  const tiny = new BertForSequenceClassification(new BertConfig({ vocab_size: 30522, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 64 }))
  tiny.savePretrained(modelDir)
  tiny.dispose()
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(root, 'test', 'fixtures', 'tokenizer', 'minilm-uncased', f), join(modelDir, f))
  const rows = (n: number) => ['text,label', ...Array.from({ length: n }, (_, i) => (i % 2 ? `"a wonderful, moving film ${i}",1` : `"a dull and tedious mess ${i}",0`))].join('\n')
  writeFileSync(join(dir, 'train.csv'), rows(32))
  writeFileSync(join(dir, 'test.csv'), rows(9))
  const out = join(dir, 'out')
  const r = await launch(['--nproc-per-node', '2', 'train', '--model', modelDir, '--dataset', 'csv', '--data-files', `train=${join(dir, 'train.csv')},test=${join(dir, 'test.csv')}`,
    '--output-dir', out, '--max-steps', '4', '--per-device-train-batch-size', '4', '--learning-rate', '1e-3', '--disable-tqdm', '--logging-steps', '2'], { BERTKIT_DEVICE: 'cpu' })
  t.equal(r.code, 0, r.stderr.slice(-3000))
  const reports = r.stdout.split(/\n(?=\{)/).filter((x) => x.trim().startsWith('{'))
  t.equal(reports.length, 1, 'one report, from rank 0')
  const result = JSON.parse(reports[0])
  t.equal(result.train.globalStep, 4)
  t.ok(Number.isFinite(result.eval.evalAccuracy), 'evaluated over the 9 test rows, gathered from both ranks')
  t.ok(existsSync(join(out, 'model.safetensors')) && existsSync(join(out, 'tokenizer.json')), 'model and tokenizer saved')
  const log = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  t.same(log.filter((e) => 'loss' in e).map((e) => e.step), [2, 4], 'each logging step written once')
})
