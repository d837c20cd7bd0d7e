"""The lab's inventory: one YAML file of hosts, roles, networks, VM templates and services, shared by the
compliance scans, the backups and the cluster build."""
