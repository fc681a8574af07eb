"""Hostile input against the sandbox and the scratch-file tools, with the worker as root and as an unprivileged
user: every hole of issue 13 (items 1-3) is tried and must stay closed. Run alone with `pytest -m hostile`."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from swarmkeep.activities.tools import ToolContext, toolset_for
from swarmkeep.activities.tools import sandbox_guard as guard

pytestmark = pytest.mark.hostile
HELPER = Path(__file__).with_name("support") / "hostile_worker.py"
USER = "swarmkeep-hostile"
SECRET = "hostile-secret-7f3a"
UNPRIVILEGED_PYTHON = "/usr/bin/python3.11"


@dataclass
class Worker:
    """How to start a worker-like process as root or as the unprivileged user, and the files it guards."""

    kind: str
    base: Path

    @property
    def scratch(self) -> Path:
        return self.base / "data" / "scratch" / "job-a"

    def argv(self, spec: dict) -> list[str]:
        if self.kind == "root":
            return [sys.executable, "-I", str(HELPER), json.dumps(spec)]
        return ["runuser", "-u", USER, "--", UNPRIVILEGED_PYTHON, "-I", str(HELPER), json.dumps(spec)]

    def run(self, spec: dict, timeout: float = 60, wrap: list[str] | None = None) -> dict:
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "SWARMKEEP_LLM_API_KEY": SECRET,
            "SWARMKEEP_DATABASE_URL": f"db://{SECRET}",
        }
        argv = self.argv(spec)
        if wrap:
            argv = [*wrap, *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        assert done.stdout.strip(), done.stderr
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _user_exists() -> bool:
    return subprocess.run(["id", USER], capture_output=True, check=False).returncode == 0


def _make_user() -> str | None:
    """Create the unprivileged user; the reason why not, if it cannot be done."""
    if os.geteuid() != 0:
        return "creating a user needs root"
    if not Path(UNPRIVILEGED_PYTHON).exists():
        return f"{UNPRIVILEGED_PYTHON} (a Python the unprivileged user can run) is missing"
    if not _user_exists():
        made = subprocess.run(["useradd", "--system", "--no-create-home", USER], capture_output=True, check=False)
        if made.returncode != 0:
            return f"useradd failed: {made.stderr.decode().strip()}"
    return None


@pytest.fixture(params=["root", "unprivileged"])
def worker(request: pytest.FixtureRequest) -> Iterator[Worker]:
    """A data directory like the image's (job store, artifacts, two jobs' scratch folders) owned by the worker."""
    if request.param == "root" and os.geteuid() != 0:
        pytest.skip("the root case needs the tests to run as root")
    if request.param == "unprivileged" and (reason := _make_user()):
        pytest.skip(f"no unprivileged user: {reason}")
    base = Path(tempfile.mkdtemp(prefix="swarmkeep-hostile-", dir="/tmp"))
    base.chmod(0o755)
    data = base / "data"
    (data / "scratch" / "job-a").mkdir(parents=True)
    (data / "scratch" / "job-b").mkdir(parents=True)
    (data / "artifacts" / "job-b").mkdir(parents=True)
    (data / "swarmkeep.db").write_text(f"job store {SECRET}")
    (data / "scratch" / "job-b" / "notes.txt").write_text(f"other tenant {SECRET}")
    (data / "artifacts" / "job-b" / "report.md").write_text(f"artifact {SECRET}")
    if request.param == "unprivileged":  # the worker owns its data, as uid 10001 does in the image
        subprocess.run(["chown", "-R", f"{USER}:", str(base)], check=True)
    yield Worker(request.param, base)
    shutil.rmtree(base, ignore_errors=True)


def _spec(worker: Worker, code: str, **limits: object) -> dict:
    base_limits: dict[str, object] = {"wall_seconds": 15, "cpu_seconds": 10}
    if worker.kind != "root":
        base_limits["python"] = UNPRIVILEGED_PYTHON
    return {"scenario": "run", "code": code, "workdir": str(worker.scratch), "limits": base_limits | limits}


def test_program_sees_no_secret_no_data_dir_and_no_other_job(worker: Worker) -> None:
    data = worker.base / "data"
    code = f"""
import json, os
seen = {{}}
def attempt(name, action):
    try:
        seen[name] = action()
    except Exception as error:
        seen[name] = f"refused {{type(error).__name__}}"
attempt("proc1", lambda: open("/proc/1/environ", "rb").read().decode(errors="replace"))
attempt("worker", lambda: open(f"/proc/{{os.getppid()}}/environ", "rb").read().decode(errors="replace"))
attempt("host_pid", lambda: open("/proc/WORKER/environ", "rb").read().decode(errors="replace"))
attempt("store", lambda: open("{data}/swarmkeep.db").read())
attempt("other", lambda: open("{data}/scratch/job-b/notes.txt").read())
attempt("artifact", lambda: open("{data}/artifacts/job-b/report.md").read())
attempt("write_other", lambda: open("{data}/scratch/job-b/planted.txt", "w").write("x"))
attempt("relative", lambda: open("../job-b/notes.txt").read())
attempt("root", lambda: sorted(os.listdir("/")))
attempt("procs", lambda: sorted(p for p in os.listdir("/proc") if p.isdigit()))
attempt("uid", lambda: os.getuid())
attempt("env", lambda: dict(os.environ))
print(json.dumps(seen))
"""
    # The worker-like process's own pid, as the host sees it, is what a leak through the host's /proc would use.
    outcome = worker.run(_spec(worker, code.replace("WORKER", str(os.getpid()))))
    assert outcome.get("ok"), outcome
    seen = json.loads(outcome["stdout"])
    assert SECRET not in outcome["stdout"], seen
    for name in ("store", "other", "artifact", "write_other", "relative", "host_pid"):
        assert str(seen[name]).startswith("refused"), (name, seen[name])
    assert not (data / "scratch" / "job-b" / "planted.txt").exists()
    assert seen["uid"] == 65534
    assert set(seen["root"]) <= {"usr", "bin", "lib", "lib64", "sbin", "lib32", "libx32", "etc", "proc", "dev",
                                 "scratch", ".swarmkeep", "root", "opt", "home", "work", "tmp", "var"}  # fmt: skip
    assert len(seen["procs"]) <= 4  # bwrap's init, the launcher, the program
    assert "SWARMKEEP" not in json.dumps(seen["env"])


def test_sandbox_refuses_to_run_with_the_hosts_proc(worker: Worker) -> None:
    spec = _spec(worker, "print('RAN')") | {"proc_mount": "host"}
    outcome = worker.run(spec)
    assert "RAN" not in json.dumps(outcome)
    assert outcome.get("unavailable") or (outcome["setup_failed"] and not outcome["ok"]), outcome
    assert "/proc" in json.dumps(outcome)


def test_sandbox_refuses_to_run_where_a_fresh_proc_cannot_be_mounted(worker: Worker) -> None:
    """As under Docker: an over-mounted /proc (here /proc/acpi) makes the kernel refuse a new proc mount."""
    if not Path("/proc/acpi").is_dir() or shutil.which("unshare") is None:
        pytest.skip("no /proc/acpi to cover, or no unshare(1), so the Docker case cannot be simulated here")
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount -t tmpfs none /proc/acpi && exec "$@"']
    outcome = worker.run(_spec(worker, "print('RAN')"), wrap=[*wrap, "sh"])
    assert "RAN" not in outcome.get("stdout", ""), outcome
    assert outcome.get("unavailable"), outcome
    assert "proc" in outcome["unavailable"]


def test_per_sandbox_memory_limit_holds_against_32_processes_of_1_gib(worker: Worker) -> None:
    code = """
import os, time
for _ in range(31):
    if os.fork() == 0:
        break
blocks = []
for _ in range(32):
    try:
        blocks.append(b"\\1" * (32 << 20))
    except MemoryError:
        break
    time.sleep(0.02)
time.sleep(10)
"""
    started = time.monotonic()
    outcome = worker.run(_spec(worker, code, memory_bytes=512 << 20, max_processes=40), timeout=60)
    assert not outcome["ok"], outcome
    assert outcome["memory_exceeded"], outcome
    assert "for all its processes together" in outcome["verdict"]
    assert time.monotonic() - started < 12


def test_fork_bomb_is_bounded_by_the_process_limit(worker: Worker) -> None:
    bomb = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n"
    started = time.monotonic()
    outcome = worker.run(_spec(worker, bomb, max_processes=16, wall_seconds=3, cpu_seconds=2), timeout=60)
    assert not outcome["ok"]
    # Refused forks (RLIMIT_NPROC in the sandbox's own user namespace) or killed at the count (a root worker's
    # sandbox, which the kernel exempts from RLIMIT_NPROC): either way bounded, and stopped.
    assert outcome["processes_exceeded"] or outcome["timed_out"], outcome
    assert time.monotonic() - started < 20
    assert _sandboxed_programs() == []


def _sandboxed_programs() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"hostile-sleeper" in argv:
                found.append(int(entry))
    return found


def test_sleeper_dies_with_its_worker(worker: Worker) -> None:
    code = "import time\nopen('started', 'w').write('1')\ntime.sleep(600)\n"
    spec = _spec(worker, code, wall_seconds=600) | {"scenario": "sleeper"}
    groups_before = _sandbox_cgroups()
    process = subprocess.Popen(worker.argv(spec), stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        helper = json.loads(process.stdout.readline())["pid"]
        deadline = time.monotonic() + 30
        while not (worker.scratch / "started").exists():
            assert time.monotonic() < deadline, "the sleeper never started"
            time.sleep(0.1)
        sandboxed = [pid for pid in guard.descendants(helper) if pid != helper]
        assert sandboxed
        os.kill(helper, signal.SIGKILL)  # the worker crashes; nothing waits for its children
        deadline = time.monotonic() + 5
        while (alive := [pid for pid in sandboxed if Path(f"/proc/{pid}").exists() and not _zombie(pid)]) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert alive == [], f"still running after the worker died: {alive}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for left in _sandbox_cgroups() - groups_before:  # a killed worker cannot remove its (now empty) cgroups
            with contextlib.suppress(OSError):
                left.rmdir()


def _sandbox_cgroups() -> set[Path]:
    return set(Path("/sys/fs/cgroup").glob("**/swarmkeep-sandbox-*"))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_symlink_race_never_redirects_a_read(worker: Worker) -> None:
    outside = worker.base / "outside"
    outside.mkdir()
    (outside / "f").write_text(SECRET)
    if worker.kind != "root":
        subprocess.run(["chown", "-R", f"{USER}:", str(outside)], check=True)
    spec = {"scenario": "race", "workdir": str(worker.scratch), "outside": str(outside), "seconds": 3.0}
    reads = worker.run(spec, timeout=60)
    assert reads["leaked"] == 0, reads
    assert reads["inside"] > 0 and reads["refused"] > 0, reads  # the race really ran both ways


async def test_symlink_race_against_the_file_tools(tmp_path: Path) -> None:
    """The real read_file, list_files and write_markdown tools while a thread swaps a folder for a link."""
    scratch, outside = tmp_path / "scratch", tmp_path / "outside"
    (scratch / "d").mkdir(parents=True)
    outside.mkdir()
    (scratch / "d" / "f").write_text("inside")
    (outside / "f").write_text(SECRET)
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            try:
                os.rename(scratch / "d", scratch / "parked")
                os.symlink(outside, scratch / "d")
                os.unlink(scratch / "d")
                os.rename(scratch / "parked", scratch / "d")
            except OSError:  # a tool made a real d/ in the gap; take it away and go on
                shutil.rmtree(scratch / "d", ignore_errors=True)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    context = ToolContext(job_id="job-a", scratch_dir=scratch)
    leaked, rounds, end = 0, 0, time.monotonic() + 3
    try:
        while time.monotonic() < end:
            rounds += 1
            read = await toolset_for("writer").call("read_file", {"filename": "d/f"}, context)
            leaked += SECRET in read.content
            wrote = await toolset_for("writer").call(
                "write_markdown", {"filename": "d/g.md", "content": "planted"}, context
            )
            leaked += not wrote.is_error and (outside / "g.md").exists()
    finally:
        stop.set()
        thread.join()
    assert rounds > 20 and leaked == 0
    assert not (outside / "g.md").exists()


def _zip_bomb(path: Path, rows: int = 1_500_000) -> None:
    """An .xlsx of a few MiB whose sheet unpacks to hundreds of MiB of cells."""
    cells = "".join(f'<c t="n"><v>{i}</v></c>' for i in range(10))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("[Content_Types].xml", CONTENT_TYPES)
        book.writestr("_rels/.rels", ROOT_RELS)
        book.writestr("xl/workbook.xml", WORKBOOK)
        book.writestr("xl/_rels/workbook.xml.rels", WORKBOOK_RELS)
        with book.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
                        b'2006/main"><sheetData>')  # fmt: skip
            chunk = ("<row>" + cells + "</row>").encode() * 10_000
            for _ in range(rows // 10_000):
                sheet.write(chunk)
            sheet.write(b"</sheetData></worksheet>")


async def test_xlsx_zip_bomb_through_read_table_costs_only_the_sandbox(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    _zip_bomb(scratch / "bomb.xlsx")
    assert (scratch / "bomb.xlsx").stat().st_size < 8 << 20
    from swarmkeep.activities.tools import SandboxLimits

    context = ToolContext(job_id="job-a", scratch_dir=scratch, sandbox=SandboxLimits(memory_bytes=768 << 20))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    result = await toolset_for("analyst").call("read_table", {"filename": "bomb.xlsx"}, context)
    assert result.is_error and "could not read bomb.xlsx" in result.content, result.content
    assert "memory" in result.content or "limit" in result.content, result.content
    assert time.monotonic() - started < 60
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 200_000  # KiB: parsed elsewhere


CONTENT_TYPES = (
    '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'
)
ROOT_RELS = (
    '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'officeDocument" Target="xl/workbook.xml"/></Relationships>'
)
WORKBOOK = (
    '<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="Bomb" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
WORKBOOK_RELS = (
    '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
)
