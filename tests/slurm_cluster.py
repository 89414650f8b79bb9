"""A real single-node SLURM cluster on localhost with one fake GPU, for the SLURM profile test.

Facts from ../shared/notes/slurm-on-localhost.md: slurm.conf must be /etc/slurm/slurm.conf; no
cgroups here (linuxproc, task/none); a GPU needs a File= line in gres.conf; without accounting the
executor must query squeue and finished jobs must stay visible (MinJobAge). Needs root, the Debian
packages slurmctld slurmd slurm-client munge (.ci/run installs them) and free ports 6817-6818.
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
PORTS = (6817, 6818)


def why_not():
    """The reason this machine cannot host the test cluster, or None."""
    if os.geteuid() != 0:
        return "not root: starting slurmctld, slurmd and munged needs root"
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sinfo", "sbatch", "squeue") if not shutil.which(b)]
    if missing:
        return f"SLURM binaries not installed ({', '.join(missing)}); .ci/run installs them with apt-get"
    for port in PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return f"port {port} is taken (another SLURM daemon running?)"
    return None


def _wait(check, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"SLURM test cluster: {what} did not come up in {timeout} s")


def _ok(*cmd, input=None):
    return subprocess.run(cmd, capture_output=True, text=True, input=input).returncode == 0


class Cluster:
    def __init__(self, state_dir):
        self.state = Path(state_dir)
        self.pids = []
        self.saved = {}

    def start(self):
        st = self.state
        for sub in ("ctld", "d"):
            (st / sub).mkdir(parents=True, exist_ok=True)
        cpus = os.cpu_count() or 2
        for path in (SLURM_CONF, GRES_CONF):
            self.saved[path] = path.read_bytes() if path.exists() else None
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(f"""ClusterName=l1kformertest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={PORTS[0]}
SlurmdPort={PORTS[1]}
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={st}/ctld
SlurmdSpoolDir={st}/d
SlurmctldPidFile={st}/slurmctld.pid
SlurmdPidFile={st}/slurmd.pid
SlurmctldLogFile={st}/slurmctld.log
SlurmdLogFile={st}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
SlurmdParameters=config_overrides
GresTypes=gpu
MinJobAge=3600
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
        GRES_CONF.write_text("AutoDetect=off\nNodeName=localhost Name=gpu File=/dev/null\n")
        run_munge = Path("/run/munge")
        run_munge.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_munge, "munge", "munge")
        if not _ok("sh", "-c", "munge -n | unmunge"):
            subprocess.run(["runuser", "-u", "munge", "--", "munged", "--force"], check=True)
            _wait(lambda: _ok("sh", "-c", "munge -n | unmunge"), "munged")
            self.pids.append(int((run_munge / "munged.pid").read_text()))
        subprocess.run(["slurmctld"], check=True)
        _wait(lambda: (st / "slurmctld.pid").exists(), "slurmctld")
        self.pids.append(int((st / "slurmctld.pid").read_text()))
        _wait(lambda: "UP" in subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout,
              "slurmctld (scontrol ping)")
        subprocess.run(["slurmd", "-N", "localhost"], check=True)
        _wait(lambda: (st / "slurmd.pid").exists(), "slurmd")
        self.pids.append(int((st / "slurmd.pid").read_text()))
        _wait(lambda: "idle" in subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True,
                                               text=True).stdout, "the node (sinfo idle)")
        return self

    def stop(self):
        for pid in reversed(self.pids):
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        for pid in self.pids:
            while time.time() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.1)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, 9)
        for path, content in self.saved.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)
