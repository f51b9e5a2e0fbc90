// Two pattern dialects, each matching the Python code whose behaviour users
// expect:
// - fnmatchToRegExp: huggingface_hub's allow_patterns / ignore_patterns, which
//   use fnmatch, where `*` also crosses `/` ("*.json" matches "a/b.json").
// - globToRegExp: the `datasets` library's data-file patterns, which use fsspec
//   glob (Python glob semantics since fsspec 2023.12): `*` stays inside one path
//   component and `**` as a whole component spans any number of them.

function escapeRegExp(ch: string): string {
  return /[\\^$.*+?()[\]{}|/-]/.test(ch) ? `\\${ch}` : ch
}

/** `[...]` at pattern[i]: returns the regex class and the index after it, or null when unterminated. */
function charClass(pattern: string, i: number): { re: string; next: number } | null {
  let j = i + 1
  if (pattern[j] === '!') j++
  if (pattern[j] === ']') j++
  while (j < pattern.length && pattern[j] !== ']') j++
  if (j >= pattern.length) return null
  let body = pattern.slice(i + 1, j)
  let negate = false
  if (body.startsWith('!')) {
    negate = true
    body = body.slice(1)
  }
  // Inside a class only these are special to a JS regex.
  body = body.replace(/[\\\]^[]/g, (c) => `\\${c}`)
  return { re: `[${negate ? '^' : ''}${body}]`, next: j + 1 }
}

/**
 * A wildcard pattern as regex source, in one dialect: `*` as star(i) says
 * (its regex and the index after it), `?` as `any`, `[...]` as a character
 * class (a lone `[` literally), everything else literally.
 */
function translate(pattern: string, any: string, star: (i: number) => { re: string; next: number }): string {
  let re = ''
  for (let i = 0; i < pattern.length;) {
    const c = pattern[i]
    if (c === '*') {
      const s = star(i)
      re += s.re
      i = s.next
    } else if (c === '?') {
      re += any
      i++
    } else if (c === '[') {
      const cls = charClass(pattern, i)
      if (cls) {
        re += cls.re
        i = cls.next
      } else {
        re += '\\['
        i++
      }
    } else {
      re += escapeRegExp(c)
      i++
    }
  }
  return re
}

/** Python's fnmatch.translate: whole-string match, `*` matches any characters including `/`. */
export function fnmatchToRegExp(pattern: string): RegExp {
  return new RegExp(`^${translate(pattern, '.', (i) => ({ re: '.*', next: i + 1 }))}$`, 's')
}

/** huggingface_hub's filter_repo_objects: a pattern ending in "/" means everything below that folder. */
export function matchesRepoPatterns(path: string, allow?: string | string[], ignore?: string | string[]): boolean {
  const list = (p: string | string[] | undefined) => (p === undefined ? undefined : (Array.isArray(p) ? p : [p]).map((x) => (x.endsWith('/') ? `${x}*` : x)))
  const allowList = list(allow)
  const ignoreList = list(ignore)
  if (allowList && !allowList.some((p) => fnmatchToRegExp(p).test(path))) return false
  if (ignoreList && ignoreList.some((p) => fnmatchToRegExp(p).test(path))) return false
  return true
}

/** One path component of a glob: `*` and `?` stay inside it. */
function globComponent(comp: string): string {
  return translate(comp, '[^/]', (i) => {
    // "**" glued to other characters acts as "*" in glob, not as a recursive wildcard.
    while (comp[i] === '*') i++
    return { re: '[^/]*', next: i }
  })
}

/** A glob over "/"-separated relative paths, as fsspec (>= 2023.12) and Python's glob match them. */
export function globToRegExp(pattern: string): RegExp {
  const comps = pattern.split('/').filter((c, i, all) => c !== '' || i === all.length - 1)
  let re = ''
  comps.forEach((comp, i) => {
    const last = i === comps.length - 1
    if (comp === '**') re += last ? '.+' : '(?:[^/]+/)*'
    else re += globComponent(comp) + (last ? '' : '/')
  })
  return new RegExp(`^${re}$`, 's')
}
