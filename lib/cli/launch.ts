// bertkit launch: torchrun for bertkit. Starts --nproc-per-node processes on
// this node with the environment torchrun gives its workers (RANK,
// LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
// MASTER_PORT), splits the CPU threads among them, and watches them: when
// one fails, the launcher says which and how, gives the others a grace
// period to stop on their own (their process group tells them at once), then
// stops them and exits non-zero — never a hang.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { createServer } from 'node:net'
import { availableParallelism } from 'node:os'
import { join, resolve } from 'node:path'

export const LAUNCH_HELP = `bertkit launch — start a data-parallel run, as torchrun does

  bertkit launch [launch options] SCRIPT.js [script arguments]
  bertkit launch [launch options] train [bertkit train flags]     (also eval)

Launch options (torchrun's names):
  --nproc-per-node N      processes on this node (default 1)
  --nnodes M              nodes in the run (default 1)
  --node-rank R           this node's index, 0..M-1 (default 0)
  --master-addr A         the address of node 0, where rank 0 hosts the rendezvous (default 127.0.0.1)
  --master-port P         its port (default: a free port when --nnodes is 1, else 29500)
  --threads-per-proc T    CPU threads per process (default: this machine's cores / N, at least 1;
                          BERTKIT_NUM_THREADS in the environment wins)
  --grace-period S        after a rank fails, seconds the others get to stop before they are
                          terminated (default 10)

Each process gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
MASTER_PORT and BERTKIT_NUM_THREADS; with at least N GPUs visible, CUDA_VISIBLE_DEVICES picks
one GPU per process. The Trainer then trains data-parallel: Gloo on the CPU, NCCL on GPUs.`

const BERTKIT_COMMANDS = new Set(['train', 'eval'])

export interface LaunchOptions {
  nprocPerNode: number
  nnodes: number
  nodeRank: number
  masterAddr: string
  masterPort: number | null
  threadsPerProc: number | null
  gracePeriodMs: number
  /** The script (or bertkit command) and its arguments. */
  command: string[]
}

function intOption(name: string, value: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined || value.startsWith('--')) throw new Error(`bertkit launch: --${name} needs a value`)
  const n = Number(value)
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`bertkit launch: --${name} must be an integer in [${min}, ${max}], got "${value}"`)
  return n
}

/** Launch options come first; the first argument that is not one starts the command. */
export function parseLaunchArgs(argv: string[]): LaunchOptions {
  const o: LaunchOptions = { nprocPerNode: 1, nnodes: 1, nodeRank: 0, masterAddr: '127.0.0.1', masterPort: null, threadsPerProc: null, gracePeriodMs: 10_000, command: [] }
  let i = 0
  for (; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) break
    const eq = a.indexOf('=')
    const name = (eq >= 0 ? a.slice(2, eq) : a.slice(2)).replace(/_/g, '-')
    const value = eq >= 0 ? a.slice(eq + 1) : argv[i + 1]
    const takes = () => { if (eq < 0) i++ }
    switch (name) {
      case 'nproc-per-node': o.nprocPerNode = intOption(name, value, 1, 1024); takes(); break
      case 'nnodes': o.nnodes = intOption(name, value, 1, 65536); takes(); break
      case 'node-rank': o.nodeRank = intOption(name, value, 0); takes(); break
      case 'master-addr':
        if (!value || value.startsWith('--')) throw new Error('bertkit launch: --master-addr needs a value')
        o.masterAddr = value; takes(); break
      case 'master-port': o.masterPort = intOption(name, value, 1, 65535); takes(); break
      case 'threads-per-proc': o.threadsPerProc = intOption(name, value, 1, 1024); takes(); break
      case 'grace-period': o.gracePeriodMs = intOption(name, value, 0, 3600) * 1000; takes(); break
      case 'help': o.command = ['--help']; return o
      default: throw new Error(`bertkit launch: unknown option --${name} (see bertkit launch --help)`)
    }
  }
  o.command = argv.slice(i)
  if (o.nodeRank >= o.nnodes) throw new Error(`bertkit launch: --node-rank ${o.nodeRank} must be below --nnodes ${o.nnodes}`)
  if (!o.command.length) throw new Error('bertkit launch: no script or command given (bertkit launch --nproc-per-node 2 train.js, or ... train --model ...)')
  return o
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer()
    s.unref()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolvePort(port))
    })
  })
}

/** GPUs the driver lists (none without a driver); only counted, never opened. */
function gpuCount(): number {
  try {
    return readdirSync('/proc/driver/nvidia/gpus').length
  } catch {
    return 0
  }
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `was killed by ${signal}` : `exited with code ${code}`
}

export async function runLaunch(argv: string[]): Promise<number> {
  const o = parseLaunchArgs(argv)
  if (o.command[0] === '--help') {
    console.log(LAUNCH_HELP)
    return 0
  }
  const [target, ...targetArgs] = o.command
  let nodeArgs: string[]
  if (BERTKIT_COMMANDS.has(target)) {
    nodeArgs = [join(__dirname, 'main.js'), target, ...targetArgs]
  } else {
    const script = resolve(target)
    if (!existsSync(script)) throw new Error(`bertkit launch: ${target} is neither a script that exists nor a bertkit command (${[...BERTKIT_COMMANDS].join(', ')})`)
    nodeArgs = [script, ...targetArgs]
  }
  const masterPort = o.masterPort ?? (o.nnodes === 1 ? await freePort() : 29500)
  const worldSize = o.nnodes * o.nprocPerNode
  const cores = availableParallelism()
  const threads = process.env.BERTKIT_NUM_THREADS ? null : o.threadsPerProc ?? Math.max(1, Math.floor(cores / o.nprocPerNode))
  // One GPU per process when there are enough; otherwise leave the choice to the scripts.
  const gpus = gpuCount()
  const visible = process.env.CUDA_VISIBLE_DEVICES?.split(',').filter(Boolean) ?? Array.from({ length: gpus }, (_, i) => String(i))
  const pinGpus = gpus > 0 && visible.length >= o.nprocPerNode && o.nprocPerNode > 1
  const firstRank = o.nodeRank * o.nprocPerNode
  process.stderr.write(
    `bertkit launch: ${o.nprocPerNode} process${o.nprocPerNode > 1 ? 'es' : ''} on node ${o.nodeRank} of ${o.nnodes} ` +
      `(ranks ${firstRank}-${firstRank + o.nprocPerNode - 1} of ${worldSize}), ` +
      `${threads === null ? `BERTKIT_NUM_THREADS=${process.env.BERTKIT_NUM_THREADS}` : `${threads} CPU thread${threads > 1 ? 's' : ''}`} each` +
      `${pinGpus ? ', one GPU each' : ''}, rendezvous at tcp://${o.masterAddr}:${masterPort}\n`,
  )

  const children: Array<{ child: ChildProcess; rank: number; localRank: number; exit: string | null }> = []
  let failure: string | null = null
  let stopping = false
  let graceTimer: NodeJS.Timeout | null = null

  const stopAll = (signal: NodeJS.Signals) => {
    for (const c of children) if (c.exit === null) c.child.kill(signal)
  }

  const done = new Promise<number>((resolveDone) => {
    let running = o.nprocPerNode
    const onExit = (entry: (typeof children)[number], code: number | null, signal: NodeJS.Signals | null) => {
      entry.exit = describeExit(code, signal)
      running--
      if ((code !== 0 || signal) && !failure && !stopping) {
        failure = `rank ${entry.rank} (local rank ${entry.localRank}, pid ${entry.child.pid}) ${entry.exit}`
        process.stderr.write(`bertkit launch: ${failure}; waiting up to ${o.gracePeriodMs / 1000} s for the other ranks to stop\n`)
        graceTimer = setTimeout(() => {
          const left = children.filter((c) => c.exit === null)
          if (!left.length) return
          process.stderr.write(`bertkit launch: terminating rank${left.length > 1 ? 's' : ''} ${left.map((c) => c.rank).join(', ')} (still running after rank ${entry.rank} failed)\n`)
          stopping = true
          stopAll('SIGTERM')
          setTimeout(() => stopAll('SIGKILL'), 5000).unref()
        }, o.gracePeriodMs)
      }
      if (running === 0) {
        if (graceTimer) clearTimeout(graceTimer)
        resolveDone(failure ? 1 : children.every((c) => c.exit === 'exited with code 0') ? 0 : 1)
      }
    }
    for (let local = 0; local < o.nprocPerNode; local++) {
      const rank = firstRank + local
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        RANK: String(rank),
        LOCAL_RANK: String(local),
        WORLD_SIZE: String(worldSize),
        LOCAL_WORLD_SIZE: String(o.nprocPerNode),
        GROUP_RANK: String(o.nodeRank),
        ROLE_RANK: String(rank),
        MASTER_ADDR: o.masterAddr,
        MASTER_PORT: String(masterPort),
      }
      if (threads !== null) {
        env.BERTKIT_NUM_THREADS = String(threads)
        env.OMP_NUM_THREADS = String(threads)
      }
      if (pinGpus) env.CUDA_VISIBLE_DEVICES = visible[local]
      const child = spawn(process.execPath, [...process.execArgv, ...nodeArgs], { env, stdio: 'inherit' })
      const entry = { child, rank, localRank: local, exit: null as string | null }
      children.push(entry)
      child.on('exit', (code, signal) => onExit(entry, code, signal))
      child.on('error', (err) => {
        process.stderr.write(`bertkit launch: could not start rank ${rank}: ${err.message}\n`)
      })
    }
  })

  // Ctrl-C or a scheduler's SIGTERM reaches every rank.
  const forward = (signal: NodeJS.Signals) => () => {
    stopping = true
    stopAll(signal)
  }
  const onInt = forward('SIGINT'), onTerm = forward('SIGTERM')
  process.on('SIGINT', onInt)
  process.on('SIGTERM', onTerm)
  const code = await done
  process.off('SIGINT', onInt)
  process.off('SIGTERM', onTerm)
  if (failure) {
    const others = children.filter((c) => !failure!.startsWith(`rank ${c.rank} `)).map((c) => `rank ${c.rank} ${c.exit}`)
    process.stderr.write(`bertkit launch: failed: ${failure}${others.length ? `; ${others.join(', ')}` : ''}\n`)
  }
  return code
}
