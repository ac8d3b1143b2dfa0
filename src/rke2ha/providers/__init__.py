"""Providers by name (`spec.provider`): each makes the infrastructure real its own way.

The registry maps a provider name to a factory given as `module:attribute`, imported only
when that provider is used, so the core (and every other provider) never imports boto3.
Providers not registered yet fail with a clear usage error (exit 2).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from rke2ha.errors import UsageError
from rke2ha.providers.base import Provider, ProviderOptions
from rke2ha.spec import Spec

ProviderFactory = Callable[[Spec, ProviderOptions], Provider]

# name -> "package.module:factory"
_REGISTRY: dict[str, str] = {
    "aws": "rke2ha.providers.aws.provider:AwsProvider",
    "existing": "rke2ha.providers.existing.provider:ExistingProvider",
    "lab": "rke2ha.providers.lab.provider:LabProvider",
}


def register(name: str, target: str) -> None:
    """Register the factory `module:attribute` for provider `name`."""
    _REGISTRY[name] = target


def available() -> list[str]:
    return sorted(_REGISTRY)


def provider_for(spec: Spec, options: ProviderOptions | None = None) -> Provider:
    """The provider the spec names, built for this spec."""
    target = _REGISTRY.get(spec.provider)
    if target is None:
        raise UsageError(
            f"provider {spec.provider}: not available yet for plan/up/down "
            f"(available: {', '.join(available())})"
        )
    module_name, _, attribute = target.partition(":")
    factory = cast(ProviderFactory, getattr(importlib.import_module(module_name), attribute))
    return factory(spec, options or ProviderOptions())
