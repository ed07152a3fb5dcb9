// kafkajs over SASL (tests/integration/test_sasl.py): produce cfg.count records to cfg.topic,
// consume them back, print one line "RESULT <json>". Every wait is bounded by deadline_s.
// With cfg.expect_auth_failure it only connects and reports the error it got.
//
// Usage: node sasl.js '{"brokers": "127.0.0.1:9094", "topic": "t", "count": 100,
//                       "mechanism": "scram-sha-256", "username": "u", "password": "p"}'
//        (OAUTHBEARER: "mechanism": "oauthbearer", "token": "<unsecured JWS>")
'use strict'

const { Kafka, logLevel } = require('kafkajs')

const cfg = JSON.parse(process.argv[2])
const deadline = Date.now() + (cfg.deadline_s || 60) * 1000
const sasl =
  cfg.mechanism === 'oauthbearer'
    ? { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: cfg.token }) }
    : { mechanism: cfg.mechanism, username: cfg.username, password: cfg.password }
const kafka = new Kafka({
  clientId: 'pybroker-kafkajs-sasl',
  brokers: [cfg.brokers],
  sasl,
  logLevel: logLevel.NOTHING,
  connectionTimeout: 5000,
  requestTimeout: 10000,
  retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: cfg.expect_auth_failure ? 0 : 10 },
})

async function roundtrip() {
  const producer = kafka.producer({ allowAutoTopicCreation: true })
  await producer.connect()
  const messages = []
  for (let i = 0; i < cfg.count; i++) messages.push({ value: `sasl-${i}` })
  await producer.send({ topic: cfg.topic, messages, acks: -1 })
  await producer.disconnect()

  const consumer = kafka.consumer({ groupId: `${cfg.topic}-group` })
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
    }, 50)
    consumer.run({ eachMessage: async ({ message }) => { seen.push(message.value.toString()) } })
  })
  await consumer.disconnect()
  return { consumed: seen }
}

async function authFailure() {
  const admin = kafka.admin()
  try {
    await admin.connect()
    await admin.listTopics()
    return { error: null }
  } catch (err) {
    return { error: String(err), type: err.type || err.name }
  } finally {
    await admin.disconnect().catch(() => {})
  }
}

;(cfg.expect_auth_failure ? authFailure() : roundtrip()).then(
  (result) => {
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`)
    process.exit(0)
  },
  (err) => {
    process.stdout.write(`RESULT ${JSON.stringify({ error: String(err) })}\n`)
    process.exit(1)
  },
)
