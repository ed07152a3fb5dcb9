// kafkajs for the security matrix (tests/integration/test_security_matrix.py): produce
// cfg.count keyed records to cfg.topic over TLS and/or SASL, consume them back through a
// group, print one line "RESULT <json>". Every wait is bounded by deadline_s.
//
// Usage: node matrix.js '{"brokers": "127.0.0.1:9094", "topic": "t", "count": 20,
//                         "clientId": "case-id", "ssl": {"ca": "/ca.crt", "cert": "...",
//                         "key": "..."}, "sasl": {"mechanism": "plain", "username": "u",
//                         "password": "p"}}'   (OAUTHBEARER: {"mechanism": "oauthbearer",
//                         "token": "<unsecured JWS>"}; "ssl"/"sasl" absent = not used)
'use strict'

const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')

const cfg = JSON.parse(process.argv[2])
const deadline = Date.now() + (cfg.deadline_s || 60) * 1000

function sslOptions() {
  if (!cfg.ssl) return undefined
  const ssl = { ca: [fs.readFileSync(cfg.ssl.ca, 'utf-8')] }
  if (cfg.ssl.cert) {
    ssl.cert = fs.readFileSync(cfg.ssl.cert, 'utf-8')
    ssl.key = fs.readFileSync(cfg.ssl.key, 'utf-8')
  }
  return ssl
}

function saslOptions() {
  const s = cfg.sasl
  if (!s) return undefined
  if (s.mechanism === 'oauthbearer') {
    return { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: s.token }) }
  }
  return { mechanism: s.mechanism, username: s.username, password: s.password }
}

const kafka = new Kafka({
  clientId: cfg.clientId,
  brokers: [cfg.brokers],
  ssl: sslOptions(),
  sasl: saslOptions(),
  logLevel: logLevel.NOTHING,
  connectionTimeout: 5000,
  requestTimeout: 10000,
  retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 10 },
})

async function roundtrip() {
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()
  const messages = []
  for (let i = 0; i < cfg.count; i++) messages.push({ key: cfg.keys[i], value: cfg.values[i] })
  await producer.send({ topic: cfg.topic, messages, acks: -1 })
  await producer.disconnect()

  // A short long-poll: disconnect() waits for the fetch in flight.
  const consumer = kafka.consumer({ groupId: `${cfg.topic}-group`, maxWaitTimeInMs: 100 })
  await consumer.connect()
  await consumer.subscribe({ topic: cfg.topic, fromBeginning: true })
  const seen = []
  await new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      if (seen.length >= cfg.count) {
        clearInterval(timer)
        resolve()
      } else if (Date.now() > deadline) {
        clearInterval(timer)
        reject(new Error(`consumed ${seen.length} of ${cfg.count} before the deadline`))
      }
    }, 20)
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.push([message.key.toString(), message.value.toString()])
      },
    })
  })
  await consumer.disconnect()
  return { consumed: seen }
}

roundtrip().then(
  (result) => {
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`)
    process.exit(0)
  },
  (err) => {
    process.stdout.write(`RESULT ${JSON.stringify({ error: String(err) })}\n`)
    process.exit(1)
  },
)
