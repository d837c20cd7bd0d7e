"""CIS Controls v8 safeguards that no single host check can show, judged from the run as a whole.

1.1 (enterprise asset inventory): the inventory against the hosts that answered (and the agents Wazuh knows);
2.1 (software inventory): an installed-package list collected from every scanned host;
13.1 (security event alerting): the Wazuh manager's view of its agents, when a manager is configured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tasks.compliance.scan import HostScan


def asset_inventory(inventory_hosts: Sequence[str], scans: Sequence[HostScan],
                    wazuh_agents: Sequence[str] | None = None) -> dict[str, str]:
    """1.1: every inventory host answered, and (with Wazuh) every agent is in the inventory and vice versa."""
    answered = {s.host for s in scans if s.status == "scanned"}
    silent = sorted(set(inventory_hosts) - answered)
    notes = [f"{len(answered)} of {len(inventory_hosts)} inventory hosts answered"]
    if silent:
        notes.append("not answering: " + ", ".join(silent))
    unknown: list[str] = []
    if wazuh_agents is not None:
        unknown = sorted(set(wazuh_agents) - set(inventory_hosts))
        missing = sorted(set(inventory_hosts) - set(wazuh_agents))
        if unknown:
            notes.append("Wazuh agents not in the inventory: " + ", ".join(unknown))
        if missing:
            notes.append("inventory hosts without a Wazuh agent: " + ", ".join(missing))
    status = "passed" if not silent and not unknown else "failed"
    return {"safeguard": "1.1", "status": status, "evidence": "; ".join(notes)}


def software_inventory(scans: Sequence[HostScan]) -> dict[str, str]:
    """2.1: a package list from every scanned host."""
    scanned = [s for s in scans if s.status == "scanned"]
    without = sorted(s.host for s in scanned if not s.packages)
    counts = ", ".join(f"{s.host}: {len(s.packages)}" for s in scanned if s.packages)
    notes = [f"packages listed on {len(scanned) - len(without)} of {len(scanned)} scanned hosts ({counts})"]
    if without:
        notes.append("no package list from: " + ", ".join(without))
    return {"safeguard": "2.1", "status": "passed" if scanned and not without else "failed",
            "evidence": "; ".join(notes)}


def event_alerting(alerting: Mapping[str, Any] | None) -> dict[str, str]:
    """13.1: every Wazuh agent reports to the manager (``wazuh_api.alerting_evidence``), or that no manager is
    configured to show it."""
    if alerting is None:
        return {"safeguard": "13.1", "status": "not applicable",
                "evidence": "no Wazuh manager configured (compliance.wazuh_url): nothing shows alerting"}
    active, total = int(alerting["agents_active"]), int(alerting["agents_total"])
    silent = [*alerting.get("disconnected", []), *alerting.get("never_connected", []), *alerting.get("pending", []),
              *alerting.get("not_enrolled", [])]
    text = f"{active} of {total} Wazuh agents active (manager {alerting.get('manager', '?')})"
    if silent:
        text += "; not reporting: " + ", ".join(sorted(silent))
    if alerting.get("oldest_sca_scan"):
        text += f"; oldest agent SCA scan {alerting['oldest_sca_scan']}"
    return {"safeguard": "13.1", "status": "passed" if total and not silent else "failed", "evidence": text}
