"""The service's rq workers stop promptly: a worker's teardown never waits on its command
listener's 60 s poll (rq's default), which stalled burst workers, and so tests, for a minute."""

from __future__ import annotations

import threading
import time

import redis

from worker.jobqueue import SERIALIZER, InProcessWorker, make_queue

#: far below rq's own 60 s poll, far above a loaded machine's scheduling delays
STOP_WITHIN_SECONDS = 5.0


def test_the_command_listener_stops_within_its_short_poll(redis_client: redis.Redis) -> None:
    worker = InProcessWorker(
        [make_queue(redis_client, "lsp-test")], connection=redis_client, serializer=SERIALIZER
    )
    worker.subscribe()
    time.sleep(0.2)  # the listener is now inside its poll, with nothing to receive
    stopper = threading.Thread(target=worker.pubsub_thread.stop, daemon=True)
    started = time.monotonic()
    stopper.start()
    stopper.join(timeout=STOP_WITHIN_SECONDS)
    assert not stopper.is_alive(), "stop() still waits on the listener's poll"
    assert time.monotonic() - started < STOP_WITHIN_SECONDS
    worker.pubsub.close()
