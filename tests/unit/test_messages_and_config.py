"""The queue message format and the settings, without storage."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared import config
from shared.messages import MAX_VISIBILITY_SECONDS, JobMessage, MalformedMessage, Snapshot, visibility_delay

JOB_ID = "01" + "8" * 13 + "abcdef0123"


def test_message_round_trips_with_trace_and_snapshot():
    snap = Snapshot('W/"etag"', "echo", {"a": [1, 2]}, 5, 1_700_000_000_000)
    message = JobMessage(JOB_ID, 2, "00-" + "a" * 32 + "-" + "b" * 16 + "-01", snap)
    assert JobMessage.decode(message.encode()) == message
    assert JobMessage.decode(message.encode().encode()) == message  # bytes, as the trigger gives them


def test_minimal_message_is_id_and_attempt():
    assert JobMessage(JOB_ID, 1).encode() == f'{{"id":"{JOB_ID}","attempt":1}}'


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1]", b'{"attempt": 1}', b'{"id": "x", "attempt": 1}',
     f'{{"id": "{JOB_ID}", "attempt": 0}}'.encode(), f'{{"id": "{JOB_ID}", "attempt": true}}'.encode(),
     b"\xff\xfe"],
)  # fmt: skip
def test_malformed_messages_are_recognised(body):
    with pytest.raises(MalformedMessage):
        JobMessage.decode(body)


def test_a_broken_snapshot_is_ignored_not_fatal():
    message = JobMessage.decode(f'{{"id": "{JOB_ID}", "attempt": 1, "run": {{"etag": 5}}}}')
    assert message.snapshot is None and message.attempt == 1


def test_visibility_delay_is_capped_by_the_queue_limit():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert visibility_delay(now - timedelta(seconds=5), now) == 0
    assert visibility_delay(now + timedelta(seconds=1.2), now) == 2
    assert visibility_delay(now + timedelta(seconds=MAX_VISIBILITY_SECONDS), now) == MAX_VISIBILITY_SECONDS
    assert visibility_delay(now + timedelta(days=8), now) is None


def test_config_defaults_and_overrides():
    c = config.load({})
    assert (c.queue_name, c.poison_queue_name, c.max_attempts, c.partitions) == ("jobs", "jobs-poison", 5, 4)
    assert config.load({"JOBS_PARTITIONS": "8", "JOBS_BACKOFF_BASE_SECONDS": "0.5"}).partitions == 8


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [("JOBS_MAX_ATTEMPTS", "x", "not a valid int"), ("JOBS_PARTITIONS", "0", "at least 1"),
     ("JOBS_LEASE_SECONDS", "-1", "zero or more")],
)  # fmt: skip
def test_bad_settings_fail_naming_the_setting(name, value, message):
    with pytest.raises(config.ConfigError, match=f"{name}.*{message}|{message}"):
        config.load({name: value})


def test_every_setting_has_a_config_field():
    assert len(config.SETTINGS) == len(config.Config.__dataclass_fields__)


def test_the_example_local_settings_hold_every_setting_at_its_default():
    from tools.azurite import REPO_ROOT

    values = json.loads((REPO_ROOT / "local.settings.json.example").read_text())["Values"]
    assert {s.name: values.get(s.name) for s in config.SETTINGS} == {s.name: s.default for s in config.SETTINGS}


def test_storage_connection_is_read_like_the_functions_host():
    from shared.storage import StorageConfigError, resolve_endpoints

    local = resolve_endpoints({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert local.connection_string == "UseDevelopmentStorage=true"
    azure = resolve_endpoints({
        "AzureWebJobsStorage__accountName": "stjobs",
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
    })  # fmt: skip
    assert azure.connection_string is None
    assert (azure.table_url, azure.queue_url, azure.blob_url) == (
        "https://stjobs.table.core.windows.net", "https://stjobs.queue.core.windows.net",
        "https://stjobs.blob.core.windows.net",
    )  # fmt: skip
    assert (azure.credential_kind, azure.client_id) == ("managedidentity", "00000000-0000-0000-0000-000000000001")
    uris = resolve_endpoints(
        {f"AzureWebJobsStorage__{s}ServiceUri": f"https://x.{s}.example" for s in ("table", "queue", "blob")}
    )
    assert uris.queue_url == "https://x.queue.example"
    with pytest.raises(StorageConfigError, match="AzureWebJobsStorage__accountName"):
        resolve_endpoints({})


def test_identity_based_clients_use_the_managed_identity_without_a_key():
    from azure.identity.aio import ManagedIdentityCredential

    from shared.storage import Storage

    env = {"AzureWebJobsStorage__accountName": "stjobs", "AzureWebJobsStorage__credential": "managedidentity",
           "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001"}  # fmt: skip
    storage = Storage(config.load({}), env)
    assert isinstance(storage._credential, ManagedIdentityCredential)
    assert storage.table.url.startswith("https://stjobs.table.core.windows.net")
    assert storage.queue.url.startswith("https://stjobs.queue.core.windows.net/jobs")


def test_storage_clients_skip_the_environment_scan_unless_a_proxy_is_set():
    from shared.storage import transport_options

    assert transport_options({"PATH": "/bin", "FUNCTIONS_WORKER_RUNTIME": "python"})["use_env_settings"] is False
    assert transport_options({"HTTPS_PROXY": "http://proxy:3128"})["use_env_settings"] is True
    assert transport_options({"http_proxy": "http://proxy:3128"})["use_env_settings"] is True


def test_a_storage_call_waits_10_s_to_connect_and_30_s_for_an_answer_not_the_sdks_minutes():
    from shared.storage import transport_options

    assert transport_options({}) == {"use_env_settings": False, "connection_timeout": 10, "read_timeout": 30}
