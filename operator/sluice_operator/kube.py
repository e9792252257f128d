"""A small JSON client over the kubernetes package's connection: dicts in and out, server-side apply, events."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple
from urllib.parse import urlencode

import urllib3
from kubernetes import client, config

from .api import BY_KIND, EVENTS, Obj, Resource, rfc3339

JSON: Final = "application/json"
APPLY: Final = "application/apply-patch+yaml"
MERGE: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"


class Event(NamedTuple):
    """A Kubernetes event to post on an object: Normal or Warning, a CamelCase reason, a message."""

    type: str
    reason: str
    message: str


class ApiError(Exception):
    """A failed API request: the HTTP status (0 when the server was not reached) and its message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status, self.reason, self.message = status, reason, message

    @property
    def permanent(self) -> bool:
        """The request itself is wrong (400, 422): sending it again cannot help."""
        return self.status in (400, 422)

    @property
    def transient(self) -> bool:
        """The server could not answer now (unreachable, 409 conflict, 429, 5xx): worth a prompt retry."""
        return self.status in (0, 409, 429) or self.status >= 500


class Kube:
    """Requests to one API server with the credentials of the kubernetes package's configuration."""

    def __init__(self, api: client.ApiClient, timeout: float = 30.0) -> None:
        self.api, self.timeout = api, timeout

    @classmethod
    def from_environment(cls, timeout: float = 30.0, connections: int = 32) -> Kube:
        """In a pod: its service account; elsewhere: $KUBECONFIG or ~/.kube/config. `connections`: kept open for
        reuse, at least as many as threads may call at once (the client's default, 5 per core, was 10 here:
        beyond it each request opened and closed a TLS connection of its own)."""
        configuration = client.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.connection_pool_maxsize = connections
        return cls(client.ApiClient(configuration), timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | Sequence[Obj] | None = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = JSON,
    ) -> Obj:
        """One request; raises ApiError for any status >= 400 or a connection failure."""
        url_path = f"{path}?{urlencode(query)}" if query else path
        headers = {"Accept": JSON, "Content-Type": content_type}
        _, url, headers, _, _ = self.api.param_serialize(
            method=method, resource_path=url_path, header_params=headers, auth_settings=["BearerToken"]
        )
        try:  # the REST layer serializes the body as JSON for JSON and YAML (apply) content types alike
            response = self.api.call_api(method, url, header_params=headers, body=body, _request_timeout=self.timeout)
            raw = response.read()  # type: ignore[no-untyped-call]
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiError(0, "Unreachable", f"{method} {path}: {error}") from error
        document = json.loads(raw) if raw else {}
        if response.status >= 400:
            message = document.get("message", raw.decode(errors="replace")) if document else response.reason
            raise ApiError(response.status, document.get("reason", response.reason or ""), message)
        return dict(document)

    def get(self, resource: Resource, namespace: str | None, name: str) -> Obj | None:
        """The object, or None if it does not exist."""
        try:
            return self.request("GET", resource.path(namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def list(self, resource: Resource, namespace: str | None = None, selector: str | None = None) -> list[Obj]:
        query = {"labelSelector": selector} if selector else None
        return list(self.request("GET", resource.path(namespace), query=query).get("items", []))

    def list_page(
        self, resource: Resource, namespace: str | None, limit: int, after: str | None = None
    ) -> tuple[Sequence[Obj], str | None]:
        """At most `limit` objects, from where the page `after` (a continue token) ended; and the token of the next
        page, None after the last. Decoding a listing of thousands of objects whole costs hundreds of MiB."""
        query = {"limit": str(limit), **({"continue": after} if after else {})}
        answer = self.request("GET", resource.path(namespace), query=query)
        return list(answer.get("items", [])), answer.get("metadata", {}).get("continue") or None

    def apply(self, manifest: Mapping[str, Any], field_manager: str) -> Obj:
        """Server-side apply, taking back fields someone else changed (force)."""
        resource = BY_KIND[manifest["kind"]]
        meta = manifest["metadata"]
        path = resource.path(meta.get("namespace"), meta["name"])
        query = {"fieldManager": field_manager, "force": "true"}
        return self.request("PATCH", path, manifest, query=query, content_type=APPLY)

    def merge_patch(
        self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any], subresource: str | None = None
    ) -> Obj:
        return self.request("PATCH", resource.path(namespace, name, subresource), patch, content_type=MERGE)

    def json_patch(self, resource: Resource, namespace: str, name: str, operations: Sequence[Obj]) -> Obj:
        """RFC 6902 operations; a failed `test` operation is a 422."""
        return self.request("PATCH", resource.path(namespace, name), operations, content_type=JSON_PATCH)

    def create(self, resource: Resource, namespace: str, body: Mapping[str, Any]) -> Obj:
        return self.request("POST", resource.path(namespace), body)

    def replace(self, resource: Resource, namespace: str, name: str, body: Mapping[str, Any]) -> Obj:
        return self.request("PUT", resource.path(namespace, name), body)

    def delete(self, resource: Resource, namespace: str, name: str, uid: str) -> None:
        """Deletes that very object (its uid): one created anew meanwhile stays. Gone already is fine."""
        try:
            self.request("DELETE", resource.path(namespace, name), {"preconditions": {"uid": uid}})
        except ApiError as error:
            if error.status not in (404, 409):
                raise

    def post_event(self, involved: Mapping[str, Any], *, type: str, reason: str, message: str, component: str) -> None:
        """A core/v1 Event about `involved` (seen in `kubectl describe` and `kubectl events`)."""
        meta = involved["metadata"]
        now = rfc3339(datetime.now(UTC))
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.create(EVENTS, meta["namespace"], event)
