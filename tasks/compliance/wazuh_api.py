"""Read agents and SCA results from a Wazuh 4.x manager's REST API (default port 55000), standard library only.

Shapes follow wazuh/wazuh@v4.14.7 ``api/api/spec/spec.yaml``: ``POST /security/user/authenticate`` (HTTP basic
auth) returns ``{"data": {"token": JWT}}``; list endpoints (``GET /agents``, ``GET /sca/{agent_id}``,
``GET /sca/{agent_id}/checks/{policy_id}``) take ``offset``/``limit`` (limit 1..100000, 500 recommended) and return
``{"data": {"affected_items", "total_affected_items", "failed_items", "total_failed_items"}, "message", "error"}``;
errors carry ``{"title", "detail"}``, and an expired token gives HTTP 401. The API leaves out empty fields, so every
field read here has a default.

The password is kept in one private attribute and used only to build the basic-auth header; it is never part of a
message, repr or exception. Connections go straight to the manager (environment proxies are ignored) and redirects
are refused, so the credentials cannot be forwarded elsewhere.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tasks.compliance.evaluate import CheckResult, PolicyResult, Status
from tasks.compliance.scan import HostScan
from tasks.errors import TransientError

DEFAULT_PORT = 55000
PAGE_SIZE = 500  # the spec's recommended ceiling for ``limit``
MAX_LIMIT = 100000
MANAGER_AGENT_ID = "000"
SOURCE = "wazuh"
_DETAIL_CHARS = 200


class WazuhApiError(RuntimeError):
    """One line: ``Wazuh API <url>: <what> (HTTP <code>: <title> - <detail>)`` or ``... (<reason>)``."""


class WazuhApiUnreachable(WazuhApiError, TransientError):
    """The manager did not answer (network, refused connection, timeout)."""


@dataclass(frozen=True)
class WazuhAgent:
    id: str
    name: str
    status: str  # active | disconnected | never_connected | pending
    ip: str = ""
    os_name: str = ""
    os_version: str = ""
    os_platform: str = ""
    version: str = ""
    last_keepalive: datetime | None = None


@dataclass(frozen=True)
class WazuhPolicySummary:
    policy_id: str
    name: str
    description: str = ""
    passed: int = 0  # API field "pass"
    failed: int = 0  # API field "fail"
    invalid: int = 0
    total_checks: int = 0
    score: int = 0
    start_scan: datetime | None = None
    end_scan: datetime | None = None
    hash_file: str = ""
    references: str = ""


@dataclass(frozen=True)
class WazuhCheck:
    id: int
    policy_id: str
    title: str
    result: str  # "passed" | "failed" | "not applicable" | "" (not evaluated; see reason)
    reason: str = ""
    description: str = ""
    rationale: str = ""
    remediation: str = ""
    condition: str = ""
    command: str = ""
    file: str = ""
    directory: str = ""
    process: str = ""
    registry: str = ""
    references: str = ""
    compliance: tuple[tuple[str, str], ...] = ()  # (key, value) as the API gives them, e.g. ("cis_csc_v8", "4.1,5.2")
    rules: tuple[tuple[str, str], ...] = ()  # (type, rule)

    def compliance_ids(self, key: str) -> tuple[str, ...]:
        """The comma-separated values of every ``key`` entry, split, stripped and de-duplicated in order."""
        ids = (part.strip() for k, v in self.compliance if k == key for part in v.split(","))
        return tuple(dict.fromkeys(i for i in ids if i))


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _text(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    return "" if value is None else str(value)


def _pairs(items: Any, first: str, second: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(i.get(first, "")), str(i.get(second, ""))) for i in items or () if isinstance(i, dict))


def _one_line(text: Any) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _DETAIL_CHARS else line[: _DETAIL_CHARS - 3] + "..."


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _http_why(status: int, body: dict[str, Any]) -> str:
    """``HTTP 403: Permission Denied - <detail>`` from the API's ``title``/``detail`` error object."""
    title = _one_line(body.get("title", "")) or "error"
    detail = _one_line(body.get("detail", ""))
    return f"HTTP {status}: {title}" + (f" - {detail}" if detail and detail != title else "")


class _Secret:
    """Holds the password so that neither ``repr`` nor ``vars()`` of the client shows it."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "_Secret('***')"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the 3xx surfaces as an HTTPError instead of re-sending the Authorization header


class WazuhClient:
    """Token-authenticated reader of a Wazuh manager API. ``verify``: True, False, or a CA bundle path."""

    def __init__(
        self, url: str, user: str, password: str, verify: bool | str = True, timeout: float = 30,
        *, page_size: int = PAGE_SIZE,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Wazuh API URL must be http(s)://host[:port], got {_one_line(url)!r}")
        if parts.username or parts.password:
            raise ValueError("Wazuh API URL must not carry credentials; pass user and password")
        if not 1 <= page_size <= MAX_LIMIT:
            raise ValueError(f"page_size must be 1..{MAX_LIMIT}")
        self.url = url.rstrip("/")
        self.user = user
        self.__password = _Secret(password)
        self.timeout = timeout
        self.page_size = page_size
        self._token: str | None = None
        if verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context), _NoRedirect()
        )

    def __repr__(self) -> str:
        return f"WazuhClient({self.url!r}, user={self.user!r})"

    def _error(self, what: str, why: str) -> WazuhApiError:
        message = f"Wazuh API {self.url}: {what} ({why})"
        if self.__password.value:
            message = message.replace(self.__password.value, "***")
        return (WazuhApiUnreachable if why.startswith("unreachable") else WazuhApiError)(message)

    def _send(self, method: str, path: str, what: str, auth: str) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON object) for 2xx and 401; any other failure raises WazuhApiError."""
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": auth, "Accept": "application/json"}
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
            exc.close()
            if status != 401:
                raise self._error(what, _http_why(status, _json_object(raw) or {})) from None
        except urllib.error.URLError as exc:
            kind = "TLS failed" if isinstance(exc.reason, ssl.SSLError) else "unreachable"
            raise self._error(what, f"{kind}: {_one_line(exc.reason)}") from None
        except OSError as exc:  # a read timeout or a reset connection after connecting
            raise self._error(what, f"unreachable: {_one_line(exc) or type(exc).__name__}") from None
        body = _json_object(raw)
        if body is None:
            raise self._error(what, f"HTTP {status}: response is not a JSON object")
        return status, body

    def authenticate(self) -> None:
        basic = base64.b64encode(f"{self.user}:{self.__password.value}".encode()).decode("ascii")
        what = f"authentication as {self.user!r} failed"
        status, body = self._send("POST", "/security/user/authenticate", what, "Basic " + basic)
        if status == 401:
            raise self._error(what, _http_why(401, body))
        data = body.get("data")
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise self._error(what, "no token in the response")
        self._token = token

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET ``path`` with the token, authenticating first and once more after an HTTP 401; the ``data`` object."""
        query = "?" + urllib.parse.urlencode(params) if params else ""
        what = f"GET {path}"
        for attempt in (1, 2):
            if self._token is None:
                self.authenticate()
            status, body = self._send("GET", path + query, what, f"Bearer {self._token}")
            if status != 401:
                break
            self._token = None
            if attempt == 2:
                raise self._error(what, _http_why(401, body) + " after re-authenticating")
        data = body.get("data")
        if not isinstance(data, dict):
            raise self._error(what, f"no 'data' object in the response (error {body.get('error')!r})")
        failed = data.get("failed_items") or []
        if data.get("total_failed_items") or failed:
            first = failed[0] if failed and isinstance(failed[0], dict) else {}
            error = first.get("error")
            error = error if isinstance(error, dict) else {}
            ids = ",".join(str(i) for i in first.get("id", []))
            why = f"{len(failed)} failed item(s): {_one_line(error.get('message', 'unknown error'))}"
            raise self._error(what, f"{why} (code {error.get('code')}, id {ids})" if ids else why)
        return data

    def _paged(self, path: str) -> list[dict[str, Any]]:
        """Every ``affected_items`` entry, page by page, until ``total_affected_items`` (or an empty page)."""
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            data = self.get(path, {"offset": offset, "limit": self.page_size})
            page = data.get("affected_items") or []
            items.extend(i for i in page if isinstance(i, dict))
            offset += len(page)
            if not page or offset >= int(data.get("total_affected_items") or 0):
                return items

    def agents(self) -> list[WazuhAgent]:
        """Every registered agent, the manager itself (id ``000``) included."""
        out = []
        for a in self._paged("/agents"):
            os_ = a.get("os")
            os_ = os_ if isinstance(os_, dict) else {}
            out.append(WazuhAgent(
                id=str(a.get("id", "")), name=str(a.get("name", "")), status=str(a.get("status", "")),
                ip=str(a.get("ip", "")), os_name=str(os_.get("name", "")), os_version=str(os_.get("version", "")),
                os_platform=str(os_.get("platform", "")), version=str(a.get("version", "")),
                last_keepalive=_time(a.get("lastKeepAlive")),
            ))
        return out

    def sca_policies(self, agent_id: str) -> list[WazuhPolicySummary]:
        return [
            WazuhPolicySummary(
                policy_id=str(p.get("policy_id", "")), name=str(p.get("name", "")),
                description=str(p.get("description", "")), passed=int(p.get("pass") or 0),
                failed=int(p.get("fail") or 0), invalid=int(p.get("invalid") or 0),
                total_checks=int(p.get("total_checks") or 0), score=int(p.get("score") or 0),
                start_scan=_time(p.get("start_scan")), end_scan=_time(p.get("end_scan")),
                hash_file=str(p.get("hash_file", "")), references=str(p.get("references", "")),
            )
            for p in self._paged(f"/sca/{urllib.parse.quote(agent_id, safe='')}")
        ]

    def sca_checks(self, agent_id: str, policy_id: str) -> list[WazuhCheck]:
        path = f"/sca/{urllib.parse.quote(agent_id, safe='')}/checks/{urllib.parse.quote(policy_id, safe='')}"
        out = []
        for c in self._paged(path):
            out.append(WazuhCheck(
                id=int(c.get("id", -1)), policy_id=_text(c, "policy_id") or policy_id, title=_text(c, "title"),
                result=_text(c, "result"), reason=_text(c, "reason"), description=_text(c, "description"),
                rationale=_text(c, "rationale"), remediation=_text(c, "remediation"), condition=_text(c, "condition"),
                command=_text(c, "command"), file=_text(c, "file"), directory=_text(c, "directory"),
                process=_text(c, "process"), registry=_text(c, "registry"), references=_text(c, "references"),
                compliance=_pairs(c.get("compliance"), "key", "value"), rules=_pairs(c.get("rules"), "type", "rule"),
            ))
        return out


# --- astrolab's own result shape -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckOutcome:
    check_id: int
    title: str
    result: Status
    reason: str
    remediation: str
    cis_csc_v8: tuple[str, ...]
    source: str = SOURCE


@dataclass(frozen=True)
class PolicyScan:
    policy_id: str
    name: str
    passed: int
    failed: int
    invalid: int
    score: int
    end_scan: datetime | None
    checks: tuple[CheckOutcome, ...]
    source: str = SOURCE


@dataclass(frozen=True)
class AgentScan:
    agent: WazuhAgent
    policies: tuple[PolicyScan, ...]
    note: str = ""  # why there are no policies, e.g. the agent never connected
    source: str = SOURCE


_RESULTS = {s.value: s for s in Status}


def check_outcome(check: WazuhCheck) -> CheckOutcome:
    """Map a Wazuh check to astrolab's: an empty result (not evaluated) is not applicable, with Wazuh's reason."""
    status = _RESULTS.get(check.result.strip().lower())
    reason = check.reason
    if status is None:
        status = Status.NOT_APPLICABLE
        reason = reason or (f"unknown Wazuh result {check.result!r}" if check.result else "no result reported")
    return CheckOutcome(check.id, check.title, status, reason, check.remediation, check.compliance_ids("cis_csc_v8"))


def agent_results(client: WazuhClient, agent_names: set[str] | None = None) -> list[AgentScan]:
    """SCA results of every agent (only those named in ``agent_names`` when given), as the manager last stored them.

    Agents that never connected have no SCA data and come back with no policies and a note; API errors propagate.
    """
    scans = []
    for agent in client.agents():
        if agent_names is not None and agent.name not in agent_names:
            continue
        if agent.status == "never_connected":
            scans.append(AgentScan(agent, (), note="never connected: no SCA results"))
            continue
        policies = tuple(
            PolicyScan(
                p.policy_id, p.name, p.passed, p.failed, p.invalid, p.score, p.end_scan,
                tuple(check_outcome(c) for c in client.sca_checks(agent.id, p.policy_id)),
            )
            for p in client.sca_policies(agent.id)
        )
        scans.append(AgentScan(agent, policies, note="" if policies else "no SCA policies reported"))
    return scans


def _names(agents: Iterable[WazuhAgent], status: str) -> list[str]:
    return sorted(a.name for a in agents if a.status == status)


def alerting_evidence(client: WazuhClient, agent_names: set[str] | None = None) -> dict[str, Any]:
    """Evidence for CIS Controls v8 safeguard 13.1 (centralised security event alerting) from the manager's view.

    - ``agents_total`` / ``agents_active`` / ``active_ratio``: registered agents (the manager, id 000, included) and
      how many are reporting now; only active agents deliver events that can raise alerts.
    - ``disconnected`` / ``never_connected`` / ``pending``: agent names in those states, sorted.
    - ``last_sca_scan``: per agent name, the latest SCA ``end_scan`` the manager holds (ISO 8601, None without one),
      a freshness signal that the agent's events still reach the manager; never-connected agents are not queried.
    - ``oldest_sca_scan``: the oldest of those latest scans (None when there are none).
    - ``not_enrolled`` (only with ``agent_names``): inventory names with no registered agent, so no events at all.
    """
    agents = client.agents()
    last: dict[str, str | None] = {}
    for agent in agents:
        if agent.status == "never_connected":
            last[agent.name] = None
            continue
        ends = [p.end_scan for p in client.sca_policies(agent.id) if p.end_scan is not None]
        last[agent.name] = max(ends).isoformat() if ends else None
    active = sum(a.status == "active" for a in agents)
    known = [t for t in last.values() if t is not None]
    evidence: dict[str, Any] = {
        "safeguard": "13.1",
        "source": SOURCE,
        "manager": client.url,
        "agents_total": len(agents),
        "agents_active": active,
        "active_ratio": round(active / len(agents), 4) if agents else 0.0,
        "disconnected": _names(agents, "disconnected"),
        "never_connected": _names(agents, "never_connected"),
        "pending": _names(agents, "pending"),
        "last_sca_scan": dict(sorted(last.items())),
        "oldest_sca_scan": min(known, key=datetime.fromisoformat) if known else None,
    }
    if agent_names is not None:
        evidence["not_enrolled"] = sorted(agent_names - {a.name for a in agents})
    return evidence


def host_scan(agent: AgentScan) -> HostScan:
    """An agent's SCA results as a host scan, so they join the same store, drift and report as astrolab's own."""
    policies = []
    for p in agent.policies:
        checks = tuple(CheckResult(c.check_id, c.title, c.result, c.reason, (), (("cis_csc_v8", c.cis_csc_v8),),
                                   c.remediation) for c in p.checks)
        moment = p.end_scan or datetime.now(UTC)
        policies.append(PolicyResult(p.policy_id, p.name, SOURCE, True, "", checks, p.passed, p.failed, p.invalid,
                                     float(p.score), moment, moment))
    status = "scanned" if agent.policies or agent.agent.status == "active" else "unreachable"
    return HostScan(agent.agent.name, status, agent.note, policies, finished_at=datetime.now(UTC))
