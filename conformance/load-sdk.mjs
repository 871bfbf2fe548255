// Seam's JavaScript SDK as the front desk's software, for the load run in
// hwtest/load, which starts the cloud, the bridge and the cards and says
// what to do: one JSON command per line on stdin, run concurrently, one
// JSON answer per line on stdout, in the order the calls finish.
//
//   {"id": 1, "op": "encode", "encoder": "<acs_encoder_id>"[, "credential": "<id>"]}
//       creates a credential (unless one is given: a retry), then calls
//       encodeCredential on it
//   {"id": 2, "op": "scan", "encoder": "<acs_encoder_id>"}
//       calls scanCredential
//
// Answer: {id, credential, start, end, status, attempt, error, scanned}:
// the credential encoded, the call's start and end (ms since the Unix
// epoch; the credential's creation is not timed), the action attempt's
// status and id, Seam's error type when it failed, and for a scan the
// credential the card holds. status "timeout" when the SDK stopped
// waiting (the attempt goes on; the caller polls it), "call_failed" when
// the call itself failed (error: the message). Secrets are never printed.
import { createInterface } from 'node:readline'
import { SeamHttp, SeamActionAttemptFailedError, SeamActionAttemptTimeoutError } from '@seamapi/http/connect'

const env = (name) => {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is not set`)
  return v
}
// The SDK's polling interval stays its default (1 s); it waits longer
// than the job's deadline plus a bridge restart, so an attempt it gives
// up on is one the cloud never settled.
const seam = SeamHttp.fromApiKey(env('LOAD_API_KEY'), {
  endpoint: env('LOAD_ENDPOINT'),
  waitForActionAttempt: { timeout: Number(env('LOAD_SDK_TIMEOUT_MS')) }
})
const systemId = env('LOAD_ACS_SYSTEM_ID')
const hour = 3600 * 1000
const now = () => performance.timeOrigin + performance.now()

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')

async function run (cmd) {
  const res = { id: cmd.id }
  let call
  if (cmd.op === 'encode') {
    res.credential = cmd.credential ?? (await seam.acs.credentials.create({
      acs_system_id: systemId,
      access_method: 'card',
      starts_at: new Date(Date.now() - hour).toISOString(),
      ends_at: new Date(Date.now() + 72 * hour).toISOString()
    })).acs_credential_id
    call = () => seam.acs.encoders.encodeCredential({ acs_encoder_id: cmd.encoder, acs_credential_id: res.credential })
  } else if (cmd.op === 'scan') {
    call = () => seam.acs.encoders.scanCredential({ acs_encoder_id: cmd.encoder })
  } else {
    throw new Error(`unknown op ${cmd.op}`)
  }
  res.start = now()
  try {
    const a = await call()
    res.status = a.status
    res.attempt = a.action_attempt_id
    if (cmd.op === 'scan') res.scanned = a.result?.acs_credential_on_seam?.acs_credential_id ?? null
  } catch (err) {
    if (err instanceof SeamActionAttemptFailedError) {
      res.status = 'error'
      res.attempt = err.actionAttempt.action_attempt_id
      res.error = err.code
    } else if (err instanceof SeamActionAttemptTimeoutError) {
      res.status = 'timeout'
      res.attempt = err.actionAttempt.action_attempt_id
    } else {
      res.status = 'call_failed'
      res.error = String(err?.message ?? err)
    }
  }
  res.end = now()
  return res
}

const pending = new Set()
const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  if (!line.trim()) return
  const cmd = JSON.parse(line)
  const p = run(cmd).then(out, (err) => out({ id: cmd.id, status: 'call_failed', error: String(err?.message ?? err) }))
  pending.add(p)
  p.finally(() => pending.delete(p))
})
lines.on('close', async () => {
  await Promise.all([...pending])
})
