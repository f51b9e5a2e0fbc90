#!/usr/bin/env node
// Removes the compiled output (dist/) before tsc writes it again, so a test or
// module whose source was deleted or renamed cannot keep running from a stale
// .js file. Plain Node, so it works wherever npm does (no rm -rf on Windows).
//   node scripts/build/clean-dist.js [root]   (root: the project folder, default this package)
'use strict'
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(process.argv[2] ?? path.join(__dirname, '..', '..'))
if (!fs.existsSync(path.join(root, 'package.json'))) {
  process.stderr.write(`clean-dist: ${root} has no package.json; refusing to remove anything there\n`)
  process.exit(1)
}
fs.rmSync(path.join(root, 'dist'), { recursive: true, force: true })
