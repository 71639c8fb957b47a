"""The Faust app's own logic: counters and the guard around decoding."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from faust.types.tuples import ConsumerMessage, Message

import streams.app as app_module
from llmobs import synthetic
from llmobs.errors import ConfigError
from llmobs.retry import Backoff
from streams.app import (
    Outgoing,
    StageCounters,
    create_app,
    decode_safely,
    deliver,
    deliver_or_withhold,
)
from streams.decode import Source
from streams.sampling.settings import SamplingSettings
from streams.settings import StreamSettings

WHERE = Source("otlp_spans", 1, 7)


def test_an_unexpected_failure_becomes_a_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(app_module, "decode_message", broken)

    decoded = decode_safely(b"payload", None, WHERE)

    assert not decoded.batches
    (letter,) = decoded.dead_letters
    assert (letter.reason, letter.detail, letter.value) == (
        "internal_error",
        "KeyError",
        b"payload",
    )


def test_counters_sum_what_decoding_produced() -> None:
    counters = StageCounters()
    body = synthetic.merge([synthetic.llm_trace(calls=2) for _ in range(2)])

    counters.add(decode_safely(body.SerializeToString(), None, WHERE))
    counters.add(decode_safely(b"\xff garbage", None, WHERE))

    text = counters.prometheus()
    assert "llmobs_decode_messages_total 2" in text
    assert "llmobs_decode_spans_total 6" in text
    assert "llmobs_decode_batches_out_total 2" in text
    assert 'llmobs_decode_dead_letters_total{reason="not_protobuf"} 1' in text


def test_cost_statuses_and_unknown_models_are_served() -> None:
    counters = StageCounters()
    decoded = decode_safely(
        synthetic.llm_trace(calls=2).SerializeToString(), None, WHERE
    )
    decoded.unknown_models[("vllm", 'odd"name')] += 2

    counters.add(decoded)

    text = counters.prometheus()
    assert 'llmobs_cost_status_total{status="priced"} 2' in text
    assert 'llmobs_cost_status_total{status="not_llm_call"} 1' in text
    assert 'llmobs_cost_status_total{status="unknown_model"} 0' in text
    assert (
        'llmobs_cost_unknown_model_spans_total{provider="vllm",model="odd\\"name"} 2'
        in text
    )


def test_unknown_models_are_bounded() -> None:
    counters = StageCounters()
    decoded = decode_safely(b"", None, WHERE)
    for index in range(app_module.MAX_UNKNOWN_MODELS + 5):
        decoded.unknown_models[("vllm", f"m{index}")] = 1

    counters.add(decoded)

    assert len(counters.unknown_models) == app_module.MAX_UNKNOWN_MODELS + 1
    assert counters.unknown_models[("_other", "_other")] == 5


class FlakyTopic:
    """Accepts sends, but the broker refuses the first ``failures`` of them."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.delivered: list[bytes] = []

    async def send(self, key: bytes | None, value: bytes, headers: object) -> object:
        future = asyncio.get_running_loop().create_future()
        if self.failures > 0:
            self.failures -= 1
            future.set_exception(ConnectionError("broker went away"))
        else:
            self.delivered.append(value)
            future.set_result(None)
        return future


async def test_delivery_resends_what_failed_until_all_arrive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        app_module, "DELIVERY_BACKOFF", Backoff(initial_s=0.001, max_s=0.01)
    )
    topic = FlakyTopic(failures=3)
    records = [Outgoing(topic, b"k", f"v{i}".encode()) for i in range(5)]

    await deliver(records)

    assert sorted(topic.delivered) == [f"v{i}".encode() for i in range(5)]


class SilentTopic:
    """A topic whose broker never confirms, as when Kafka is away."""

    async def send(self, **_: object) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()


class RecordingConsumer:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, message: Message) -> bool:
        self.acked.append(message.offset)
        return True


def faust_event(offset: int) -> SimpleNamespace:
    message = ConsumerMessage("otlp_spans", 0, offset, 0.0, 0, None, b"k", b"v", None)
    return SimpleNamespace(message=message)


async def test_a_batch_cut_short_at_shutdown_is_never_committed() -> None:
    events = [faust_event(7), faust_event(8)]
    records = [Outgoing(SilentTopic(), b"k", b"v")]
    consumer = RecordingConsumer()

    task = asyncio.create_task(deliver_or_withhold(records, events))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # What take_events does on its way out, cancelled or not.
    for event in events:
        event.message.ack(consumer)

    assert consumer.acked == []


async def test_a_delivered_batch_is_acknowledged() -> None:
    events = [faust_event(7)]
    consumer = RecordingConsumer()

    await deliver_or_withhold([Outgoing(FlakyTopic(failures=0), b"k", b"v")], events)
    events[0].message.ack(consumer)

    assert consumer.acked == [7]


class SizeLimitedTopic:
    """A topic whose broker refuses records over ``limit_bytes`` for good."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.delivered: list[bytes] = []

    async def send(self, key: bytes | None, value: bytes, headers: object) -> object:
        future = asyncio.get_running_loop().create_future()
        if len(value) > self.limit_bytes:
            future.set_exception(MessageSizeTooLargeError())
        else:
            self.delivered.append(value)
            future.set_result(None)
        return future


async def test_a_record_too_large_for_the_broker_sends_its_input_to_the_dlq(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        app_module, "DELIVERY_BACKOFF", Backoff(initial_s=0.001, max_s=0.01)
    )
    spans, dlq = SizeLimitedTopic(limit_bytes=10), FlakyTopic(failures=0)
    instead = Outgoing(dlq, b"k", b"the input", [("llmobs.dlq.reason", b"x")])
    records = [
        Outgoing(spans, b"t1", b"small", instead=instead),
        Outgoing(spans, b"t2", b"x" * 11, instead=instead),
        Outgoing(spans, b"t3", b"y" * 12, instead=instead),
    ]

    await asyncio.wait_for(deliver(records), timeout=10)

    assert spans.delivered == [b"small"]
    assert dlq.delivered == [b"the input"]


def test_the_sampler_dead_letters_to_the_configured_topic(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[object, ...]] = []
    monkeypatch.setattr(
        app_module, "register_sampling", lambda *args: seen.append(args[2:])
    )
    settings = StreamSettings(dlq_topic="team-dlq", data_dir=str(tmp_path))

    create_app(settings, SamplingSettings(), None)

    assert seen == [("llm.spans", "team-dlq")]


def test_the_web_endpoint_listens_where_configured(tmp_path: object) -> None:
    settings = StreamSettings(web_host="0.0.0.0", web_port=7077, data_dir=str(tmp_path))

    app = create_app(settings, SamplingSettings(), None)

    assert (app.conf.web_bind, app.conf.web_port) == ("0.0.0.0", 7077)


@pytest.mark.parametrize("port", [0, 99_999])
def test_a_web_port_out_of_range_is_a_config_error(port: int) -> None:
    with pytest.raises(ConfigError, match=f"web_port: {port} is no port"):
        StreamSettings(web_port=port).validate()
