"""Tenant destination policies and page quotas over HTTP (part of the public API).

``GET /v1/tenants/{tenant}/policy`` shows a tenant's own policy, the rules in force for it
(the fleet's with its own on top) and the pages it has used today; an admin key reads any
tenant's, a tenant key its own. ``PUT`` sets it and ``DELETE`` removes it (admin keys
only); a change applies to the next submission, on every API node.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations, and
# they name the key check handed in at run time.

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import BaseModel

from faxfleet.destinations import TenantPolicy, valid_tenant
from scheduler.allowance import Allowance, utc_day


class TenantPolicyView(BaseModel):
    tenant: str
    policy: TenantPolicy
    """The tenant's own rules (empty: the fleet's apply as they are)."""
    effective: dict[str, Any]
    """What applies: barred number types, the fleet's and the tenant's region rules, the
    daily page quota (null: none)."""
    day: str
    """Today, UTC."""
    pages_used: int
    """Pages (times recipients) charged to the tenant today."""


def router(caller_of: Callable[..., Any], allowance: Callable[[], Allowance]) -> APIRouter:
    """The routes, with the API's key check (``caller_of``: a ``Caller`` whose ``tenant``
    is None for admin keys) and store handed in."""
    api = APIRouter(prefix="/v1/tenants", tags=["tenants"])
    CallerDep = Annotated[Any, Depends(caller_of)]

    def _tenant(tenant: str) -> str:
        if not valid_tenant(tenant):
            raise HTTPException(422, "tenant: letters, digits and _.- only, up to 64")
        return tenant

    def _admin(caller: Any) -> None:
        if caller.tenant is not None:
            raise HTTPException(403, "admin key required")

    def _view(tenant: str) -> TenantPolicyView:
        a = allowance()
        rules = a.rules(tenant)
        day = utc_day()
        return TenantPolicyView(
            tenant=tenant,
            policy=rules.own,
            effective=rules.summary(),
            day=day,
            pages_used=a.used(tenant, day),
        )

    @api.get("/{tenant}/policy", response_model=TenantPolicyView)
    def get_policy(tenant: str, caller: CallerDep) -> TenantPolicyView:
        """The tenant's destination policy, the rules in force and today's page count."""
        _tenant(tenant)
        if caller.tenant not in (None, tenant):
            raise HTTPException(403, "a tenant key reads its own policy only")
        return _view(tenant)

    @api.put("/{tenant}/policy", response_model=TenantPolicyView)
    def put_policy(tenant: str, policy: TenantPolicy, caller: CallerDep) -> TenantPolicyView:
        """Set the tenant's policy (admin keys): ``bar_types``, ``allow_types``,
        ``allowed_regions``, ``bar_regions``, ``allow_regions``, ``daily_pages``, ``note``."""
        _admin(caller)
        allowance().set_policy(_tenant(tenant), policy)
        return _view(tenant)

    @api.delete("/{tenant}/policy", status_code=204)
    def delete_policy(tenant: str, caller: CallerDep) -> Response:
        """Remove the tenant's policy (admin keys): the fleet's rules apply as they are."""
        _admin(caller)
        allowance().delete_policy(_tenant(tenant))
        return Response(status_code=204)

    return api
