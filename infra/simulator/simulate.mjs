// make lint (SPEC 18): every IAM policy Keysmith ships or writes, evaluated by an IAM policy
// simulator (@cloud-copilot/iam-simulate) against the tables in expectations/. moto never
// evaluates IAM conditions; this does.
//
// Usage: node simulate.mjs <template.json> <code.json> <expectations dir>
//   template.json: template_policies.py's output (the template resolved per parameter set)
//   code.json:     the policies the Rust code renders (cargo run -p keysmith-tests --bin policies)
//
// A table (expectations/*.json) names a principal and its policies, then rows:
//   {"table": "...", "principal": "...", "identity": [policy refs], "boundary": [policy refs],
//    "resourcePolicy": policy ref, "context": {...},
//    "rows": [{"why" | "attack": "...", "action": "...", "resource": "...", "context": {...},
//              "expect": "Allowed" | "ExplicitlyDenied" | "ImplicitlyDenied" | "Denied"
//                        | {"<parameter set>": ..., "*": ...},
//              "variants": ["default"], "only": ["<each name>"], "xfail": "issue 21: reason"}]}
// "each": [{"name": ..., "principal": ..., "identity": [...]}, ...] runs the rows once per entry.
// A row or table may override identity/boundary/resourcePolicy/principal. Policy refs:
// "template:<owner>" (every document of that resource), "trust:<role>", "code:<name>", or an
// inline policy document. Strings may hold {{placeholders}}: template_policies.py's values and
// "code.<name>" for the code's sample values.
//
// Exit 1 on any mismatch, on a simulator error (a policy it refuses, an unknown action) and on a
// context key the action does not have (a row that proves nothing), each printed.

import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { runSimulation } from '@cloud-copilot/iam-simulate'

const [templatePath, codePath, dir] = process.argv.slice(2)
if (!dir) {
  console.error('usage: node simulate.mjs <template.json> <code.json> <expectations dir>')
  process.exit(2)
}
const template = JSON.parse(readFileSync(templatePath, 'utf8'))
const code = JSON.parse(readFileSync(codePath, 'utf8'))
// A table with "each": [{...}, ...] runs its rows once per entry (e.g. per function role).
const tables = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .flatMap((f) => {
    const { each, ...table } = JSON.parse(readFileSync(join(dir, f), 'utf8'))
    return (each ?? [{}]).map((e) => ({ ...table, ...e, file: e.name ? `${f} (${e.name})` : f }))
  })

const ACCOUNT = '123456789012'
const RESULTS = ['Allowed', 'ExplicitlyDenied', 'ImplicitlyDenied']

function substitute(value, values, where) {
  if (typeof value === 'string') {
    return value.replace(/\{\{([^}]+)\}\}/g, (_, name) => {
      if (!(name in values)) throw new Error(`${where}: unknown placeholder {{${name}}}`)
      return values[name]
    })
  }
  if (Array.isArray(value)) return value.map((v) => substitute(v, values, where))
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, values, where)]))
  }
  return value
}

function policies(ref, variant, where) {
  if (typeof ref === 'object') return [{ name: 'inline', policy: ref }]
  const [kind, name] = [ref.slice(0, ref.indexOf(':')), ref.slice(ref.indexOf(':') + 1)]
  let docs
  if (kind === 'template') docs = variant.policies[name]
  else if (kind === 'trust') docs = variant.trust[name] && [variant.trust[name]]
  else if (kind === 'code') docs = code.policies[name] && [code.policies[name]]
  if (!docs) throw new Error(`${where}: no policy ${ref} in this parameter set`)
  return docs.map((policy, i) => ({ name: `${ref}#${i}`, policy }))
}

function expected(row, variantName) {
  const e = row.expect
  if (typeof e === 'string') return e
  return e[variantName] ?? e['*']
}

function matches(want, got) {
  return want === got || (want === 'Denied' && got !== 'Allowed')
}

const started = Date.now()
const counts = { rows: 0, allowed: 0, denied: 0, xfail: 0, xpass: 0 }
const failures = []
const notes = []

for (const [variantName, variant] of Object.entries(template.variants)) {
  const values = { ...variant.values }
  for (const [k, v] of Object.entries(code.values)) values[`code.${k}`] = v
  for (const table of tables) {
    for (const [i, rawRow] of table.rows.entries()) {
      const where = `${table.file} row ${i + 1} [${variantName}]`
      if (rawRow.variants && !rawRow.variants.includes(variantName)) continue
      const want = expected(rawRow, variantName)
      if (want === undefined) continue
      const label = rawRow.attack ? `attack: ${rawRow.attack}` : `allowed path: ${rawRow.why}`
      try {
        if (!RESULTS.includes(want) && want !== 'Denied') throw new Error(`bad expect ${want}`)
        const row = substitute({ ...table, ...rawRow, rows: undefined, name: undefined }, values, where)
        if (rawRow.only && !rawRow.only.includes(table.name)) continue
        // A row's context adds to (and may blank out, with "") its table's.
        const context = substitute({ ...(table.context ?? {}), ...(rawRow.context ?? {}) }, values, where)
        for (const [k, v] of Object.entries(context)) if (v === '') delete context[k]
        const simulation = {
          request: {
            principal: row.principal,
            action: row.action,
            resource: { resource: row.resource, accountId: row.resourceAccount ?? ACCOUNT },
            contextVariables: context
          },
          identityPolicies: (row.identity ?? []).flatMap((r) => policies(r, variant, where)),
          serviceControlPolicies: [],
          resourceControlPolicies: [],
          permissionBoundaryPolicies: row.boundary
            ? row.boundary.flatMap((r) => policies(r, variant, where))
            : undefined,
          resourcePolicy: row.resourcePolicy
            ? policies(row.resourcePolicy, variant, where)[0].policy
            : undefined
        }
        const result = await runSimulation(simulation, {})
        counts.rows++
        if (result.resultType === 'error') {
          failures.push(`${where}: ${label}\n    simulator error: ${JSON.stringify(result.errors)}`)
          continue
        }
        const ignored = (result.resultType === 'single' ? [result.result] : result.results).flatMap(
          (r) => r.ignoredContextKeys ?? []
        )
        if (ignored.length) {
          failures.push(
            `${where}: ${label}\n    context keys ${ignored.join(', ')} do not apply to ${row.action} on ${row.resource}`
          )
          continue
        }
        const got = result.overallResult
        counts[got === 'Allowed' ? 'allowed' : 'denied']++
        const ok = matches(want, got)
        if (rawRow.xfail) {
          if (ok) {
            counts.xpass++
            notes.push(`${where}: XPASS (${rawRow.xfail}): ${label}: now ${got}; drop the xfail flag`)
          } else {
            counts.xfail++
          }
          continue
        }
        if (!ok) {
          failures.push(
            `${where}: ${label}\n    ${row.action} on ${row.resource} by ${row.principal}: expected ${want}, simulator says ${got}`
          )
        }
      } catch (e) {
        failures.push(`${where}: ${label}\n    ${e.message}`)
      }
    }
  }
}

for (const n of notes) console.log(n)
for (const f of failures) console.log(`MISMATCH ${f}`)
const seconds = ((Date.now() - started) / 1000).toFixed(1)
console.log(
  `iam-simulate: ${counts.rows} decisions (${counts.allowed} allowed, ${counts.denied} denied) over ` +
    `${tables.length} tables x ${Object.keys(template.variants).length} parameter sets in ${seconds} s; ` +
    `${failures.length} mismatches, ${counts.xfail} expected failures (xfail), ${counts.xpass} xpass`
)
process.exit(failures.length ? 1 : 0)
