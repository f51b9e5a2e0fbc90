// The on-disk layout of huggingface_hub's cache, so Python and bertkit read
// and fill one cache:
//
//   <cache>/models--org--name/            (datasets--org--name/ for datasets)
//     blobs/<etag>                        file contents, named by git sha1 or LFS sha256
//     snapshots/<commit>/<path>           relative symlink to ../../blobs/<etag>
//     refs/<revision>                     the commit a branch or tag pointed to when last seen
//
// Writers here never leave a half-written file under a final name: blobs are
// renamed into place when complete (hub.ts), refs are written to a temp file
// and renamed, and a snapshot entry is only a link to a complete blob.
import { copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { dirname, join, relative } from 'node:path'

export type RepoType = 'model' | 'dataset'

export const REGEX_COMMIT_HASH = /^[0-9a-f]{40}$/

export function checkRepoType(repoType: string | undefined, where: string): RepoType {
  const t = repoType ?? 'model'
  if (t !== 'model' && t !== 'dataset') throw new TypeError(`${where}: repoType must be "model" or "dataset", got ${JSON.stringify(repoType)}`)
  return t
}

export function checkRepoId(repoId: unknown, where: string): string {
  // The Hub's own rule: one optional namespace, names of letters, digits, "-", "_", ".".
  if (typeof repoId !== 'string' || !/^(?:[\w.-]+\/)?[\w.-]+$/.test(repoId) || repoId.includes('..') || repoId.includes('--') || /^[.-]|[.-]$/.test(repoId.split('/').pop()!)) {
    throw new TypeError(`${where}: ${JSON.stringify(repoId)} is not a valid Hub repo id ("name" or "org/name")`)
  }
  return repoId
}

/** A path inside a repo; rejected when it could escape the snapshot folder once joined onto it. */
export function checkRepoFilename(filename: unknown, where: string): string {
  if (typeof filename !== 'string' || filename === '') throw new TypeError(`${where}: filename must be a non-empty string`)
  const parts = filename.split('/')
  if (filename.startsWith('/') || filename.includes('\\') || filename.includes('\0') || parts.some((p) => p === '..' || p === '.' || p === '')) {
    throw new TypeError(`${where}: ${JSON.stringify(filename)} is not a relative path inside a repo`)
  }
  return filename
}

/** huggingface_hub's repo_folder_name: "models--org--name". */
export function repoFolderName(repoId: string, repoType: RepoType): string {
  return [`${repoType}s`, ...repoId.split('/')].join('--')
}

export function storageFolder(cacheDir: string, repoId: string, repoType: RepoType): string {
  return join(cacheDir, repoFolderName(repoId, repoType))
}

export function pointerPath(storage: string, commit: string, filename: string): string {
  return join(storage, 'snapshots', commit, ...filename.split('/'))
}

export function blobPath(storage: string, etag: string): string {
  if (!/^[\w.-]+$/.test(etag) || etag.startsWith('.')) throw new Error(`hub cache: the server sent an etag ${JSON.stringify(etag)} that cannot name a blob file`)
  return join(storage, 'blobs', etag)
}

/**
 * Marks the cache with the Cache Directory Tagging Standard file, as
 * huggingface_hub does, so backup tools skip it. Best effort.
 */
export function tagCacheDir(cacheDir: string): void {
  const tag = join(cacheDir, 'CACHEDIR.TAG')
  if (existsSync(tag)) return
  try {
    writeFileSync(tag, 'Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by bertkit (Hugging Face cache).\n# For information about cache directory tags see https://bford.info/cachedir/\n', { flag: 'wx' })
  } catch {
    // read-only or raced: either way not ours to fix
  }
}

/** The commit a revision resolves to in the cache: itself when it is a commit hash, else refs/<revision>. */
export function readRef(storage: string, revision: string): string | null {
  if (REGEX_COMMIT_HASH.test(revision)) return revision
  try {
    const commit = readFileSync(join(storage, 'refs', ...revision.split('/')), 'utf8').trim()
    return commit || null
  } catch {
    return null
  }
}

/**
 * Records revision → commit. Revisions with "/" (refs/convert/parquet) nest as
 * folders, as in Python. Written only when it changed, since the cache may be
 * shared read-only.
 */
export function writeRef(storage: string, revision: string, commit: string): void {
  if (revision === commit) return
  const path = join(storage, 'refs', ...revision.split('/'))
  try {
    if (readFileSync(path, 'utf8') === commit) return
  } catch {
    // no ref yet
  }
  mkdirSync(dirname(path), { recursive: true })
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  writeFileSync(tmp, commit)
  renameSync(tmp, path)
}

/** True when path exists following links (a dangling snapshot link counts as missing). */
export function existsFollowing(path: string): boolean {
  try {
    statSync(path)
    return true
  } catch {
    return false
  }
}

/**
 * Points snapshots/<commit>/<path> at its blob with a relative link, so a
 * cache moved or mounted elsewhere keeps working (huggingface_hub does the
 * same). Where links cannot be made (Windows without the privilege) the blob
 * is copied, which is what Python falls back to as well.
 */
export function linkPointer(blob: string, pointer: string): void {
  mkdirSync(dirname(pointer), { recursive: true })
  const target = relative(dirname(pointer), blob)
  try {
    unlinkSync(pointer)
  } catch {
    // nothing there
  }
  try {
    symlinkSync(target, pointer)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') {
      // Another process linked it between unlink and symlink: fine if it points at the same blob.
      if (lstatSync(pointer).isSymbolicLink() && realpathSync(pointer) === realpathSync(blob)) return
      throw err
    }
    if (code !== 'EPERM' && code !== 'EACCES' && code !== 'ENOTSUP') throw err
    const tmp = `${pointer}.${randomBytes(4).toString('hex')}.tmp`
    copyFileSync(blob, tmp)
    renameSync(tmp, pointer)
  }
}

/** The cached file for repo/filename at revision, or null: never touches the network. */
export function tryLoadFromCache(cacheDir: string, repoId: string, repoType: RepoType, filename: string, revision = 'main'): string | null {
  const storage = storageFolder(cacheDir, repoId, repoType)
  const commit = readRef(storage, revision)
  if (!commit) return null
  const p = pointerPath(storage, commit, filename)
  return existsFollowing(p) ? p : null
}

/** Every file of a cached snapshot, as repo-relative "/"-separated paths, sorted. */
export function listSnapshotFiles(snapshotDir: string): string[] {
  const out: string[] = []
  const walk = (dir: string, prefix: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name
      const full = join(dir, entry.name)
      if (entry.isDirectory()) walk(full, rel)
      else if (existsFollowing(full) && statSync(full).isFile()) out.push(rel)
    }
  }
  if (existsSync(snapshotDir)) walk(snapshotDir, '')
  return out.sort()
}
