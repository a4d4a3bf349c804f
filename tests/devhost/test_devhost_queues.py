"""Queue triggers through `python -m devhost`, with the sample host.json: batchSize 8,
newBatchThreshold 4, maxPollingInterval 500 ms, visibilityTimeout 1 s, maxDequeueCount 3."""

from __future__ import annotations

import json
import signal
import time

from azure.storage.queue import QueueClient

from tests.devhost.conftest import SAMPLE, b64


def test_queue_message_is_processed_once_and_deleted(devhost):
    host = devhost()
    host.send("hello")
    host.wait(lambda: host.values() == ["hello"], what="the message")
    assert host.records("queue")[0]["dequeue_count"] == 1
    host.wait(lambda: host.queue_length() == 0, 5, "the message to be deleted")
    time.sleep(1.2)  # longer than visibilityTimeout: it must not come back
    assert host.values() == ["hello"]


def test_message_that_is_not_base64_goes_straight_to_poison(devhost):
    host = devhost()
    host.send("not base64 !!", encode=False)
    host.wait(lambda: host.poisoned() == ["not base64 !!"], what="the poison queue")
    # The host copies to the poison queue first and deletes the original after, as the real one does.
    host.wait(lambda: host.queue_length() == 0, 5, "the original to be deleted")
    assert host.values() == []


def test_failing_message_is_retried_after_visibility_timeout_then_poisoned_with_body_intact(devhost):
    host = devhost()
    host.send("fail-1")
    host.wait(lambda: host.poisoned() == [b64("fail-1")], what="the poison queue")
    runs = host.records("queue")
    assert [(r["value"], r["dequeue_count"]) for r in runs] == [("fail-1", 1), ("fail-1", 2), ("fail-1", 3)]
    gaps = [b["t"] - a["t"] for a, b in zip(runs, runs[1:], strict=False)]
    assert all(g >= 0.9 for g in gaps), gaps  # visibilityTimeout "00:00:01" between deliveries
    host.wait(lambda: host.queue_length() == 0, 5, "the original to be deleted")
    assert host.text().count("Executed 'Functions.consume' (Failed") == 3
    assert "RuntimeError: failing on fail-1" in host.text()


def test_message_encoding_none_passes_text_through(devhost, tmp_path):
    app = tmp_path / "plain_app"
    app.mkdir()
    (app / "function_app.py").symlink_to(SAMPLE / "function_app.py")
    host_json = json.loads((SAMPLE / "host.json").read_text())
    host_json["extensions"]["queues"]["messageEncoding"] = "none"
    (app / "host.json").write_text(json.dumps(host_json))
    host = devhost(app_dir=app)
    host.send("plain text, not base64", encode=False)
    host.wait(lambda: host.values() == ["plain text, not base64"], what="the message")


def test_a_batch_of_slow_messages_runs_concurrently(devhost, azurite, unique_name):
    # Queued before the host starts, so that its first receive finds all eight (batchSize 8).
    with QueueClient.from_connection_string(azurite.connection_string, unique_name) as queue:
        queue.create_queue()
        for i in range(8):
            queue.send_message(b64(f"sleep:1:{i}"))
    started = time.monotonic()
    host = devhost()
    host.wait(lambda: len(host.records("queue-done")) == 8, 15, "eight messages")
    elapsed = time.monotonic() - started
    starts = [r["t"] for r in host.records("queue")]
    first_done = min(r["t"] for r in host.records("queue-done"))
    assert sum(t < first_done for t in starts) == 8  # all eight ran at once
    assert elapsed < 5, elapsed  # start-up plus about one message's time, not eight
    host.wait(lambda: host.queue_length() == 0, 5, "the messages to be deleted")


def test_idle_polling_backs_off_no_further_than_max_polling_interval(devhost):
    host = devhost()
    time.sleep(3)  # idle long enough to reach the 500 ms maximum
    sent = time.monotonic()
    host.send("wake")
    host.wait(lambda: host.values() == ["wake"], 5, "the message")
    assert time.monotonic() - sent < 1.5  # without the cap the next poll would be 3 s away


def test_a_long_invocation_keeps_its_message_hidden(devhost):
    # In-flight visibility of 1 s instead of 10 minutes: without renewals the message would be
    # delivered again while the function still runs.
    host = devhost(env={"DEVHOST_MESSAGE_VISIBILITY_SECONDS": "1"})
    host.send("sleep:2")
    host.wait(lambda: host.values("queue-done") == ["sleep:2"], 10, "the slow message")
    host.wait(lambda: host.queue_length() == 0, 5, "the message to be deleted")
    assert [r["dequeue_count"] for r in host.records("queue")] == [1]
    assert "Renewing visibility" not in host.text()  # no renewal failed


def test_sigterm_lets_a_running_invocation_finish_and_exits_0(devhost):
    host = devhost()
    host.send("sleep:1.5")
    host.wait(lambda: host.values() == ["sleep:1.5"], what="the message to start")
    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(timeout=20) == 0
    assert host.values("queue-done") == ["sleep:1.5"]
    assert host.queue_length() == 0  # finished, so deleted before exit
    text = host.text()
    assert "Host stopped (instance 0)" in text
    for bad in ("Unclosed", "Task was destroyed", "Traceback", "never retrieved"):
        assert bad not in text, text
