"""The SDK's channel settings: targets over replicas, the service config and the RESOURCE_EXHAUSTED delay."""
import json

import pytest

from senti.client.channel import RetryPolicy, channel_target, retry_after_s


@pytest.mark.parametrize("target, expected", [
    ("localhost:50051", "localhost:50051"),
    ("dns:///senti-headless:50051", "dns:///senti-headless:50051"),
    (["127.0.0.1:1", "127.0.0.2:2", "127.0.0.1:1"], "ipv4:127.0.0.1:1,127.0.0.2:2"),
    (["[::1]:5", "[::1]:6"], "ipv6:[::1]:5,[::1]:6"),
    (["localhost:7"], "ipv4:127.0.0.1:7"),
])
def test_channel_target(target, expected):
    assert channel_target(target) == expected


@pytest.mark.parametrize("target, message", [
    ([], "the list of targets is empty"),
    (["127.0.0.1"], "target '127.0.0.1' is not host:port"),
    (["127.0.0.1:1", "[::1]:2"], "mix IPv4 and IPv6"),
])
def test_channel_target_refuses_bad_lists(target, message):
    with pytest.raises(ValueError, match=message):
        channel_target(target)


def test_service_config_has_round_robin_and_the_unavailable_retry_policy():
    config = json.loads(RetryPolicy(max_attempts=4, initial_backoff_s=0.2, max_backoff_s=1.0).service_config())
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    [method] = config["methodConfig"]
    assert method["name"] == [{"service": "senti.v1.SentiService"}]
    assert method["retryPolicy"] == {"maxAttempts": 4, "initialBackoff": "0.2s", "maxBackoff": "1.0s",
                                     "backoffMultiplier": 2.0, "retryableStatusCodes": ["UNAVAILABLE"]}
    assert "methodConfig" not in json.loads(RetryPolicy(max_attempts=1).service_config())


@pytest.mark.parametrize("kwargs, message", [
    ({"max_attempts": 0}, "max_attempts is 0"),
    ({"max_attempts": 6}, "max_attempts is 6"),
    ({"initial_backoff_s": 0}, "backoff needs"),
    ({"initial_backoff_s": 3, "max_backoff_s": 2}, "backoff needs"),
])
def test_retry_policy_checks_its_bounds(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


def test_resource_exhausted_delay_honours_the_hint_within_its_bounds():
    policy = RetryPolicy(max_attempts=3, max_retry_after_s=2.0)
    hint = [("retry-after-ms", "500")]
    assert retry_after_s(hint) == 0.5 and retry_after_s([("retry-after-ms", "soon")]) is None
    assert 0.5 <= policy.resource_exhausted_delay(1, hint, None) <= 0.55
    assert 0.1 <= policy.resource_exhausted_delay(1, (), 10.0) <= 0.11      # no hint: the backoff
    assert 0.2 <= policy.resource_exhausted_delay(2, (), 10.0) <= 0.22
    assert policy.resource_exhausted_delay(3, hint, None) is None           # attempts used up
    assert policy.resource_exhausted_delay(1, hint, 0.4) is None            # does not fit in the deadline
    assert policy.resource_exhausted_delay(1, [("retry-after-ms", "2500")], None) is None  # hint too long
