// Scratch folders for tests that write files, and the error of a promise
// that must reject.
import t from 'tap'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * A temporary folder (named from `prefix`) removed when the test file ends;
 * fresh() makes a new empty folder inside it (`<stem>0`, `<stem>1`, ...).
 */
export function scratchDirs(prefix: string, stem = 'd'): { root: string; fresh: () => string } {
  const root = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  let count = 0
  const fresh = () => {
    const d = join(root, `${stem}${count++}`)
    mkdirSync(d)
    return d
  }
  return { root, fresh }
}

/** The error a promise rejects with; a promise that resolves fails the test. */
export async function caught<E extends Error = Error>(p: Promise<unknown>): Promise<E> {
  try {
    await p
  } catch (err) {
    return err as E
  }
  throw new Error('expected a rejection')
}
