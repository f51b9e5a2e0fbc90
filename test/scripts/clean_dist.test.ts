// The compiled tests that tap runs are exactly those with a source: `npm test`
// and `npm run build:ts` empty dist/ first (scripts/build/clean-dist.js), so a test file
// deleted or renamed in test/ cannot keep running from a stale dist/ copy.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'

const root = join(__dirname, '..', '..', '..')
const cleanDist = join(root, 'scripts', 'build', 'clean-dist.js')

function files(dir: string, suffix: string): string[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith(suffix)).map((f) => f.split('\\').join('/'))
}

t.test('every compiled test in dist/test has its source in test/', async (t) => {
  const compiled = files(join(root, 'dist', 'test'), '.test.js')
  t.ok(compiled.includes('scripts/clean_dist.test.js'), `found the compiled tests (${compiled.length}) where tap looks for them`)
  const stale = compiled.filter((f) => !existsSync(join(root, 'test', f.replace(/\.js$/, '.ts'))))
  t.same(stale, [], 'no compiled test without a source (run npm test or npm run build:ts, which empty dist/ first)')
})

t.test('scripts/build/clean-dist.js empties dist/ and touches nothing else', async (t) => {
  const project = mkdtempSync(join(os.tmpdir(), 'bertkit-clean-'))
  writeFileSync(join(project, 'package.json'), '{}')
  mkdirSync(join(project, 'dist', 'test', 'gone'), { recursive: true })
  writeFileSync(join(project, 'dist', 'test', 'gone', 'deleted.test.js'), '')
  mkdirSync(join(project, 'test'))
  writeFileSync(join(project, 'test', 'kept.test.ts'), '')
  const run = spawnSync(process.execPath, [cleanDist, project], { encoding: 'utf8' })
  t.equal(run.status, 0, run.stderr)
  t.notOk(existsSync(join(project, 'dist')), 'dist/ removed')
  t.ok(existsSync(join(project, 'test', 'kept.test.ts')), 'sources kept')
  t.equal(spawnSync(process.execPath, [cleanDist, project]).status, 0, 'no dist/ is fine')
  // A folder that is not a project: refuse, remove nothing.
  const other = mkdtempSync(join(os.tmpdir(), 'bertkit-clean-other-'))
  mkdirSync(join(other, 'dist'))
  const refused = spawnSync(process.execPath, [cleanDist, other], { encoding: 'utf8' })
  t.equal(refused.status, 1)
  t.match(refused.stderr, /has no package\.json; refusing to remove anything there/)
  t.ok(existsSync(join(other, 'dist')), 'nothing removed there')
  rmSync(project, { recursive: true, force: true })
  rmSync(other, { recursive: true, force: true })
})
