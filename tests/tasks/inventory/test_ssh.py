"""tasks.inventory.ssh: the ssh command line for a host, and shell code sent through it, with and without become."""

import subprocess

from tasks.inventory.model import Host, Inventory, Ssh
from tasks.inventory.ssh import SUDO, login_of, remote_command, ssh_argv


def _inventory(become: bool) -> Inventory:
    return Inventory(nodes=(Host(name="db1", address="10.0.0.5", ssh=Ssh(user="astrolab", become=become)),))


def test_the_login_shell_gets_the_script_as_it_is():
    inv = _inventory(False)
    via = ssh_argv(inv, inv.host("db1"))
    assert via[-2:] == ["astrolab@10.0.0.5", "--"] and login_of(via) == "astrolab@10.0.0.5"
    assert remote_command(via, "echo 'a b'; id -u") == [*via, "echo 'a b'; id -u"]


def test_with_become_the_script_is_one_word_for_sudo_sh_c():
    inv = _inventory(True)
    via = ssh_argv(inv, inv.host("db1"))
    assert tuple(via[-4:]) == SUDO and login_of(via) == "astrolab@10.0.0.5"
    script = "printf '%s\\n' \"$1\" 'two words'; echo \"it's\""
    command = remote_command(via, script)
    # what the remote login shell runs: ssh joins the words after the destination with spaces
    remote_line = " ".join(command[command.index("--") + 1:])
    assert remote_line.startswith("sudo -n sh -c ")
    ran = subprocess.run(["sh", "-c", remote_line.removeprefix("sudo -n ")], capture_output=True, text=True)
    assert ran.stdout == "\ntwo words\nit's\n"
