// kafkajs over SSL (tests/integration/test_tls.py): produce cfg.count records to cfg.topic,
// consume them back, print one line "RESULT <json>". Every wait is bounded by deadline_s.
//
// Usage: node tls.js '{"brokers": "127.0.0.1:9093", "topic": "t", "count": 100,
//                      "ca": "/path/ca.crt", "cert": "...", "key": "..."}'
'use strict'

const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')

const cfg = JSON.parse(process.argv[2])
const deadline = Date.now() + (cfg.deadline_s || 60) * 1000
const ssl = { ca: [fs.readFileSync(cfg.ca, 'utf-8')] }
if (cfg.cert) {
  ssl.cert = fs.readFileSync(cfg.cert, 'utf-8')
  ssl.key = fs.readFileSync(cfg.key, 'utf-8')
}
const kafka = new Kafka({
  clientId: 'pybroker-kafkajs-tls',
  brokers: [cfg.brokers],
  ssl,
  logLevel: logLevel.NOTHING,
  connectionTimeout: 5000,
  requestTimeout: 10000,
  retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 10 },
})

async function main() {
  const producer = kafka.producer({ allowAutoTopicCreation: true })
  await producer.connect()
  const messages = []
  for (let i = 0; i < cfg.count; i++) messages.push({ value: `tls-${i}` })
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
  process.stdout.write(`RESULT ${JSON.stringify({ consumed: seen })}\n`)
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stdout.write(`RESULT ${JSON.stringify({ error: String(err) })}\n`)
    process.exit(1)
  },
)
