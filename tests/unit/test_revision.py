"""Revision ids: what changes them, and that the env part is keyed (ids are public, Secret values are not)."""

from __future__ import annotations

from typing import Any

import pytest

from deploymind.api.spec import DeploymentSpec
from deploymind.steps.revision import config_hash, image_base, revision_id

KEY = b"k" * 32
# config_hash(spec(), {"PIN": "1234"}, KEY) as operators before container.init and stopGracePeriodSeconds computed it.
PINNED_DEFAULT_HASH = "fe46ca283f1ad0221fac41482904ebda00e33d22bc3ec50b16ee27fa15649c9e"


def spec(**overrides: Any) -> DeploymentSpec:
    body: dict[str, Any] = {"source": {"repo": "https://github.com/acme/web", "ref": "main"},
                            "target": {"transport": "local"}, "container": {"port": 8080}}
    body.update(overrides)
    return DeploymentSpec.model_validate(body)


def test_the_same_inputs_and_key_give_the_same_config_hash() -> None:
    assert config_hash(spec(), {"PIN": "1234"}, KEY) == config_hash(spec(), {"PIN": "1234"}, KEY)


def test_an_env_value_a_port_or_the_limits_change_the_hash_and_the_health_check_does_not() -> None:
    base = config_hash(spec(), {"PIN": "1234"}, KEY)
    assert config_hash(spec(), {"PIN": "1235"}, KEY) != base
    assert config_hash(spec(container={"port": 8081}), {"PIN": "1234"}, KEY) != base
    assert config_hash(spec(container={"port": 8080, "resources": {"memory": "256m"}}), {"PIN": "1234"}, KEY) != base
    assert config_hash(spec(healthCheck={"path": "/ready"}), {"PIN": "1234"}, KEY) == base


def test_without_the_key_a_guessed_secret_value_cannot_be_checked_against_a_revision_id() -> None:
    secret_id = revision_id("a" * 40, config_hash(spec(), {"PIN": "1234"}, KEY))
    # Someone who reads status and guesses the PIN but has another key (or none) never reproduces the id.
    assert revision_id("a" * 40, config_hash(spec(), {"PIN": "1234"}, b"x" * 32)) != secret_id
    with pytest.raises(ValueError, match="revision key"):
        config_hash(spec(), {"PIN": "1234"}, b"")


def test_a_prebuilt_image_is_identified_by_its_digest_when_pinned() -> None:
    assert image_base("registry.example/app@sha256:" + "f" * 64) == "f" * 64
    assert image_base("registry.example/app:1.2") != image_base("registry.example/app:1.3")


def test_init_and_stop_grace_change_the_hash_only_away_from_their_defaults() -> None:
    base = config_hash(spec(), {"PIN": "1234"}, KEY)
    # Stated defaults hash as an object written before these fields existed: an operator upgrade redeploys nothing.
    assert config_hash(spec(container={"port": 8080, "init": True, "stopGracePeriodSeconds": 10}),
                       {"PIN": "1234"}, KEY) == base
    no_init = config_hash(spec(container={"port": 8080, "init": False}), {"PIN": "1234"}, KEY)
    grace = config_hash(spec(container={"port": 8080, "stopGracePeriodSeconds": 0}), {"PIN": "1234"}, KEY)
    assert len({base, no_init, grace}) == 3


def test_the_config_hash_of_a_default_spec_is_unchanged_by_operator_upgrades() -> None:
    # Pinned: a changed hash input for default specs would give every existing revision a new id and redeploy it.
    assert config_hash(spec(), {"PIN": "1234"}, KEY) == PINNED_DEFAULT_HASH
