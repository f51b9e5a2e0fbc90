// Reading the small JSON files of a sentence-transformers folder, with errors that name the file.
import { readFileSync } from 'node:fs'

export function readJson(path: string): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new Error(`${path}: cannot read (${(err as Error).message})`)
  }
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`)
  }
}

export function readJsonObject(path: string): Record<string, unknown> {
  const value = readJson(path)
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${path}: expected a JSON object`)
  return value as Record<string, unknown>
}
