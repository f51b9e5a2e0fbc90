// Spawning ranks for the data-parallel tests: each rank is a node process
// with the launcher's environment; results come back as "RESULT {json}" lines.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'

export const root = join(__dirname, '..', '..', '..')
export const workers = join(__dirname, 'workers')

/**
 * null when the Gloo shim is built; otherwise why the tests cannot run. A
 * machine with Gloo's headers must have built it (CI installs libgloo-dev):
 * there its absence is a failure, never a skip.
 */
export function glooMissing(): string | null {
  if (existsSync(join(root, 'build', 'Release', 'bertkit_gloo.so'))) return null
  if (existsSync('/usr/include/gloo/allreduce.h')) {
    throw new Error('libgloo-dev is installed but build/Release/bertkit_gloo.so was not built: run npm run build:native and read its CMake output')
  }
  return 'Gloo is not installed (apt-get install libgloo-dev, then npm run build:native); .ci/run installs it'
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

export interface RankRun {
  rank: number
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** The last RESULT line, parsed. */
  result: Record<string, unknown> | null
  /** Wall time from spawn to exit, in seconds. */
  seconds: number
}

/** Runs one process per entry of `ranks` (each gets RANK and the shared env); kills any still running after limitMs. */
export function runRanks(script: string, ranks: number[], env: Record<string, string>, limitMs = 120_000, args: string[] = []): Promise<RankRun[]> {
  return Promise.all(ranks.map((rank) => new Promise<RankRun>((resolve) => {
    const started = Date.now()
    const child = spawn(process.execPath, [script, ...args], {
      env: { ...process.env, BERTKIT_DEVICE: 'cpu', MASTER_ADDR: '127.0.0.1', RANK: String(rank), LOCAL_RANK: String(rank), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = '', stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), limitMs)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      const lines = stdout.split('\n').filter((l) => l.startsWith('RESULT '))
      const result = lines.length ? JSON.parse(lines[lines.length - 1].slice(7)) as Record<string, unknown> : null
      resolve({ rank, code, signal, stdout, stderr, result, seconds: (Date.now() - started) / 1000 })
    })
  })))
}
