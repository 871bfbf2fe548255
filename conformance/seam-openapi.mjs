// Writes the part of Seam's OpenAPI description that the cloud speaks
// (encoders, credentials, systems, access methods, action attempts, events
// and webhooks) from the @seamapi/types package
// pinned in package-lock.json, so the Go tests compare the cloud's answers
// with the same version of the spec that the SDK tests use.
//
//   make seam-openapi   (from the repository root)
import { readFileSync, writeFileSync } from 'node:fs'
import { openapi } from '@seamapi/types/connect'

const out = process.argv[2]
if (!out) {
  console.error('usage: node seam-openapi.mjs OUT.json')
  process.exit(2)
}

// The package does not export its package.json; read it where npm put it.
const pkg = JSON.parse(readFileSync(new URL('./node_modules/@seamapi/types/package.json', import.meta.url), 'utf8'))

const paths = [
  '/access_methods/get',
  '/acs/credentials/create',
  '/acs/credentials/get',
  '/acs/credentials/list',
  '/acs/encoders/encode_credential',
  '/acs/encoders/get',
  '/acs/encoders/list',
  '/acs/encoders/scan_credential',
  '/acs/encoders/scan_to_assign_credential',
  '/acs/encoders/simulate/next_credential_encode_will_fail',
  '/acs/encoders/simulate/next_credential_encode_will_succeed',
  '/acs/encoders/simulate/next_credential_scan_will_fail',
  '/acs/encoders/simulate/next_credential_scan_will_succeed',
  '/acs/systems/get',
  '/acs/systems/list',
  '/action_attempts/get',
  '/events/get',
  '/events/list',
  '/webhooks/create',
  '/webhooks/delete',
  '/webhooks/get',
  '/webhooks/list',
  '/webhooks/update',
]
const schemas = ['access_method', 'acs_credential', 'acs_encoder', 'acs_system', 'action_attempt', 'event', 'webhook']
// Of the action attempt's many variants, the encoder ones.
const actionTypes = new Set(['ENCODE_CREDENTIAL', 'SCAN_CREDENTIAL', 'SCAN_TO_ASSIGN_CREDENTIAL'])
// Of the events, this domain's.
const eventPrefixes = ['acs_encoder.', 'acs_credential.', 'access_method.']

const trimmed = {
  info: { source: `npm @seamapi/types ${pkg.version} (MIT), lib/seam/connect/openapi.js, trimmed to encoders, events and webhooks` },
  paths: {},
  schemas: {},
}
for (const p of paths) {
  if (!openapi.paths[p]) throw new Error(`@seamapi/types ${pkg.version} has no route ${p}`)
  trimmed.paths[p] = openapi.paths[p]
}
for (const s of schemas) {
  const schema = openapi.components.schemas[s]
  if (!schema) throw new Error(`@seamapi/types ${pkg.version} has no schema ${s}`)
  trimmed.schemas[s] = schema
}
const aa = trimmed.schemas.action_attempt
trimmed.schemas.action_attempt = {
  ...aa,
  oneOf: aa.oneOf.filter((v) => v.properties?.action_type?.enum?.some((t) => actionTypes.has(t))),
}
const ev = trimmed.schemas.event
trimmed.schemas.event = {
  ...ev,
  oneOf: ev.oneOf.filter((v) => v.properties?.event_type?.enum?.some((t) => eventPrefixes.some((p) => t.startsWith(p)))),
}
writeFileSync(out, JSON.stringify(trimmed, null, 2) + '\n')
