"""host.json and local.settings.json parsing, binding expressions, connections, host ids."""

from __future__ import annotations

import json

import pytest

from devhost.settings import (
    SettingsError,
    connection_string,
    load_host_json,
    load_local_settings,
    parse_timespan,
    resolve,
)
from devhost.singleton import host_id, lock_blob_name


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("00:00:02", 2),
        ("00:01:00", 60),
        ("01:00", 3600),  # hh:mm
        ("1.00:00:00", 86400),  # d.hh:mm:ss
        ("00:00:00.500", 0.5),
        ("00:00:00.1", 0.1),
        (2000, 2),  # a JSON number is milliseconds
        ("1500", 1.5),
        (None, 7),  # absent: the default
    ],
)
def test_timespans_as_host_json_writes_them(value, seconds):
    assert parse_timespan(value, default=7) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["two seconds", "00:61:00", "1:2:3:4", True])
def test_bad_timespans_are_refused(value):
    with pytest.raises(SettingsError, match="timespan"):
        parse_timespan(value, 0)


def write(tmp_path, data) -> None:
    (tmp_path / "host.json").write_text(json.dumps(data))


def test_host_json_defaults_are_the_hosts(tmp_path):
    write(tmp_path, {"version": "2.0"})
    config = load_host_json(tmp_path)
    q = config.queues
    assert (q.batch_size, q.new_batch_threshold, q.max_polling_interval) == (16, 8, 60)
    assert (q.visibility_timeout, q.max_dequeue_count, q.message_encoding) == (0, 5, "base64")
    assert config.route_prefix == "api" and config.log_levels == {"default": "Information"}


def test_missing_host_json_means_defaults(tmp_path):
    assert load_host_json(tmp_path).queues.batch_size == 16


def test_host_json_queue_settings_are_read_case_insensitively(tmp_path):
    write(tmp_path, {"Extensions": {"Queues": {"BatchSize": 32, "maxPollingInterval": 2000,
                                               "VisibilityTimeout": "00:00:30", "messageEncoding": "None"},
                                    "http": {"routePrefix": "/v1/"}},
                     "logging": {"logLevel": {"Default": "Warning", "Azure.Core": "Error"}}})  # fmt: skip
    config = load_host_json(tmp_path)
    q = config.queues
    assert (q.batch_size, q.new_batch_threshold, q.max_polling_interval) == (32, 16, 2)
    assert (q.visibility_timeout, q.message_encoding) == (30, "none")
    assert config.route_prefix == "v1"
    assert config.log_levels == {"Default": "Warning", "Azure.Core": "Error"}


def test_an_empty_route_prefix_is_allowed(tmp_path):
    write(tmp_path, {"extensions": {"http": {"routePrefix": ""}}})
    assert load_host_json(tmp_path).route_prefix == ""


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ({"batchSize": 64}, "batchSize"),
        ({"batchSize": 0}, "batchSize"),
        ({"maxDequeueCount": 0}, "maxDequeueCount"),
        ({"messageEncoding": "utf8"}, "messageEncoding"),
        ({"maxPollingInterval": "00:00:00.050"}, "maxPollingInterval"),
        ({"newBatchThreshold": "many"}, "newBatchThreshold"),
    ],
)
def test_host_json_values_the_host_refuses_are_refused(tmp_path, queues, message):
    write(tmp_path, {"extensions": {"queues": queues}})
    with pytest.raises(SettingsError, match=message):
        load_host_json(tmp_path)


def test_local_settings_fill_the_environment_but_do_not_override_it(tmp_path):
    env = {"ALREADY_SET": "from-env"}
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"ALREADY_SET": "from-file", "ONLY_IN_FILE": "x",
                                "FLAG": True, "N": 3}, "Host": {"LocalHttpPort": 7072}}))  # fmt: skip
    settings = load_local_settings(path, env)
    assert env == {"ALREADY_SET": "from-env", "ONLY_IN_FILE": "x", "FLAG": "true", "N": "3"}
    assert settings.http_port == 7072


def test_missing_local_settings_are_fine(tmp_path):
    assert load_local_settings(tmp_path / "nope.json", {}).values == {}


def test_encrypted_local_settings_are_refused(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": True, "Values": {}}))
    with pytest.raises(SettingsError, match="encrypted"):
        load_local_settings(path, {})


def test_binding_expressions_resolve_from_settings():
    env = {"QNAME": "orders"}
    assert resolve("%QNAME%", env) == "orders" and resolve("plain", env) == "plain"
    assert resolve("%QNAME%-x", env) == "orders-x"
    with pytest.raises(SettingsError, match="'MISSING' is not set"):
        resolve("%MISSING%", env)


def test_connection_names_try_the_azurewebjobs_prefix_first():
    env = {"AzureWebJobsStorage": "a", "Other": "b", "AzureWebJobsOther": "c"}
    assert connection_string("Storage", env) == "a"
    assert connection_string("AzureWebJobsStorage", env) == "a"
    assert connection_string("Other", env) == "c"
    with pytest.raises(SettingsError, match="Missing"):
        connection_string("Missing", env)


def test_host_id_comes_from_the_setting_or_the_app_folder(tmp_path):
    assert host_id(str(tmp_path), {"AzureFunctionsWebHost__hostid": "My-App"}) == "my-app"
    derived = host_id(str(tmp_path / "Sample_App"), {})
    assert derived.startswith("sample-app-") and len(derived) <= 32
    assert derived == host_id(str(tmp_path / "Sample_App"), {})  # every instance of one folder agrees
    assert derived != host_id(str(tmp_path / "other" / "Sample_App"), {})
    assert lock_blob_name("h", "tick") == "locks/h/Host.Functions.tick.Listener"
