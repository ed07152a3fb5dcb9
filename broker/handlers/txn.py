"""Producer ids and transactions. So far: InitProducerId (key 22) for idempotent producers.

Kafka's KafkaApis.handleInitProducerIdRequest and TransactionCoordinator.handleInitProducerId:

- ProducerId and ProducerEpoch (v3+, KIP-360) must be both -1 or both set, else
  INVALID_REQUEST.
- No transactional id: "always blindly accept the request and return a new producerId"
  with epoch 0. The request's producer id and epoch are not used: an idempotent producer
  bumps its epoch itself (Java's bumpIdempotentProducerEpoch) and asks for a fresh id only
  when its epoch is exhausted or its state is unrecoverable.
- An empty transactional id: INVALID_REQUEST.
- Any other transactional id needs a transaction coordinator, which this broker does not
  have yet. It answers UNSUPPORTED_VERSION (what Redpanda answers with transactions
  disabled): the Java client and kafka-python fail initTransactions at once with an
  "unexpected error" naming it, librdkafka retries until its init_transactions timeout
  and reports it. COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR would make every client
  retry until its timeout for a coordinator that can never appear.

Versions 0-5 as Kafka 4.0 serves them (v6 is KIP-939 two-phase commit, Kafka 4.1).
"""

from __future__ import annotations

import logging
from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode, KafkaError

log = logging.getLogger(__name__)

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1


def _answer(version: int, code: ErrorCode, producer_id: int = -1, epoch: int = -1) -> Any:
    return build(
        response_type(22, version),
        throttle_time=0,
        error_code=code,
        producer_id=producer_id,
        producer_epoch=epoch,
    )


@api(22, "InitProducerId", 0, 5)
async def handle_init_producer_id(ctx: RequestContext, request: Any) -> Any:
    version = ctx.version
    producer_id = int(getattr(request, "producer_id", NO_PRODUCER_ID))
    epoch = int(getattr(request, "producer_epoch", NO_PRODUCER_EPOCH))
    if (producer_id == NO_PRODUCER_ID) != (epoch == NO_PRODUCER_EPOCH):
        return _answer(version, ErrorCode.invalid_request)
    transactional_id = request.transactional_id
    if transactional_id is None:
        try:
            new_id = await ctx.broker.producer_ids.generate()
        except KafkaError as e:
            return _answer(version, e.code)
        return _answer(version, ErrorCode.none, new_id, 0)
    if transactional_id == "":
        return _answer(version, ErrorCode.invalid_request)
    log.info(
        "InitProducerId for transactional id %r from %s: transactions are not supported",
        transactional_id,
        ctx.peer,
    )
    return _answer(version, ErrorCode.unsupported_version)
