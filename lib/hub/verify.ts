// `bertkit cache verify`: checks the shared Hub cache offline. Blobs are
// named by their content (sha256 for LFS files, git blob sha1 for the rest),
// so each can be checked against its own name; refs must hold commit hashes;
// snapshot entries must be links into the repo's blobs that resolve.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { REGEX_COMMIT_HASH, checkRepoId, checkRepoType, classifySnapshotEntry, storageFolder, type RepoType } from './cache.js'
import { hubCacheDir } from './config.js'
import { blobAlgorithm, hashFile } from './hub.js'

export interface CacheProblem {
  /** The file at fault. */
  path: string
  message: string
}

export interface CacheVerifyReport {
  cacheDir: string
  repos: number
  blobsChecked: number
  bytesChecked: number
  /** Blobs whose name is no hash, so they cannot be checked. */
  blobsUnchecked: number
  problems: CacheProblem[]
}

export interface CacheVerifyOptions {
  cacheDir?: string
  /** Only this repo. */
  repoId?: string
  repoType?: RepoType
  /** Called before each blob is hashed (progress for large caches). */
  onBlob?: (path: string, size: number) => void
}

function listFiles(dir: string): string[] {
  const out: string[] = []
  const walk = (d: string) => {
    let entries
    try {
      entries = readdirSync(d, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of entries) {
      const full = join(d, e.name)
      if (e.isDirectory()) walk(full)
      else out.push(full)
    }
  }
  walk(dir)
  return out.sort()
}

function repoFolders(cacheDir: string, options: CacheVerifyOptions): string[] {
  if (options.repoId !== undefined) {
    const repoType = checkRepoType(options.repoType, 'cache verify')
    const dir = storageFolder(cacheDir, checkRepoId(options.repoId, 'cache verify'), repoType)
    try {
      statSync(dir)
    } catch {
      throw new Error(`cache verify: ${repoType} repo "${options.repoId}" is not in the cache ${cacheDir}`)
    }
    return [dir]
  }
  let names: string[]
  try {
    names = readdirSync(cacheDir)
  } catch (err) {
    throw new Error(`cache verify: cannot read the cache folder ${cacheDir}: ${(err as Error).message}`)
  }
  return names.filter((n) => /^(models|datasets|spaces)--/.test(n)).sort().map((n) => join(cacheDir, n))
}

export async function verifyCache(options: CacheVerifyOptions = {}): Promise<CacheVerifyReport> {
  const cacheDir = hubCacheDir(options)
  const report: CacheVerifyReport = { cacheDir, repos: 0, blobsChecked: 0, bytesChecked: 0, blobsUnchecked: 0, problems: [] }
  const problem = (path: string, message: string) => report.problems.push({ path, message })
  for (const storage of repoFolders(cacheDir, options)) {
    report.repos++
    for (const blob of listFiles(join(storage, 'blobs'))) {
      const name = relative(join(storage, 'blobs'), blob)
      if (name.endsWith('.incomplete')) {
        problem(blob, 'an unfinished download (no snapshot uses it); safe to delete')
        continue
      }
      const algorithm = blobAlgorithm(name)
      if (!algorithm) {
        report.blobsUnchecked++
        continue
      }
      const size = statSync(blob).size
      options.onBlob?.(blob, size)
      const digest = await hashFile(blob, algorithm)
      report.blobsChecked++
      report.bytesChecked += size
      if (digest !== name) {
        problem(blob, `content does not match its name: ${algorithm === 'sha256' ? 'sha256' : 'git blob sha1'} is ${digest}; delete it (every snapshot link to it breaks, and the next online run downloads it again)`)
      }
    }
    for (const ref of listFiles(join(storage, 'refs'))) {
      if (ref.endsWith('.tmp')) continue
      const content = readFileSync(ref, 'utf8').trim()
      if (!REGEX_COMMIT_HASH.test(content)) problem(ref, `holds ${JSON.stringify(content.slice(0, 80))}, not a commit hash; delete it`)
    }
    for (const entry of listFiles(join(storage, 'snapshots'))) {
      try {
        const c = classifySnapshotEntry(storage, entry)
        if (c.kind === 'broken') problem(entry, `a broken link: its blob ${c.target} does not exist; the next online run fetches it again`)
      } catch (err) {
        problem(entry, (err as Error).message.replace(/^hub cache: \S+ /, ''))
      }
    }
  }
  return report
}
