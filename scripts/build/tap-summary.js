#!/usr/bin/env node
// Reads tap's output and prints "N passed, N failed" from tap's own counts
// (its closing "# { total, pass, fail, ... }" line). A run that printed no
// counts, or exited non-zero with no failure counted, is reported as failed.
// Further arguments are logs of other checks whose last "N passed, N failed"
// line is added in (CI's install scenarios).
'use strict'
const fs = require('node:fs')
const [file, statusArg, ...extraLogs] = process.argv.slice(2)
const text = fs.readFileSync(file, 'utf8')
const status = Number(statusArg ?? 0)
let pass = 0
let fail = 0
let found = false
for (const m of text.matchAll(/^# \{ total: (\d+)([^}]*)\}/gm)) {
  found = true
  const fields = Object.fromEntries([...m[2].matchAll(/(\w+): (\d+)/g)].map((x) => [x[1], Number(x[2])]))
  pass = fields.pass ?? 0
  fail = fields.fail ?? 0
}
if (!found) {
  console.log('tap printed no summary')
  fail = Math.max(fail, 1)
} else if (status !== 0 && fail === 0) {
  console.log(`tap exited with status ${status} without counting a failure`)
  fail = 1
}
for (const extra of extraLogs) {
  let counted = null
  try {
    for (const m of fs.readFileSync(extra, 'utf8').matchAll(/(\d+) passed, (\d+) failed/g)) counted = m
  } catch { /* unreadable: counted as a failure below */ }
  if (!counted) {
    console.log(`${extra}: no "N passed, N failed" line`)
    fail += 1
    continue
  }
  pass += Number(counted[1])
  fail += Number(counted[2])
}
console.log(`${pass} passed, ${fail} failed`)
process.exit(fail === 0 && status === 0 ? 0 : 1)
