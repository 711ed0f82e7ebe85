"""The worker's broker consumer (scheduler/worker_consumer.py): what it says while the broker is away.
Reconnecting and closing channels are covered with a real worker in tests/e2e/test_broker_unreachable.py."""

from types import SimpleNamespace

from scheduler.worker_consumer import SAID_EVERY_TRIES, TRIES_SAID_EACH, Consumer


def test_failed_tries_are_said_each_at_first_then_one_in_every_thirty_counted_as_celery_counts():
    consumer = SimpleNamespace(broker_connection_retry_attempt=0)
    said = []

    def celerys_report(exc, interval):  # as Celery's own: counts the try, then logs it
        consumer.broker_connection_retry_attempt += 1
        said.append(consumer.broker_connection_retry_attempt)

    report = Consumer._now_and_then(consumer, celerys_report)
    for _ in range(2 * SAID_EVERY_TRIES + 5):
        report(ConnectionRefusedError(), 1.0)

    # Every try counted, so the number in each message is the try's own.
    assert said == [*range(1, TRIES_SAID_EACH + 1), SAID_EVERY_TRIES, 2 * SAID_EVERY_TRIES]
    assert consumer.broker_connection_retry_attempt == 2 * SAID_EVERY_TRIES + 5
    assert Consumer._now_and_then(consumer, None) is None
