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
import { copyFileSync, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, renameSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import { makeDirs } from './dirs.js'

export type RepoType = 'model' | 'dataset'

export const REGEX_COMMIT_HASH = /^[0-9a-f]{40}$/

export function checkRepoType(repoType: string | undefined, where: string): RepoType {
  const t = repoType ?? 'model'
  if (t !== 'model' && t !== 'dataset') throw new TypeError(`${where}: repoType must be "model" or "dataset", got ${JSON.stringify(repoType)}`)
  return t
}

export function checkRepoId(repoId: unknown, where: string): string {
  // huggingface_hub's validate_repo_id: one optional namespace, ASCII letters,
  // digits, "-", "_", "."; no "--" or ".."; no name starting or ending with
  // "-" or "."; at most 96 characters a name; not ending in ".git".
  const ok = typeof repoId === 'string' && /^(?:[A-Za-z0-9_.-]{1,96}\/)?[A-Za-z0-9_.-]{1,96}$/.test(repoId) &&
    !repoId.includes('..') && !repoId.includes('--') && !repoId.endsWith('.git') && repoId.split('/').every((p) => !/^[.-]|[.-]$/.test(p))
  if (!ok) throw new TypeError(`${where}: ${JSON.stringify(repoId)} is not a valid Hub repo id ("name" or "org/name": letters, digits, "-", "_", "."; no "..", "--" or leading/trailing "." or "-")`)
  return repoId as string
}

/**
 * A branch, tag or commit as git's check-ref-format allows it (the Hub follows
 * git): "/"-separated parts, none empty, none starting with "."; no "..", no
 * backslash, colon, control character, space or ~^?*[; not "@" nor containing
 * "@{"; no part ending in ".lock". Besides matching what the Hub accepts, this
 * keeps refs/<revision> inside the refs folder.
 */
export function checkRevision(revision: unknown, where: string): string {
  const ok = typeof revision === 'string' && revision !== '' && revision.length <= 255 && revision !== '@' &&
    !/[\x00-\x20\x7f~^:?*[\\]/.test(revision) && !revision.includes('..') && !revision.includes('@{') &&
    revision.split('/').every((p) => p !== '' && !p.startsWith('.') && !p.endsWith('.lock'))
  if (!ok) throw new TypeError(`${where}: ${JSON.stringify(revision)} is not a valid revision (a branch, tag or commit hash; no "..", no empty or "."-led path parts, no backslash or colon)`)
  return revision as string
}

/**
 * A path inside a repo; rejected when it could escape the snapshot folder once
 * joined onto it, under POSIX or Windows rules (huggingface_hub's
 * _validate_relative_filename, plus no "." or empty parts).
 */
export function checkRepoFilename(filename: unknown, where: string): string {
  if (typeof filename !== 'string' || filename === '') throw new TypeError(`${where}: filename must be a non-empty string`)
  const parts = filename.split('/')
  if (filename.startsWith('/') || filename.includes('\\') || filename.includes('\0') || parts.some((p) => p === '..' || p === '.' || p === '' || /^[A-Za-z]:/.test(p))) {
    throw new TypeError(`${where}: ${JSON.stringify(filename)} is not a relative path inside a repo (no absolute path, drive, backslash, ".." or empty part)`)
  }
  return filename
}

/** Throws unless path lies strictly inside dir (both as given, without following links). */
export function assertInside(dir: string, path: string, what: string): string {
  const rel = relative(resolve(dir), resolve(path))
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) throw new Error(`hub cache: ${what} ${JSON.stringify(path)} lies outside ${dir}; refusing to use it`)
  return path
}

/** huggingface_hub's repo_folder_name: "models--org--name". */
export function repoFolderName(repoId: string, repoType: RepoType): string {
  return [`${repoType}s`, ...repoId.split('/')].join('--')
}

export function storageFolder(cacheDir: string, repoId: string, repoType: RepoType): string {
  checkRepoId(repoId, 'hub cache')
  checkRepoType(repoType, 'hub cache')
  return assertInside(cacheDir, join(cacheDir, repoFolderName(repoId, repoType)), 'repo folder')
}

/** snapshots/<commit>/<filename>; both parts are checked, so the result stays in the snapshot folder. */
export function pointerPath(storage: string, commit: string, filename: string): string {
  if (!REGEX_COMMIT_HASH.test(commit)) throw new Error(`hub cache: ${JSON.stringify(commit)} is not a commit hash, so it cannot name a snapshot folder`)
  checkRepoFilename(filename, 'hub cache')
  const snapshot = join(storage, 'snapshots', commit)
  return assertInside(snapshot, join(snapshot, ...filename.split('/')), 'file')
}

export function blobPath(storage: string, etag: string): string {
  if (!/^[\w.-]+$/.test(etag) || etag.startsWith('.')) throw new Error(`hub cache: the server sent an etag ${JSON.stringify(etag)} that cannot name a blob file`)
  return join(storage, 'blobs', etag)
}

function refPath(storage: string, revision: string): string {
  checkRevision(revision, 'hub cache')
  return assertInside(join(storage, 'refs'), join(storage, 'refs', ...revision.split('/')), 'ref')
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
  const path = refPath(storage, revision)
  let commit: string
  try {
    commit = readFileSync(path, 'utf8').trim()
  } catch {
    return null
  }
  if (commit === '') return null
  // The content becomes a folder name: anything but a commit hash ("../../x") could lead out of the cache.
  if (!REGEX_COMMIT_HASH.test(commit)) {
    throw new Error(`hub cache: ${path} should hold a 40-character commit hash but holds ${JSON.stringify(commit.slice(0, 80))}; refusing to use it (delete the file, then run again online)`)
  }
  return commit
}

/**
 * Records revision → commit. Revisions with "/" (refs/convert/parquet) nest as
 * folders, as in Python. Written only when it changed, since the cache may be
 * shared read-only.
 */
export function writeRef(storage: string, revision: string, commit: string): void {
  if (revision === commit) return
  if (!REGEX_COMMIT_HASH.test(commit)) throw new Error(`hub cache: refusing to record ${JSON.stringify(commit)} as the commit of ${JSON.stringify(revision)}: not a commit hash`)
  const path = refPath(storage, revision)
  try {
    if (readFileSync(path, 'utf8') === commit) return
  } catch {
    // no ref yet
  }
  makeDirs(dirname(path), 'Hub cache folder')
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
export function linkPointer(blob: string, pointer: string, storage: string): void {
  makeDirs(dirname(pointer), 'Hub cache folder')
  // A folder on the way that is a link out of snapshots/ would have the link (or the unlink below) land outside the cache.
  assertSnapshotFolder(storage, pointer)
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

/** What a snapshot entry is: a file to read, a link whose target is gone, or nothing. */
export type CachedEntry = { kind: 'file'; path: string } | { kind: 'broken'; path: string; target: string } | { kind: 'missing' }

function realOrNull(path: string): string | null {
  try {
    return realpathSync(path)
  } catch {
    return null
  }
}

function strictlyInside(dir: string, path: string): boolean {
  const rel = relative(dir, path)
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel)
}

/**
 * Classifies snapshots/<commit>/<path> of the repo folder `storage`. A link
 * may only lead into this repo's blobs/ (or, where links could not be made and
 * files were copied, stay inside snapshots/): anything else, e.g. a planted
 * link to /etc/passwd or to another repo, throws rather than being read.
 */
export function classifySnapshotEntry(storage: string, pointer: string): CachedEntry {
  let isLink: boolean
  try {
    isLink = lstatSync(pointer).isSymbolicLink()
  } catch {
    return { kind: 'missing' }
  }
  const real = realOrNull(pointer)
  if (real === null) {
    let target = '?'
    try {
      target = readlinkSync(pointer)
    } catch {
      // a missing folder on the way, not a link
    }
    return isLink ? { kind: 'broken', path: pointer, target } : { kind: 'missing' }
  }
  const blobs = realOrNull(join(storage, 'blobs'))
  const snapshots = realOrNull(join(storage, 'snapshots'))
  const ok = (blobs !== null && strictlyInside(blobs, real)) || (snapshots !== null && strictlyInside(snapshots, real))
  if (!ok) {
    throw new Error(`hub cache: ${pointer} leads to ${real}, outside the cached repo's blobs (${join(storage, 'blobs')}); refusing to read it (the cache was tampered with: delete ${join(storage, 'snapshots')} and download again)`)
  }
  return { kind: 'file', path: pointer }
}

/** Throws unless the folder that will hold pointer really (links followed) lies inside the repo's snapshots/. */
function assertSnapshotFolder(storage: string, pointer: string): void {
  const snapshots = realOrNull(join(storage, 'snapshots'))
  const folder = realOrNull(dirname(pointer))
  if (snapshots === null || folder === null || !strictlyInside(snapshots, folder)) {
    throw new Error(`hub cache: ${dirname(pointer)} leads to ${folder}, outside the repo's snapshots folder; refusing to write there (the cache was tampered with: delete the snapshot folder)`)
  }
}

/** The message for a snapshot link whose blob is gone. */
export function brokenLinkMessage(entry: { path: string; target: string }): string {
  return `the cached file ${entry.path} is a broken link: its blob ${entry.target} does not exist (the cache was partly deleted); run again online to fetch it, or delete the snapshot folder`
}

/** The cached file for repo/filename at revision, or null: never touches the network. */
export function tryLoadFromCache(cacheDir: string, repoId: string, repoType: RepoType, filename: string, revision = 'main'): string | null {
  const storage = storageFolder(cacheDir, repoId, repoType)
  const commit = readRef(storage, revision)
  if (!commit) return null
  const entry = classifySnapshotEntry(storage, pointerPath(storage, commit, filename))
  if (entry.kind === 'broken') throw new Error(`hub cache: ${brokenLinkMessage(entry)}`)
  return entry.kind === 'file' ? entry.path : null
}

export interface SnapshotListing {
  /** Usable files, as repo-relative "/"-separated paths, sorted. */
  files: string[]
  /** Links whose blob is missing, by repo-relative path. */
  broken: Map<string, { path: string; target: string }>
}

/**
 * Every entry of snapshots/<commit> (a folder of the repo folder two levels
 * up). Throws if any entry leads outside the repo's blobs.
 */
export function scanSnapshot(snapshotDir: string): SnapshotListing {
  const storage = dirname(dirname(snapshotDir))
  const files: string[] = []
  const broken = new Map<string, { path: string; target: string }>()
  const walk = (dir: string, prefix: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name
      const full = join(dir, entry.name)
      if (entry.isDirectory()) {
        walk(full, rel)
        continue
      }
      const c = classifySnapshotEntry(storage, full)
      if (c.kind === 'broken') broken.set(rel, c)
      else if (c.kind === 'file' && statSync(full).isFile()) files.push(rel)
    }
  }
  if (existsSync(snapshotDir)) {
    const real = realOrNull(snapshotDir)
    const snapshots = realOrNull(join(storage, 'snapshots'))
    if (real === null || snapshots === null || !strictlyInside(snapshots, real)) {
      throw new Error(`hub cache: the snapshot folder ${snapshotDir} leads to ${real}, outside ${join(storage, 'snapshots')}; refusing to read it`)
    }
    walk(snapshotDir, '')
  }
  return { files: files.sort(), broken }
}

/** Every usable file of a cached snapshot, as repo-relative "/"-separated paths, sorted. */
export function listSnapshotFiles(snapshotDir: string): string[] {
  return scanSnapshot(snapshotDir).files
}
