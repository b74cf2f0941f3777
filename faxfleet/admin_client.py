"""The administration client: sites, groups and cost tables through the public API.

    from faxfleet.admin_client import AdminClient

    with AdminClient(["http://api-1:8040"], admin_key="...") as admin:
        admin.create_group("europe")
        admin.create_site({"name": "paris", "country": "FR", ...})
        admin.import_costs("paris", Path("paris.csv").read_text())

The public API relays ``/v1/sites`` and ``/v1/groups`` to the routing service's admin API;
this client only knows the public URLs and fails over between them like
:class:`~faxfleet.client.FaxClient` (same transport). Every method returns the decoded
JSON answer (CSV exports return text) and raises :class:`~faxfleet.client.FaxError` on
refusal; a refused cost table carries its line-numbered errors in ``exc.body["errors"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faxfleet.client import ApiClient, FaxError, Unreachable
from faxfleet.settings import get_settings

AdminError = FaxError

__all__ = ["AdminClient", "AdminError", "Unreachable"]


class AdminClient(ApiClient):
    def __init__(
        self,
        urls: str | Sequence[str] | None = None,
        admin_key: str | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.admin_key = admin_key or get_settings().admin_key
        super().__init__(urls, self.admin_key, timeout=timeout)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        return response.json() if response.content else None

    # -- sites --------------------------------------------------------------------------

    def sites(self) -> list[dict[str, Any]]:
        """Every declared site merged with its live state (and live undeclared sites)."""
        return list(self._json("GET", "/v1/sites"))

    def site(self, name: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/sites/{name}"))

    def create_site(self, config: dict[str, Any]) -> dict[str, Any]:
        return dict(self._json("POST", "/v1/sites", json=config))

    def replace_site(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        return dict(self._json("PUT", f"/v1/sites/{name}", json=config))

    def update_site(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Partial change, e.g. ``{"lines": 6}`` or ``{"group": None}``."""
        return dict(self._json("PATCH", f"/v1/sites/{name}", json=changes))

    def remove_site(self, name: str) -> None:
        self._request("DELETE", f"/v1/sites/{name}")

    # -- groups -------------------------------------------------------------------------

    def groups(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/groups"))

    def create_group(self, name: str, description: str = "") -> dict[str, Any]:
        return dict(
            self._json("POST", "/v1/groups", json={"name": name, "description": description})
        )

    def delete_group(self, name: str) -> None:
        self._request("DELETE", f"/v1/groups/{name}")

    def add_to_group(self, group: str, site: str) -> dict[str, Any]:
        return dict(self._json("PUT", f"/v1/groups/{group}/sites/{site}"))

    def remove_from_group(self, group: str, site: str) -> dict[str, Any]:
        """Make ``site`` standalone (it must be a member of ``group``)."""
        return dict(self._json("DELETE", f"/v1/groups/{group}/sites/{site}"))

    # -- cost tables --------------------------------------------------------------------

    def import_costs(self, site: str, csv_text: str) -> dict[str, Any]:
        """Import a cost table; the answer has ``version``, ``rows`` and ``currency``."""
        return dict(
            self._json(
                "PUT",
                f"/v1/sites/{site}/costs",
                content=csv_text.encode(),
                headers={"Content-Type": "text/csv; charset=utf-8"},
            )
        )

    def export_costs(self, site: str, version: int | None = None) -> str:
        params = {"version": str(version)} if version is not None else None
        return self._request("GET", f"/v1/sites/{site}/costs", params=params).text

    def cost_versions(self, site: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/sites/{site}/costs/versions"))

    def rollback_costs(self, site: str, version: int) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/sites/{site}/costs/rollback/{version}"))

    def quote(
        self,
        number: str,
        *,
        at: str | None = None,
        seconds: float | None = None,
        sites: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Each site's tariff in force for ``number`` at ``at`` (ISO 8601; default now)
        and the cost of a call of ``seconds`` (default 60), cheapest first."""
        params: dict[str, str] = {"number": number}
        if at:
            params["at"] = at
        if seconds is not None:
            params["seconds"] = str(seconds)
        if sites:
            params["sites"] = ",".join(sites)
        return dict(self._json("GET", "/v1/costs/quote", params=params))
