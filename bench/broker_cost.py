"""Evidence for issue 13's small-batch figure: RabbitMQ's CPU a message, and what it depends on.

Publishes messages of a 200-sample batch's size to a queue of its own (classic queue version 2,
durable) at a streamer's rate, while a consumer takes and acknowledges them, and reads the
broker's CPU time from /proc before and after. Each variant changes one thing: transient
messages, no publisher confirms, acknowledgements with `multiple`, messages in bursts at the
same average rate. Needs the broker on this machine (its beam.smp process).

    python -m bench.broker_cost --messages 5200 --rate 550 --runs 2
"""
import argparse
import multiprocessing
import os
import time
from dataclasses import dataclass

from kombu import Connection, Consumer, Producer, Queue

from bench import harness

QUEUE = "telemetry.bench_broker_cost"
BODY_BYTES = 3000  # a 200-sample batch, encoded
ACK_EVERY = 20


@dataclass(frozen=True)
class Variant:
    name: str
    persistent: bool = True
    confirms: bool = True
    ack_multiple: bool = False
    burst: int = 1


VARIANTS = (
    Variant("persistent, confirmed (the pipeline's)"),
    Variant("transient", persistent=False),
    Variant("no publisher confirms", confirms=False),
    Variant("acknowledged with multiple", ack_multiple=True),
    Variant("in bursts of 16", burst=16),
    Variant("in bursts of 64", burst=64),
)


def broker_cpu_seconds() -> float:
    pid = next(int(e.name) for e in os.scandir("/proc") if e.name.isdigit()
               and open(f"/proc/{e.name}/comm").read().startswith("beam"))
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def consume(url: str, messages: int, multiple: bool, ready) -> None:
    taken, pending = 0, []
    with Connection(url) as connection:
        channel = connection.channel()
        channel.basic_qos(0, 200, False)

        def on_message(message) -> None:
            nonlocal taken
            taken += 1
            pending.append(message)
            if len(pending) >= ACK_EVERY or taken == messages:
                if multiple:
                    pending[-1].ack(multiple=True)
                else:
                    for held in pending:
                        held.ack()
                pending.clear()

        with Consumer(channel, queues=[Queue(QUEUE, no_declare=True)], on_message=on_message):
            ready.set()
            while taken < messages:
                connection.drain_events(timeout=30)


def run(url: str, variant: Variant, messages: int, rate: float) -> float:
    """Broker CPU µs a message for this variant."""
    ready = multiprocessing.Event()
    consumer = multiprocessing.Process(target=consume, args=(url, messages, variant.ack_multiple, ready))
    consumer.start()
    ready.wait()
    body = os.urandom(BODY_BYTES)
    before, started = broker_cpu_seconds(), time.monotonic()
    with Connection(url, transport_options={"confirm_publish": False}) as connection:
        channel = connection.default_channel
        confirmed = [0]  # the highest delivery tag the broker has confirmed
        if variant.confirms:
            channel.confirm_select()
            channel.events["basic_ack"].add(lambda tag, multiple: confirmed.__setitem__(0, max(confirmed[0], tag)))
        producer = Producer(channel, auto_declare=False)
        for n in range(messages):
            due = started + (n - n % variant.burst) / rate
            while (now := time.monotonic()) < due:
                try:
                    connection.drain_events(timeout=due - now)
                except TimeoutError:
                    pass
            producer.publish(body, routing_key=QUEUE, exchange="", delivery_mode=2 if variant.persistent else 1,
                             content_type="application/x-msgpack", content_encoding="binary",
                             headers={"samples": 200})
        while variant.confirms and confirmed[0] < messages:
            connection.drain_events(timeout=30)
    consumer.join()
    return (broker_cpu_seconds() - before) / messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5200)
    parser.add_argument("--rate", type=float, default=550.0, help="messages a second (bursts keep the average)")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    url = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    harness.queues_version_2(QUEUE)
    with Connection(url) as connection:
        Queue(QUEUE, durable=True, channel=connection.default_channel).declare()
        try:
            for _ in range(args.runs):
                for variant in VARIANTS:
                    print(f"{variant.name:40s} {run(url, variant, args.messages, args.rate):6.0f} µs of broker CPU a message",
                          flush=True)
        finally:
            connection.default_channel.queue_delete(QUEUE)


if __name__ == "__main__":
    main()
