// Creating the folders bertkit writes into (output directories, checkpoints,
// the Hub cache) so that a bad path fails at once with its reason.
//
// Why not mkdirSync(dir, { recursive: true }): on Node 20 it spins forever at
// 100% CPU where mkdir answers ENOENT although the parent exists (e.g.
// /proc/self/nope: the parent is there, yet nothing can be made in it), and
// where it does fail its error names the deepest folder with a code
// ("ENOENT … mkdir") instead of the reason. Here each missing level is made
// once, in order, and every failure is explained.
import { closeSync, mkdirSync, openSync, statSync, unlinkSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { dirname, join, resolve } from 'node:path'

function reason(code: string | undefined, parent: string): string {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return `${parent} is not writable (permission denied)`
    case 'EROFS':
      return `${parent} is not writable (read-only file system)`
    case 'ENOSPC':
      return `no space left on the device of ${parent}`
    case 'EDQUOT':
      return `the disk quota of ${parent} is exhausted`
    case 'ENOENT':
      // The parent exists (it was just checked), yet the kernel refuses: /proc, /sys and the like.
      return `${parent} does not allow new folders in it (a virtual file system such as /proc?)`
    case 'ENOTDIR':
      return `a part of the path is a file, not a folder`
    case 'ENAMETOOLONG':
      return 'the name is too long'
    default:
      return `mkdir failed with ${code ?? 'an unknown error'}`
  }
}

/**
 * Makes dir and any missing parents; never loops. `what` names the folder in
 * errors ("output directory"). Returns the absolute path.
 */
export function makeDirs(dir: string, what = 'directory'): string {
  if (typeof dir !== 'string' || dir === '') throw new TypeError(`${what}: expected a path, got ${JSON.stringify(dir)}`)
  if (dir.includes('\0')) throw new TypeError(`${what} ${JSON.stringify(dir)}: a path cannot contain a NUL character`)
  const abs = resolve(dir)
  const missing: string[] = []
  for (let p = abs; ; ) {
    let isDir: boolean
    try {
      isDir = statSync(p).isDirectory()
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT') {
        missing.push(p)
        const parent = dirname(p)
        if (parent === p) throw new Error(`${what} "${dir}" cannot be created: its root ${p} does not exist`)
        p = parent
        continue
      }
      if (code === 'ENOTDIR') throw new Error(`${what} "${dir}" cannot be created: ${reason(code, p)}`)
      if (code === 'EACCES' || code === 'EPERM') throw new Error(`${what} "${dir}" cannot be created: ${dirname(p)} is not readable (permission denied)`)
      throw new Error(`${what} "${dir}" cannot be created: ${(err as Error).message}`)
    }
    if (!isDir) throw new Error(`${what} "${dir}" cannot be created: ${p} exists and is not a folder`)
    break
  }
  for (const p of missing.reverse()) {
    try {
      mkdirSync(p)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'EEXIST') {
        // Made meanwhile by another process: fine if it is a folder.
        let ok = false
        try {
          ok = statSync(p).isDirectory()
        } catch {
          // vanished again
        }
        if (ok) continue
        throw new Error(`${what} "${dir}" cannot be created: ${p} exists and is not a folder`)
      }
      throw new Error(`${what} "${dir}" cannot be created: ${reason(code, dirname(p))}`, { cause: err })
    }
  }
  return abs
}

/**
 * makeDirs, then proves the folder takes files by creating and removing one
 * (permission bits alone do not tell: root, ACLs, read-only mounts).
 */
export function ensureWritableDir(dir: string, what = 'directory'): string {
  const abs = makeDirs(dir, what)
  const probe = join(abs, `.bertkit-write-test-${process.pid}-${randomBytes(4).toString('hex')}`)
  let fd: number
  try {
    fd = openSync(probe, 'wx')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const why: Record<string, string> = { EACCES: 'permission denied', EPERM: 'permission denied', EROFS: 'read-only file system', ENOSPC: 'no space left on the device', EDQUOT: 'disk quota exhausted', ENOENT: 'the folder does not allow new files' }
    throw new Error(`${what} "${dir}" is not writable (${why[code ?? ''] ?? code})`, { cause: err })
  }
  closeSync(fd)
  unlinkSync(probe)
  return abs
}
