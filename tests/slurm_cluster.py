"""A real one-node Slurm cluster on localhost, for the tests (and by hand):

    python tests/slurm_cluster.py start DIR     # prints: export SLURM_CONF=DIR/slurm.conf
    python tests/slurm_cluster.py stop DIR

Debian's slurm-wlm (slurmctld, slurmd, sbatch) and munge, installed with apt-get when missing
and running as root. Everything lives under DIR: slurm.conf on free local ports, munged on
its own socket, state, spool, logs and pid files; nothing of the system's configuration is
touched, and ``stop`` ends every daemon that ``start`` began. The node offers this machine's
CPUs; process tracking by /proc, no cgroups (containers often lack them).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
TOOLS = ["slurmctld", "slurmd", "sbatch", "sinfo", "scontrol", "munged"]
MUNGE_KEY = Path("/etc/munge/munge.key")


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def install() -> str | None:
    """Install Slurm and munge when missing; None when ready, else why not."""
    if all(_which(t) for t in TOOLS) and MUNGE_KEY.exists():
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "Slurm is not installed and this is no root shell with apt-get to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
                ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]):
        subprocess.run(cmd, capture_output=True, timeout=900, env=env)
        if all(_which(t) for t in TOOLS) and MUNGE_KEY.exists():
            return None
    return "apt-get could not install " + " ".join(PACKAGES)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf(d: Path) -> str:
    host = socket.gethostname().split(".")[0]
    cpus = len(os.sched_getaffinity(0))
    return f"""ClusterName=perfmodel-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/munge.socket.2
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
InactiveLimit=0
KillWait=5
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=local Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def env(d: Path) -> dict:
    """The environment that points Slurm's clients at this cluster."""
    return dict(os.environ, SLURM_CONF=str(d / "slurm.conf"))


def start(d: Path, timeout_s: float = 60) -> dict:
    """Start munged, slurmctld and slurmd under ``d``; wait for the node to be idle; return
    the client environment. Raises RuntimeError with the daemons' log tails on failure."""
    why = install()
    if why:
        raise RuntimeError(why)
    d = Path(d).resolve()
    for sub in ("state", "spool", "log", "munge"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "slurm.conf").write_text(_conf(d))
    subprocess.run([_which("munged"), "--force", f"--socket={d}/munge/munge.socket.2",
                    f"--pid-file={d}/munge.pid", f"--log-file={d}/log/munged.log",
                    f"--seed-file={d}/munge/munge.seed", f"--key-file={MUNGE_KEY}"],
                   check=True, capture_output=True, timeout=30)
    e = env(d)
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run([_which(daemon), "-f", str(d / "slurm.conf")], check=True,
                       capture_output=True, timeout=30, env=e)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                           env=e, timeout=30)
        if r.stdout.strip() == "idle":
            return e
        time.sleep(0.5)
    logs = "".join(f"\n--- {p.name}\n" + "\n".join(p.read_text().splitlines()[-8:])
                   for p in sorted((d / "log").glob("*.log")))
    stop(d)
    raise RuntimeError(f"the Slurm node did not become idle in {timeout_s:g} s{logs}")


def stop(d: Path) -> None:
    """End every daemon ``start`` began under ``d`` (by their pid files)."""
    d = Path(d).resolve()
    if (d / "slurm.conf").exists():
        subprocess.run(["scontrol", "shutdown"], capture_output=True, env=env(d), timeout=30)
    for name in ("slurmd.pid", "slurmctld.pid", "munge.pid"):
        pid_file = d / name
        if not pid_file.exists():
            continue
        try:
            pid = int(pid_file.read_text().split()[0])
        except (ValueError, IndexError):
            continue
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                continue
            break


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    if argv[0] == "start":
        try:
            start(Path(argv[1]))
        except RuntimeError as e:
            print(f"slurm_cluster: {e}", file=sys.stderr)
            return 1
        print(f"export SLURM_CONF={Path(argv[1]).resolve()}/slurm.conf")
    else:
        stop(Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
