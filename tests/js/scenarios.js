// kafkajs scenarios the Python integration tests drive (tests/integration/test_transactions_clients.py).
//
// Usage: node scenarios.js '<json config>'. Each scenario prints progress lines and, last,
// one line "RESULT <json>". Every wait is bounded by config.deadline_s.
'use strict'

const { Kafka, logLevel } = require('kafkajs')

const cfg = JSON.parse(process.argv[2])
const deadline = Date.now() + (cfg.deadline_s || 60) * 1000
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const kafka = new Kafka({
  clientId: 'pybroker-kafkajs',
  brokers: [cfg.brokers],
  logLevel: logLevel.NOTHING,
  connectionTimeout: 3000,
  requestTimeout: 10000,
  retry: { initialRetryTime: 50, maxRetryTime: 1000, retries: 10 },
})

function result(obj) {
  process.stdout.write(`RESULT ${JSON.stringify(obj)}\n`)
}

function pad(n, width) {
  return String(n).padStart(width, '0')
}

// The records of tests/support/clients.py: key_of, value_of, timestamp_of; one header.
const FILLER = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ'.repeat(2)
const keyOf = (i) => `key-${pad(i % 1000, 4)}`
const valueOf = (i) => `value-${pad(i, 6)}-${FILLER.slice(0, (i * 7) % 123)}`

async function idempotent() {
  // Chunks of records, each sent to one partition (chunk n to n % partitions, so that a
  // key stays in one partition): a chunk's offsets are consecutive from the base offset
  // the broker acknowledges, retries included.
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const placements = new Array(cfg.count)
  const chunk = cfg.chunk || 50
  for (let start = 0, n = 0; start < cfg.count; start += chunk, n++) {
    const partition = n % cfg.partitions
    const messages = []
    for (let i = start; i < Math.min(start + chunk, cfg.count); i++) {
      messages.push({
        partition,
        key: keyOf(i),
        value: valueOf(i),
        headers: { idx: pad(i, 6) },
        timestamp: String(cfg.base_ts + 2 * i),
      })
    }
    const [meta] = await producer.send({ topic: cfg.topic, messages, acks: -1 })
    const base = Number(meta.baseOffset)
    messages.forEach((_, k) => {
      placements[start + k] = [partition, base + k]
    })
  }
  await producer.disconnect()
  result({ placements })
}

async function consumeAll(groupId, readUncommitted, topic, expected) {
  const consumer = kafka.consumer({ groupId, readUncommitted, sessionTimeout: 6000 })
  const values = []
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ message }) => {
      values.push(message.value.toString())
    },
  })
  while (values.length < expected && Date.now() < deadline) await sleep(50)
  await sleep(300) // anything beyond the expected count would show up here
  await consumer.disconnect()
  return values
}

async function commitAbort() {
  const producer = kafka.producer({
    transactionalId: cfg.txn_id,
    idempotent: true,
    maxInFlightRequests: 1,
  })
  await producer.connect()
  const committed = cfg.committed.map((value) => ({ value }))
  const aborted = cfg.aborted.map((value) => ({ value }))
  let txn = await producer.transaction()
  await txn.send({ topic: cfg.topic, messages: committed })
  await txn.commit()
  txn = await producer.transaction()
  await txn.send({ topic: cfg.topic, messages: aborted })
  await txn.abort()
  await producer.disconnect()
  const readCommitted = await consumeAll(`${cfg.txn_id}-rc`, false, cfg.topic, committed.length)
  const readUncommitted = await consumeAll(
    `${cfg.txn_id}-ru`,
    true,
    cfg.topic,
    committed.length + aborted.length,
  )
  result({ readCommitted, readUncommitted })
}

async function fence() {
  const options = { transactionalId: cfg.txn_id, idempotent: true, maxInFlightRequests: 1 }
  const first = kafka.producer(options)
  await first.connect()
  const txn = await first.transaction()
  await txn.send({ topic: cfg.topic, messages: [{ value: 'zombie' }] })
  const second = kafka.producer(options)
  await second.connect()
  // kafkajs sends InitProducerId with its first transaction: this bumps the epoch and
  // aborts the first producer's open transaction
  const ok = await second.transaction()
  let fencedError = null
  try {
    await txn.send({ topic: cfg.topic, messages: [{ value: 'zombie-2' }] })
    await txn.commit()
  } catch (e) {
    fencedError = e.type || e.name
  }
  await ok.send({ topic: cfg.topic, messages: [{ value: 'successor' }] })
  await ok.commit()
  await second.disconnect()
  try {
    await first.disconnect()
  } catch (_) {}
  result({ fencedError })
}

async function eos() {
  // Consume-transform-produce, exactly once: each input batch is copied and its offsets
  // committed in one transaction. On any failure (the broker is killed under us) the
  // producer and consumer are recreated: the new producer fences and aborts the old
  // transaction, the consumer resumes from the committed offsets.
  let copied = 0
  let restarts = 0
  while (copied < cfg.count && Date.now() < deadline) {
    const producer = kafka.producer({
      transactionalId: cfg.txn_id,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: 30000,
    })
    const consumer = kafka.consumer({
      groupId: cfg.group,
      readUncommitted: false,
      sessionTimeout: 6000,
      heartbeatInterval: 500,
      maxWaitTimeInMs: 200,
      maxBytesPerPartition: 2048,
    })
    let failed = null
    consumer.on(consumer.events.CRASH, (e) => {
      failed = failed || e.payload.error || new Error('consumer crashed')
    })
    try {
      await producer.connect()
      await consumer.connect()
      await consumer.subscribe({ topic: cfg.in_topic, fromBeginning: true })
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset }) => {
          if (failed || copied >= cfg.count || batch.messages.length === 0) return
          const txn = await producer.transaction()
          try {
            await txn.send({
              topic: cfg.out_topic,
              messages: batch.messages.map((m) => ({
                key: m.key,
                value: `copy-${m.value.toString()}`,
              })),
            })
            const next = (BigInt(batch.lastOffset()) + 1n).toString()
            await txn.sendOffsets({
              consumerGroupId: cfg.group,
              topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }],
            })
            await txn.commit()
            resolveOffset(batch.lastOffset()) // the consumer moves on; the group's offset is
            copied = Number(next) //            the one the transaction committed
            process.stdout.write(`progress ${copied}\n`)
          } catch (e) {
            try {
              await txn.abort()
            } catch (_) {}
            failed = e
          }
        },
      })
      while (!failed && copied < cfg.count && Date.now() < deadline) await sleep(20)
    } catch (e) {
      failed = e
    }
    if (failed && copied < cfg.count) {
      restarts++
      process.stdout.write(`restart ${failed.type || failed.name}: ${failed.message}\n`)
    }
    try {
      await consumer.disconnect()
    } catch (_) {}
    try {
      await producer.disconnect()
    } catch (_) {}
  }
  result({ copied, restarts })
}

const scenarios = { idempotent, 'commit-abort': commitAbort, fence, eos }

// leader-changes (tests/integration/test_cluster_clients.py): an idempotent acks=all
// producer sends distinct records while the test kills / stops partition leaders; a group
// consumer consumes meanwhile. Every error kafkajs reports (its error logs, consumer
// crashes, failed sends) is recorded with its type and whether kafkajs deems it
// retriable. Stops when cfg.stop_file exists, then reads everything back with a new group;
// the full result goes to cfg.result_file.
async function leaderChanges() {
  const fs = require('fs')
  const { errorCodes } = require('kafkajs/src/protocol/error')
  const errors = []
  const NETWORK = /ECONNREFUSED|ECONNRESET|EPIPE|Connection error|Connection timeout|Closed connection|Connection closed|timed out|Failed to connect/i
  const classify = (text) => {
    const code = errorCodes.find((e) => e.message && text.includes(e.message))
    if (code) return { type: code.type, retriable: code.retriable }
    if (NETWORK.test(text)) return { type: 'NETWORK', retriable: true }
    return { type: 'UNKNOWN', retriable: false }
  }
  const record = (source, text, extra = {}) => {
    errors.push({ source, text, ...classify(text), ...extra })
  }
  const logCreator = () => ({ namespace, level, log }) => {
    if (level > logLevel.WARN) return
    const { message, error } = log
    // the consequence of a crash already recorded from the CRASH event
    if (/^Restarting the consumer in/.test(message)) return
    record(`log:${namespace}`, error ? `${message}: ${error}` : message)
  }
  const client = new Kafka({
    clientId: 'pybroker-kafkajs-leaders',
    brokers: cfg.brokers.split(','),
    logLevel: logLevel.WARN,
    logCreator,
    connectionTimeout: 3000,
    requestTimeout: 10000,
    retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 60 },
  })
  const acked = []
  const failed = []
  const live = new Set()
  const consumer = client.consumer({
    groupId: `${cfg.topic}-live`,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
    maxWaitTimeInMs: 200,
  })
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    const e = payload.error
    let cause = e
    while (cause.cause) cause = cause.cause
    errors.push({
      source: 'consumer-crash',
      text: `${e.name}: ${e.message}`,
      type: cause.type || cause.name,
      retriable: payload.restart === true,
    })
  })
  await consumer.connect()
  await consumer.subscribe({ topic: cfg.topic, fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ message }) => {
      live.add(message.value.toString())
    },
  })
  const producer = client.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    // an idempotent producer retries without limit (fewer draws kafkajs's own warning)
    retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: Number.MAX_SAFE_INTEGER },
    createPartitioner: require('kafkajs').Partitioners.DefaultPartitioner,
  })
  await producer.connect()
  const chunk = cfg.chunk || 10
  let next = 0
  for (let n = 0; !fs.existsSync(cfg.stop_file) && Date.now() < deadline; n++) {
    const partition = n % cfg.partitions
    const values = []
    for (let k = 0; k < chunk; k++) values.push(`${cfg.prefix}-${pad(next++, 7)}`)
    try {
      const [meta] = await producer.send({
        topic: cfg.topic,
        messages: values.map((value) => ({ partition, value })),
        acks: -1,
      })
      const base = Number(meta.baseOffset)
      values.forEach((value, k) => acked.push([partition, base + k, value]))
    } catch (e) {
      let cause = e
      while (cause.cause) cause = cause.cause
      errors.push({
        source: 'send',
        text: `${e.name}: ${e.message}`,
        type: cause.type || cause.name,
        retriable: cause.retriable === true,
      })
      failed.push(...values)
    }
    process.stdout.write(`acked ${acked.length} ${next}\n`)
    await sleep(5)
  }
  await producer.disconnect()
  const tailDeadline = Date.now() + 30000
  while (acked.some(([, , v]) => !live.has(v)) && Date.now() < tailDeadline) await sleep(100)
  await consumer.disconnect()

  // Read everything back: a new group from the beginning up to each high watermark.
  const admin = client.admin()
  await admin.connect()
  const ends = await admin.fetchTopicOffsets(cfg.topic)
  await admin.disconnect()
  const high = new Map(ends.map((o) => [o.partition, Number(o.high)]))
  const final = []
  const position = new Map(ends.map((o) => [o.partition, 0]))
  const reader = client.consumer({ groupId: `${cfg.topic}-final`, maxWaitTimeInMs: 200 })
  await reader.connect()
  await reader.subscribe({ topic: cfg.topic, fromBeginning: true })
  await reader.run({
    eachMessage: async ({ partition, message }) => {
      final.push([partition, Number(message.offset), message.value.toString()])
      position.set(partition, Number(message.offset) + 1)
    },
  })
  const done = () => [...high].every(([p, h]) => position.get(p) >= h)
  while (!done() && Date.now() < deadline) await sleep(100)
  await reader.disconnect()
  // Large: written to a file, since process.exit() may cut a long stdout line short.
  fs.writeFileSync(
    cfg.result_file,
    JSON.stringify({ acked, failed, errors, live: [...live], final, high: [...high] }),
  )
  result({ acked: acked.length, final: final.length, errors: errors.length })
}

scenarios['leader-changes'] = leaderChanges

scenarios[cfg.scenario]()
  .then(() => process.exit(0))
  .catch((e) => {
    process.stdout.write(`ERROR ${e.type || e.name}: ${e.message}\n`)
    process.exit(1)
  })
