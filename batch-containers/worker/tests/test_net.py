"""The worker's address policy gives Java's verdict on every address of the shared table."""

import json
from pathlib import Path

import pytest

from trellis2_worker.net import AddressPolicy

CASES = json.loads(Path(__file__).with_name("address_policy_cases.json").read_text())["cases"]
POLICIES = {"default": AddressPolicy(), "loopback": AddressPolicy(allow_loopback=True),
            "private": AddressPolicy(allow_private=True)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["address"])
def test_same_verdict_as_java(case):
    for name, policy in POLICIES.items():
        if name in case:
            assert policy.refusal(case["address"]) == case[name], name
