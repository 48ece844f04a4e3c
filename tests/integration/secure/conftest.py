"""The secured local stack for the security tests: SASL_SSL Kafka with ACLs enforced, TLS Redis with ACL
users, one principal per role (``LocalStack(secure=True)``, as ``clickcash services start --secure``).

Started once per session and only by tests under this directory. Every role's settings come from
:func:`role_settings`: the stack's non-secret overrides plus the role's secrets directory
(``CLICKCASH_SECRETS_DIR``), the way a deployment hands them over.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clickcash.cluster.local.stack import LocalStack
from clickcash.config.settings import SECRETS_DIR_ENV, Settings, load_settings

RoleSettings = Callable[..., Settings]


@pytest.fixture(scope="session")
def secure_stack() -> Iterator[LocalStack]:
    stack = LocalStack("secure-tests", secure=True, log=lambda m: print(m, flush=True))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def role_settings(secure_stack: LocalStack) -> RoleSettings:
    """``role_settings("payments", pipeline={...})``: that role's settings on the secured stack."""

    def make(role: str, **sections: dict[str, Any]) -> Settings:
        overrides = secure_stack.role_settings(role)
        for name, values in sections.items():
            overrides.setdefault(name, {}).update(values)
        before = os.environ.get(SECRETS_DIR_ENV)
        os.environ[SECRETS_DIR_ENV] = str(secure_stack.secrets_dir(role))
        try:
            return load_settings(**overrides)
        finally:
            if before is None:
                del os.environ[SECRETS_DIR_ENV]
            else:
                os.environ[SECRETS_DIR_ENV] = before

    return make
