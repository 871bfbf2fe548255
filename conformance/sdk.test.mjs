// Conformance: Seam's own JavaScript SDK drives the encoder-bridge cloud,
// which hands the jobs to a real encoder-bridge process writing virtual
// cards through the real pcscd. Run with `npm test` (make conformance).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { SeamActionAttemptFailedError } from '@seamapi/http/connect'
import { SeamWebhook, SeamWebhookVerificationError } from '@seamapi/webhook'
import { Stack } from './lib/stack.mjs'

let stack
let seam

before(async () => {
  stack = await Stack.start({ jobTimeout: '10s', devWebhooks: true })
  seam = stack.seam
})

after(async () => {
  if (process.exitCode) console.error(stack?.logs())
  await stack?.stop()
})

const hour = 3600 * 1000

async function newCredential (overrides = {}) {
  return await seam.acs.credentials.create({
    acs_system_id: stack.boot.acs_system_id,
    access_method: 'card',
    starts_at: new Date(Date.now() - hour).toISOString(),
    ends_at: new Date(Date.now() + 72 * hour).toISOString(),
    ...overrides
  })
}

// failure runs fn, which must fail its action attempt, and returns the
// error type the SDK reports.
async function failure (fn) {
  try {
    await fn()
  } catch (err) {
    if (err instanceof SeamActionAttemptFailedError) return err.code
    throw err
  }
  assert.fail('the action attempt succeeded')
}

const encode = (credential) => seam.acs.encoders.encodeCredential({
  acs_encoder_id: stack.encoder.acs_encoder_id,
  acs_credential_id: credential.acs_credential_id
})
const scan = () => seam.acs.encoders.scanCredential({ acs_encoder_id: stack.encoder.acs_encoder_id })

test('lists the bridge encoder in Seam shape', async () => {
  const encoders = await seam.acs.encoders.list()
  const e = encoders.find((x) => x.acs_encoder_id === stack.encoder.acs_encoder_id)
  assert.ok(e, 'encoder listed')
  for (const k of ['acs_encoder_id', 'acs_system_id', 'workspace_id', 'connected_account_id', 'created_at', 'display_name', 'errors']) {
    assert.ok(k in e, `acs_encoder.${k}`)
  }
  const got = await seam.acs.encoders.get({ acs_encoder_id: e.acs_encoder_id })
  assert.equal(got.acs_encoder_id, e.acs_encoder_id)
})

for (const kind of ['mifare_classic_1k', 'ntag213', 'mifare_desfire_ev2', 'mifare_desfire_ev3']) {
  test(`encodes a credential onto a ${kind} card and scans it back`, async () => {
    await stack.insertCard(kind)
    const cred = await newCredential()
    assert.equal(cred.is_issued, false)
    const attempt = await encode(cred)
    assert.equal(attempt.status, 'success')
    assert.equal(attempt.action_type, 'ENCODE_CREDENTIAL')
    const issued = attempt.result
    assert.equal(issued.acs_credential_id, cred.acs_credential_id)
    assert.equal(issued.access_method, 'card')
    assert.equal(issued.is_issued, true)
    assert.ok(issued.issued_at)
    assert.ok(issued.card_number)

    const fetched = await seam.acs.credentials.get({ acs_credential_id: cred.acs_credential_id })
    assert.equal(fetched.is_issued, true)
    assert.equal(fetched.card_number, issued.card_number)

    const s = await scan()
    assert.equal(s.status, 'success')
    assert.equal(s.action_type, 'SCAN_CREDENTIAL')
    assert.equal(s.result.acs_credential_on_encoder.card_number, issued.card_number)
    assert.equal(s.result.acs_credential_on_seam.acs_credential_id, cred.acs_credential_id)
    assert.deepEqual(s.result.warnings, [])
  })
}

// The cloud holds the answer of encode_credential and scan_credential
// while the card is encoded or read, so the SDK's first answer is settled
// and it resolves without polling: no /action_attempts/get reaches the
// cloud (counted in its request log).
test('encodeCredential and scanCredential settle on the first answer, without polling', async () => {
  await stack.insertCard('mifare_classic_1k')
  const polls = () => (stack.cloud.output.match(/"path":"\/action_attempts\/get"/g) ?? []).length
  const cred = await newCredential()
  const before = polls()

  const first = await seam.acs.encoders.encodeCredential(
    { acs_encoder_id: stack.encoder.acs_encoder_id, acs_credential_id: cred.acs_credential_id },
    { waitForActionAttempt: false })
  assert.equal(first.status, 'success')
  assert.equal(first.result.acs_credential_id, cred.acs_credential_id)
  assert.equal(first.result.is_issued, true)

  const encoded = await encode(cred)
  assert.equal(encoded.status, 'success')
  const scanned = await scan()
  assert.equal(scanned.status, 'success')
  assert.equal(scanned.result.acs_credential_on_seam.acs_credential_id, cred.acs_credential_id)
  const assigned = await seam.acs.encoders.scanToAssignCredential({
    acs_encoder_id: stack.encoder.acs_encoder_id,
    acs_user_id: '0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b'
  })
  assert.equal(assigned.status, 'success')
  assert.equal(assigned.result.acs_credential_id, cred.acs_credential_id)

  // The cloud logs a request just after answering it: one more request,
  // once logged, orders every earlier line before the count.
  const gets = () => (stack.cloud.output.match(/"path":"\/acs\/encoders\/get"/g) ?? []).length
  const g = gets()
  await seam.acs.encoders.get({ acs_encoder_id: stack.encoder.acs_encoder_id })
  for (let i = 0; gets() === g && i < 100; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  assert.equal(polls() - before, 0, 'the SDK polled /action_attempts/get')
})

test('encodes by access_method_id; credentials list', async () => {
  await stack.insertCard('mifare_classic_1k')
  const cred = await newCredential()
  const list = await seam.acs.credentials.list({ acs_system_id: stack.boot.acs_system_id })
  assert.ok(list.some((c) => c.acs_credential_id === cred.acs_credential_id))
  const accessMethodId = cred.encoder_bridge_metadata.access_method_id
  assert.ok(accessMethodId, 'the credential names its card access method')
  const attempt = await seam.acs.encoders.encodeCredential({
    acs_encoder_id: stack.encoder.acs_encoder_id,
    access_method_id: accessMethodId
  })
  assert.equal(attempt.status, 'success')
  assert.equal(attempt.result.acs_credential_id, cred.acs_credential_id)
  assert.equal(attempt.result.is_issued, true)
})

test('encode error: no card on the encoder', async () => {
  await stack.removeCard()
  assert.equal(await failure(async () => encode(await newCredential())), 'no_credential_on_encoder')
})

test('scan error: no card on the encoder', async () => {
  await stack.removeCard()
  assert.equal(await failure(scan), 'no_credential_on_encoder')
})

test('encode error: card too small for the record', async () => {
  await stack.insertCard('mifare_ultralight_ev1_mf0ul11')
  assert.equal(await failure(async () => encode(await newCredential())), 'incompatible_card_format')
})

// A card lifted mid-write and put back (2 s later) within the job's time
// is written again: the bridge waits for the same card and settles by what
// it holds.
test('encode: card pulled away while writing and put back', async () => {
  await stack.insertCard('mifare_classic_1k', ['--remove-after', '14'])
  const cred = await newCredential()
  const encoded = await encode(cred)
  assert.equal(encoded.status, 'success')
  const s = await scan()
  assert.equal(s.result.acs_credential_on_seam.acs_credential_id, cred.acs_credential_id)
  assert.deepEqual(s.result.warnings, [])
})

test('encode error: card pulled away while writing and not put back', async () => {
  await stack.insertCard('mifare_classic_1k', ['--remove-after', '14', '--stay-out'])
  const cred = await newCredential()
  assert.equal(await failure(async () => encode(cred)), 'encoding_interrupted')
  const fetched = await seam.acs.credentials.get({ acs_credential_id: cred.acs_credential_id })
  assert.equal(fetched.is_issued, false)
})

test('simulated failures', async () => {
  await stack.insertCard('mifare_classic_1k')
  const id = stack.encoder.acs_encoder_id
  for (const code of ['uncategorized_error', 'action_attempt_expired']) {
    await seam.acs.encoders.simulate.nextCredentialEncodeWillFail({ acs_encoder_id: id, error_code: code })
    assert.equal(await failure(async () => encode(await newCredential())), code)
    await seam.acs.encoders.simulate.nextCredentialScanWillFail({ acs_encoder_id: id, error_code: code })
    assert.equal(await failure(scan), code)
  }
})

test('encode and scan errors: bridge offline', async () => {
  await stack.stopBridge()
  try {
    assert.equal(await failure(async () => encode(await newCredential())), 'encoder_not_online')
    assert.equal(await failure(scan), 'encoder_not_online')
  } finally {
    await stack.startBridge()
  }
})

test('encode error: bridge lost in the middle of a job', async () => {
  await stack.removeCard()
  const cred = await newCredential()
  const pending = failure(() => encode(cred))
  // The job is with the bridge, waiting for a card; the bridge dies.
  await new Promise((resolve) => setTimeout(resolve, 1000))
  await stack.stopBridge('SIGKILL')
  try {
    assert.equal(await pending, 'bridge_disconnected')
  } finally {
    await stack.startBridge()
  }
})

test('encode error: an issued credential whose validity has ended', async () => {
  await stack.insertCard('mifare_classic_1k')
  const cred = await newCredential({ ends_at: new Date(Date.now() + 5000).toISOString() })
  assert.equal((await encode(cred)).status, 'success')
  const ended = Date.parse(cred.ends_at) - Date.now()
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, ended) + 500))
  assert.equal(await failure(() => encode(cred)), 'credential_cannot_be_reissued')
})

test('scan warnings: an older card of a reissued credential, and a card the cloud does not know', async () => {
  const { join } = await import('node:path')
  const first = join(stack.dir, 'first-card.json')
  const second = join(stack.dir, 'second-card.json')
  const cred = await newCredential()

  // The credential on a first card, then reissued onto a second one.
  await stack.insertCard('mifare_classic_1k', ['--state', first])
  assert.equal((await encode(cred)).status, 'success')
  await stack.insertCard('mifare_classic_1k', ['--state', second])
  assert.equal((await encode(cred)).status, 'success')

  // The first card still carries the older issue sequence.
  await stack.insertCard(null, ['--state', first])
  let s = await scan()
  assert.equal(s.result.acs_credential_on_seam.acs_credential_id, cred.acs_credential_id)
  assert.deepEqual(s.result.warnings.map((w) => w.warning_code), ['acs_credential_on_encoder_out_of_sync'])

  // A card written at the desk with this site's keys but a credential the
  // cloud never issued.
  stack.run('encoder-bridge', ['encode', '--keys', join(stack.dir, 'keys.json'), '--reader', stack.reader,
    '--credential', stack.credentialFile({ credential_id: '0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b', card_number: '777' })])
  s = await scan()
  assert.equal(s.result.acs_credential_on_encoder.card_number, '777')
  assert.equal(s.result.acs_credential_on_seam, null)
  assert.deepEqual(s.result.warnings.map((w) => w.warning_code), ['acs_credential_on_seam_not_found'])
})

// startReceiver runs a webhook endpoint on loopback that keeps each
// delivery's raw body and headers.
async function startReceiver () {
  const deliveries = []
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (d) => { body += d })
    req.on('end', () => {
      deliveries.push({ body, headers: req.headers })
      res.writeHead(204).end()
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}/seam-webhook`,
    deliveries,
    async next (timeoutMs = 15000) {
      const end = Date.now() + timeoutMs
      while (deliveries.length === 0) {
        if (Date.now() > end) throw new Error('no webhook delivery arrived')
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      return deliveries.shift()
    },
    close: () => new Promise((resolve) => server.close(resolve))
  }
}

let webhookSecret

test('webhooks: an encode\'s acs_credential.issued arrives, and Seam\'s own verifier accepts it', async () => {
  const receiver = await startReceiver()
  try {
    const since = new Date(Date.now() - 1000).toISOString()
    const hook = await seam.webhooks.create({ url: receiver.url, event_types: ['acs_credential.issued'] })
    webhookSecret = hook.secret
    assert.match(hook.secret, /^whsec_/)
    assert.deepEqual(hook.event_types, ['acs_credential.issued'])

    await stack.insertCard('mifare_classic_1k')
    const cred = await newCredential()
    assert.equal((await encode(cred)).status, 'success')

    const delivery = await receiver.next()
    const event = new SeamWebhook(hook.secret).verify(delivery.body, delivery.headers)
    assert.equal(event.event_type, 'acs_credential.issued')
    assert.equal(event.acs_credential_id, cred.acs_credential_id)
    assert.equal(event.workspace_id, stack.encoder.workspace_id)
    assert.equal(event.acs_system_id, stack.boot.acs_system_id)
    for (const k of ['event_id', 'created_at', 'occurred_at']) assert.ok(event[k], `event.${k}`)
    // Another secret, or a body changed on the way, does not verify.
    const other = await seam.webhooks.create({ url: receiver.url, event_types: ['acs_encoder.removed'] })
    assert.throws(() => new SeamWebhook(other.secret).verify(delivery.body, delivery.headers), SeamWebhookVerificationError)
    assert.throws(() => new SeamWebhook(hook.secret).verify(delivery.body.replace(cred.acs_credential_id, '00000000-0000-4000-8000-000000000000'), delivery.headers),
      SeamWebhookVerificationError)
    await seam.webhooks.delete({ webhook_id: other.webhook_id })

    // The same event through /events/list and /events/get.
    const listed = await seam.events.list({ since, event_type: 'acs_credential.issued' })
    assert.deepEqual(listed.filter((e) => e.event_id === event.event_id), [event])
    const byCredential = await seam.events.list({ acs_credential_id: cred.acs_credential_id })
    assert.deepEqual(byCredential.map((e) => e.event_type), ['acs_credential.issued'])
    assert.deepEqual(await seam.events.get({ event_id: event.event_id }), event)

    // Manage it as Seam's SDK does: get, list, update (PUT), delete (DELETE).
    const got = await seam.webhooks.get({ webhook_id: hook.webhook_id })
    assert.equal(got.url, receiver.url)
    assert.equal(got.secret, undefined, 'the secret is shown on create only')
    assert.ok((await seam.webhooks.list()).some((w) => w.webhook_id === hook.webhook_id))
    await seam.webhooks.update({ webhook_id: hook.webhook_id, event_types: ['acs_credential.issued', 'acs_credential.reissued'] })
    assert.deepEqual((await seam.webhooks.get({ webhook_id: hook.webhook_id })).event_types, ['acs_credential.issued', 'acs_credential.reissued'])
    await seam.webhooks.delete({ webhook_id: hook.webhook_id })
    assert.ok(!(await seam.webhooks.list()).some((w) => w.webhook_id === hook.webhook_id))
  } finally {
    await receiver.close()
  }
})

// Last, over the output of every process the tests above ran (cloud,
// bridges at debug level, virtual cards): no API key, bridge token or site
// key, as text, hex or base64.
test('secrets: no key, token or API key in any process output', async () => {
  const { readFileSync } = await import('node:fs')
  const { join } = await import('node:path')
  const keys = JSON.parse(readFileSync(join(stack.dir, 'keys.json'), 'utf8'))
  const secrets = new Map([[stack.boot.api_key, 'the API key'], [stack.boot.bridge_token, 'the bridge token']])
  if (webhookSecret) secrets.set(webhookSecret, 'a webhook secret')
  for (const v of keys.versions) {
    for (const [what, k] of [['a MAC key', v.mac_key], ['a diversification key', v.div_key]]) {
      const b = Buffer.from(k, 'hex')
      for (const s of [k.toLowerCase(), k.toUpperCase(), b.toString('base64').replace(/=+$/, ''), b.toString('base64url')]) secrets.set(s, what)
    }
  }
  const bridges = stack.procs.filter((p) => p.name === 'bridge')
  assert.ok(bridges.some((p) => /\tDEBUG\t/.test(p.output)), 'the bridge logged nothing at debug level')
  const leaks = []
  for (const p of stack.procs) {
    for (const [s, what] of secrets) if (p.output.includes(s)) leaks.push(`${p.log} shows ${what}`)
  }
  assert.deepEqual(leaks, [])
})
