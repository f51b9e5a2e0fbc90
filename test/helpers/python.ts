// What the reference suites (test/reference/*.reference.ts, not part of
// `npm test`) share to run their Python oracles.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'

/** The repository root (this file runs from dist/test/helpers). */
export const REPO_ROOT = join(__dirname, '..', '..', '..')
/** The interpreter: $PYTHON, else python3. */
export const PYTHON = process.env.PYTHON ?? 'python3'

/** Runs PYTHON with `args` in the repository root and parses its last stdout line as JSON; fails with the end of its stderr. */
export function pythonJson(args: string[]): unknown {
  const r = spawnSync(PYTHON, args, { encoding: 'utf8', maxBuffer: 256 << 20, cwd: REPO_ROOT })
  if (r.status !== 0) throw new Error(`${PYTHON} ${args.join(' ')} failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`)
  return JSON.parse(r.stdout.trim().split('\n').pop()!)
}

/**
 * Runs the tokenizer oracle test/oracles/<script> over rotten tomatoes
 * (../shared, or $BERTKIT_SHARED_DIR) and returns the reference it writes.
 * Returns null when there is none, having recorded why: a skipped test named
 * `label` when the data, python3 or the oracle's packages (its exit code 3)
 * are missing, a failure when the oracle fails.
 */
export function runTokenizerOracle<R extends { versions: Record<string, string> }>(script: string, label: string, timeoutMs: number): R | null {
  const data = join(process.env.BERTKIT_SHARED_DIR ?? join(REPO_ROOT, '..', 'shared'), 'data', 'rotten_tomatoes')
  const skip = (() => {
    if (!existsSync(join(data, 'rt-polarity.pos'))) return `no rotten tomatoes data at ${data} (set BERTKIT_SHARED_DIR)`
    const py = spawnSync('python3', ['--version'], { encoding: 'utf8' })
    if (py.error || py.status !== 0) return 'python3 is not available'
    return false
  })()
  const work = mkdtempSync(join(tmpdir(), `bertkit-${basename(script, '.py').replace(/_/g, '-')}-`))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))
  if (skip) {
    t.test(label, { skip }, async () => {})
    return null
  }
  const run = spawnSync('python3', [join(REPO_ROOT, 'test', 'oracles', script), '--data', data, '--work', work, '--out', join(work, 'reference.json')], {
    encoding: 'utf8', timeout: timeoutMs, maxBuffer: 1 << 26,
  })
  if (run.status === 3) {
    t.test(label, { skip: `Python packages missing: ${run.stderr.trim()}` }, async () => {})
    return null
  }
  if (run.status !== 0) {
    t.fail(`test/oracles/${script} failed (${run.status ?? run.signal}): ${run.stderr.slice(-2000)}`)
    return null
  }
  const reference = JSON.parse(readFileSync(join(work, 'reference.json'), 'utf8')) as R
  t.comment(`reference from ${Object.entries(reference.versions).map(([k, v]) => `${k} ${v}`).join(', ')}`)
  return reference
}
