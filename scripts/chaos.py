#!/usr/bin/env python3
"""The chaos suite's orchestrator (run by scripts/chaos.sh, which starts PostgreSQL first).

Every scenario gets a fresh database cloned from the migrated template, a fresh storage root
and its own worker processes (`medianest-worker run`, real handlers, real media generated
once with the ffmpeg CLI). Faults are injected from outside: SIGKILL, SIGSTOP/SIGCONT,
SIGTERM, `pg_ctl restart -m fast|immediate`, a frozen TCP proxy (socat), a full tmpfs, a
read-only remount, `medianest-worker cancel`, faketime. Loopback only.

The columns of the final table (also in docs/CHAOS.md):
  jobs         processing_jobs rows of the scenario.
  lost         jobs not in their expected final state at the end: still pending or running,
               or failed/cancelled when they should have completed (every job is expected to
               complete except the one the cancel scenario cancels).
  duplicated   a result written twice: an item settled (ready/error notification) more than
               once, more than one completed job per (item, type), or an output file of a
               completed job whose inode, size or mtime changed after the job was first seen
               completed (a late or second writer replaced it).
  stuck        media items left in `processing` (or `uploading`).
  stray_files  entries under the derived root whose name starts with `.` (temporary files of
               runs that never committed), plus outputs a completed job points to that are
               missing or empty (half-written).
  recover_s    seconds from the end of the fault (the last kill, the restart, the thaw, the
               freed space) until every job was final.
"""
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

WORKER = os.environ["CHAOS_WORKER"]
PG_BIN = os.environ["CHAOS_PG_BIN"]
PG_OWNER = os.environ["CHAOS_PG_OWNER"]
PG_DIR = os.environ["CHAOS_PG_DIR"]
PGHOST = os.environ["PGHOST"]
PGPORT = int(os.environ["PGPORT"])
PG_PASSWORD = os.environ["MEDIANEST_TEST_PG_PASSWORD"]
IS_ROOT = os.geteuid() == 0

LEASE = float(os.environ.get("CHAOS_LEASE", "4"))
HEARTBEAT = max(0.5, LEASE / 4)
STORM_IMAGES = int(os.environ.get("CHAOS_STORM_IMAGES", "400"))
STORM_VIDEOS = int(os.environ.get("CHAOS_STORM_VIDEOS", "40"))
KILLS = int(os.environ.get("CHAOS_KILLS", "12"))
KILL_EVERY = float(os.environ.get("CHAOS_KILL_EVERY", "2"))
LONG_SECONDS = int(os.environ.get("CHAOS_LONG_SECONDS", "90"))
SCENARIO_TIMEOUT = float(os.environ.get("CHAOS_SCENARIO_TIMEOUT", "240"))
OWNER = "00000000-0000-4000-8000-00000000c0a5"
FINAL = ("completed", "failed", "cancelled")

WORK = tempfile.mkdtemp(prefix="medianest-chaos.")
os.chmod(WORK, 0o755)
MEDIA = os.path.join(WORK, "media")

# Everything to undo, newest first: processes (by pid, each started here), mounts.
processes = []
mounts = []


def log(message):
    print(f"\033[1m==> {message}\033[0m", file=sys.stderr, flush=True)


def note(message):
    print(f"    {message}", file=sys.stderr, flush=True)


# --- cleanup -----------------------------------------------------------------------------------

def kill_group(proc):
    """SIGKILLs the process group `proc` leads (every process is started in a session of its
    own), also when the leader has exited: `faketime` runs the worker as its child."""
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def cleanup():
    for proc in reversed(processes):
        kill_group(proc)
    processes.clear()
    for path in reversed(mounts):
        subprocess.run(["umount", "-l", path], stderr=subprocess.DEVNULL)
    mounts.clear()
    if os.environ.get("CHAOS_KEEP") != "1":
        shutil.rmtree(WORK, ignore_errors=True)
    else:
        log(f"kept {WORK}")


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGHUP, on_signal)


# --- PostgreSQL ----------------------------------------------------------------------------------

def psql(db, sql, *args):
    """Runs `sql` (psql variables :'v1', :'v2'... bound from args) and returns rows of strings."""
    cmd = ["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", db]
    for index, arg in enumerate(args, 1):
        cmd += ["-v", f"v{index}={arg}"]
    out = subprocess.run(cmd, input=sql, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr.strip()}\n{sql}")
    return [line.split("\t") for line in out.stdout.splitlines() if line]


def scalar(db, sql, *args):
    rows = psql(db, sql, *args)
    return rows[0][0] if rows else None


def wait_db_up(db, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if subprocess.run(["psql", "-X", "-At", "-d", db, "-c", "SELECT 1"], capture_output=True).returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError("PostgreSQL did not come back")


def pg_ctl(*args):
    cmd = [f"{PG_BIN}/pg_ctl", "-D", f"{PG_DIR}/data", *args]
    if IS_ROOT:
        cmd = ["runuser", "-u", PG_OWNER, "--"] + cmd
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def url(db, port=None):
    if port is None:
        return f"host={PGHOST} port={PGPORT} user=medianest dbname={db}"
    return f"host=127.0.0.1 port={port} user=medianest password={PG_PASSWORD} dbname={db} connect_timeout=5"


# --- media ---------------------------------------------------------------------------------------

def ff(*args):
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_media():
    """Small real files: JPEGs (metadata, thumbnail, preview), a short MPEG-4 Part 2 AVI that
    needs a real transcode (all four job types), and a long one for the long-job scenarios."""
    os.makedirs(MEDIA, exist_ok=True)
    log("generating media with ffmpeg")
    sources = ["testsrc2", "mandelbrot", "smptebars", "rgbtestsrc"]
    for index, source in enumerate(sources):
        ff("-f", "lavfi", "-i", f"{source}=size=640x480", "-frames:v", "1", "-q:v", "4", f"{MEDIA}/img{index}.jpg")
    ff("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050",
       "-t", "1", "-c:v", "mpeg4", "-q:v", "5", "-c:a", "mp2", "-shortest", f"{MEDIA}/clip.avi")
    ff("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", str(LONG_SECONDS),
       "-c:v", "mpeg4", "-q:v", "6", "-an", f"{MEDIA}/long.avi")


def make_storage(root):
    os.makedirs(f"{root}/lib", exist_ok=True)
    for name in os.listdir(MEDIA):
        shutil.copy(f"{MEDIA}/{name}", f"{root}/lib/{name}")


# --- a scenario's world ----------------------------------------------------------------------------

class World:
    """One scenario: its database, storage root, workers, and the output snapshots."""

    def __init__(self, name, storage_tmpfs=False, derived_tmpfs_mb=None):
        self.name = name
        self.db = f"chaos_{name}"
        self.dir = os.path.join(WORK, name)
        self.root = os.path.join(self.dir, "storage")
        self.derived = os.path.join(self.root, ".derived")
        os.makedirs(self.root)
        if storage_tmpfs:
            mount_tmpfs(self.root, 64)
        make_storage(self.root)
        if derived_tmpfs_mb:
            os.makedirs(self.derived)
            mount_tmpfs(self.derived, derived_tmpfs_mb)
        subprocess.run(["createdb", "-T", "chaos_template", self.db], check=True)
        psql(self.db, "INSERT INTO users (id, email, password_hash) VALUES (:'v1', 'chaos@medianest.local', 'x')", OWNER)
        self.workers = {}
        self.snapshots = {}  # output path -> (inode, size, mtime_ns)
        self.expected_cancelled = set()
        # The storm kills workers from outside, at random: a job killed twice while it ran
        # alone is, by design, judged the crash's culprit (`worker_lost`). Final, but reported.
        self.poison_is_expected = False
        self.events = []

    # items

    def add_items(self, kind, count, types=None):
        """Inserts `count` items of `kind` (image|video|long) and enqueues them; returns their ids."""
        path, mime = {"image": (None, "image/jpeg"), "video": ("lib/clip.avi", "video/x-msvideo"),
                      "long": ("lib/long.avi", "video/x-msvideo")}[kind]
        type_array = "NULL" if types is None else "ARRAY[" + ",".join(f"'{t}'" for t in types) + "]"
        rows = psql(self.db, f"""
            WITH new AS (
                INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path)
                SELECT :'v1', 'f' || g, '{kind} ' || g, '{mime}',
                       coalesce(nullif(:'v2', ''), 'lib/img' || (g % 4) || '.jpg')
                  FROM generate_series(1, {int(count)}) g
                RETURNING id)
            SELECT id, (SELECT count(*) FROM enqueue_media_processing(id, {type_array})) FROM new;
            """, OWNER, path if path else "")
        return [row[0] for row in rows]

    # workers

    def start_worker(self, key, *extra, db_port=None, env_extra=None, prefix=()):
        logfile = open(os.path.join(self.dir, f"worker-{key}.log"), "a")
        env = dict(os.environ)
        env.update(env_extra or {})
        cmd = [*prefix, WORKER, "run", "--database-url", url(self.db, db_port), "--storage-root", self.root,
               "--lease", str(LEASE), "--heartbeat", str(HEARTBEAT), "--poll-interval", "1",
               "--listen-poll-interval", "2", "--retry-base", "1", "--retry-max", "4",
               "--grace-period", "5", "--metrics-address", "off", "--log-level", "info",
               "--log-format", "text", "--max-attempts", "8", *extra]
        proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        processes.append(proc)
        self.workers[key] = proc
        return proc

    def kill_worker(self, key, sig=signal.SIGKILL):
        proc = self.workers[key]
        if proc.poll() is None:
            os.kill(proc.pid, sig)

    def wait_exit(self, key, timeout=60):
        proc = self.workers[key]
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"worker {key} did not exit within {timeout} s")

    def stop_all(self):
        for key, proc in self.workers.items():
            for sig in (signal.SIGCONT, signal.SIGTERM):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
        for key, proc in self.workers.items():
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log_text(self, key):
        with open(os.path.join(self.dir, f"worker-{key}.log"), errors="replace") as f:
            return f.read()

    # observation

    def counts(self):
        rows = psql(self.db, "SELECT status, count(*) FROM processing_jobs GROUP BY 1")
        return {status: int(n) for status, n in rows}

    def job(self, job_id):
        rows = psql(self.db, """SELECT status, worker_id, lease_id, attempts, coalesce(progress_info->>'fraction', '0'),
                                       coalesce(completed_at::text, ''), output_data::text, lost_count
                                  FROM processing_jobs WHERE id = :'v1'""", job_id)
        keys = ("status", "worker_id", "lease_id", "attempts", "fraction", "completed_at", "output", "lost_count")
        return dict(zip(keys, rows[0])) if rows else None

    def job_of(self, item, job_type):
        return scalar(self.db, "SELECT id FROM processing_jobs WHERE media_item_id = :'v1' AND job_type = :'v2' ORDER BY created_at DESC LIMIT 1", item, job_type)

    def outputs(self):
        """(job id, path under the storage root) of every output a completed job points to."""
        rows = psql(self.db, """
            SELECT j.id, p FROM processing_jobs j JOIN media_items m ON m.id = j.media_item_id,
                   LATERAL (SELECT m.thumbnail_path WHERE j.job_type = 'thumbnail'
                            UNION ALL SELECT m.preview_path WHERE j.job_type = 'preview'
                            UNION ALL SELECT s FROM jsonb_array_elements_text(
                                   CASE WHEN j.job_type = 'preview' AND jsonb_typeof(m.processing_info #> '{trickplay,sheets}') = 'array'
                                        THEN m.processing_info #> '{trickplay,sheets}' ELSE '[]' END) s
                            UNION ALL SELECT r->>'path' FROM jsonb_array_elements(
                                   CASE WHEN j.job_type = 'transcode' AND jsonb_typeof(m.processing_info->'renditions') = 'array'
                                        THEN m.processing_info->'renditions' ELSE '[]' END) r) o(p)
             WHERE j.status = 'completed' AND p IS NOT NULL""")
        return [(job, path) for job, path in rows]

    def snapshot_outputs(self):
        """Records inode/size/mtime of outputs of completed jobs the first time they are seen."""
        for _job, path in self.outputs():
            if path in self.snapshots:
                continue
            try:
                st = os.stat(os.path.join(self.root, path))
                self.snapshots[path] = (st.st_ino, st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                pass

    def wait_until(self, predicate, what, timeout=SCENARIO_TIMEOUT, snapshot=True, poll=0.3):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if snapshot:
                self.snapshot_outputs()
            value = predicate()
            if value:
                return value
            time.sleep(poll)
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}; jobs {self.counts()}")

    def all_final(self):
        counts = self.counts()
        return sum(counts.values()) > 0 and all(status in FINAL for status in counts)

    def wait_all_final(self, timeout=SCENARIO_TIMEOUT):
        self.wait_until(self.all_final, "every job final", timeout)
        self.snapshot_outputs()
        return time.time()

    # judgement

    def audit(self, recover_s, detail=""):
        jobs = int(scalar(self.db, "SELECT count(*) FROM processing_jobs"))
        bad = psql(self.db, """
            SELECT id, job_type, status, coalesce(output_data #>> '{error,code}', ''), coalesce(error_message, '')
              FROM processing_jobs WHERE status <> 'completed'""")
        lost_rows = [row for row in bad if not (row[2] == "cancelled" and row[0] in self.expected_cancelled)
                     and not (self.poison_is_expected and row[2] == "failed" and row[3] == "worker_lost")]
        for row in lost_rows[:5]:
            note(f"lost: job {row[0]} {row[1]} {row[2]} {row[3]} {row[4][:160]}")
        missing_cancel = [job for job in self.expected_cancelled if not any(row[0] == job and row[2] == "cancelled" for row in bad)]
        settled_twice = int(scalar(self.db, """
            SELECT count(*) FROM (SELECT data->>'media_item_id' FROM notifications WHERE category = 'media'
                                  GROUP BY 1 HAVING count(*) > 1) x"""))
        completed_twice = int(scalar(self.db, """
            SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM processing_jobs WHERE status = 'completed'
                                                 GROUP BY media_item_id, job_type HAVING count(*) > 1) x"""))
        rewritten = []
        for path, before in self.snapshots.items():
            try:
                st = os.stat(os.path.join(self.root, path))
                if (st.st_ino, st.st_size, st.st_mtime_ns) != before:
                    rewritten.append(path)
            except FileNotFoundError:
                rewritten.append(path)
        for path in rewritten[:5]:
            note(f"duplicated: {path} changed after its job was final")
        if settled_twice or completed_twice:
            note(f"duplicated: {settled_twice} items settled twice, {completed_twice} extra completions")
        stuck = int(scalar(self.db, "SELECT count(*) FROM media_items WHERE status IN ('processing', 'uploading')"))
        strays = []
        for dirpath, dirnames, filenames in os.walk(self.derived):
            for name in dirnames + filenames:
                if name.startswith("."):
                    strays.append(os.path.join(dirpath, name))
        for _job, path in self.outputs():
            full = os.path.join(self.root, path)
            if not os.path.isfile(full) or os.path.getsize(full) == 0:
                strays.append(full + " (missing or empty)")
        for path in strays[:5]:
            note(f"stray: {os.path.relpath(path, self.root)}")
        row = {"scenario": self.name, "jobs": jobs, "lost": len(lost_rows) + len(missing_cancel),
               "duplicated": len(rewritten) + settled_twice + completed_twice, "stuck": stuck,
               "stray_files": len(strays), "recover_s": recover_s, "detail": detail}
        return row


def mount_tmpfs(path, size_mb):
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", path], check=True)
    mounts.append(path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_pid_pattern(proc):
    return f"%:{proc.pid}:%"


def running_on(world, proc):
    return [row[0] for row in psql(world.db, "SELECT id FROM processing_jobs WHERE status = 'running' AND worker_id LIKE :'v1'",
                                   worker_pid_pattern(proc))]


def db_now(world):
    return float(scalar(world.db, "SELECT extract(epoch FROM clock_timestamp())"))


# --- scenarios -------------------------------------------------------------------------------------

def scenario_storm():
    """3 workers, >= 1,000 jobs; a random worker is SIGKILLed every few seconds and restarted
    after 1 s, as systemd would (Restart=on-failure). Also measures what one crash costs."""
    w = World("kill9_storm")
    w.poison_is_expected = True
    w.add_items("image", STORM_IMAGES)
    w.add_items("video", STORM_VIDEOS)
    started = time.time()
    for key in "abc":
        w.start_worker(key, "--instance", str("abc".index(key) + 1))
    kills = []  # (kill time on the db clock, jobs the killed worker had running)
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "15")))
    restarts = {}
    last_kill = time.time()
    while len(kills) < KILLS and not w.all_final():
        deadline = time.time() + KILL_EVERY * rng.uniform(0.6, 1.4)
        while time.time() < deadline:
            for key, at in list(restarts.items()):
                if time.time() >= at:
                    w.start_worker(key, "--instance", str("abc".index(key) + 1))
                    del restarts[key]
            w.snapshot_outputs()
            time.sleep(0.2)
        alive = [key for key in "abc" if key not in restarts and w.workers[key].poll() is None]
        if not alive:
            continue
        key = rng.choice(alive)
        w.kill_worker(key)
        w.workers[key].wait()
        # After the kill: its rows stay `running` under its id until their lease expires. (A
        # look before the kill names jobs that finish in the milliseconds before it lands.)
        at = db_now(w)
        victims = running_on(w, w.workers[key])
        last_kill = time.time()
        kills.append((at, victims))
        restarts[key] = time.time() + 1.0
    for key, at in list(restarts.items()):
        time.sleep(max(0, at - time.time()))
        w.start_worker(key, "--instance", str("abc".index(key) + 1))
    done = w.wait_all_final()
    recover = done - last_kill
    # What one crash cost: the jobs it interrupted, and how long until the last of them was done.
    delays = []
    delayed_jobs = 0
    for at, victims in kills:
        if not victims:
            continue
        delayed_jobs += len(victims)
        ends = psql(w.db, "SELECT extract(epoch FROM max(completed_at)) FROM processing_jobs WHERE id = ANY(:'v1'::uuid[])",
                    "{" + ",".join(victims) + "}")
        if ends and ends[0][0]:
            delays.append(float(ends[0][0]) - at)
            if os.environ.get("CHAOS_DEBUG"):
                note(f"kill at {at:.3f}: {len(victims)} jobs, last done {float(ends[0][0]):.3f}")
    crashes = len(kills)
    cost = ""
    if delays:
        delays.sort()
        cost = (f"{crashes} kills, {delayed_jobs} jobs interrupted ({delayed_jobs / crashes:.1f}/crash); "
                f"interrupted jobs done {delays[len(delays) // 2]:.1f} s (median) / {delays[-1]:.1f} s (max) after the kill; lease {LEASE:g} s")
    rescued = scalar(w.db, "SELECT count(*) FROM processing_jobs WHERE lost_count > 0")
    poisoned = int(scalar(w.db, "SELECT count(*) FROM processing_jobs WHERE output_data #>> '{error,code}' = 'worker_lost'"))
    jobs = int(scalar(w.db, "SELECT count(*) FROM processing_jobs"))
    w.stop_all()
    rate = f"{jobs} jobs in {done - started:.0f} s ({jobs / (done - started):.1f} jobs/s)"
    return w.audit(recover, f"{rate}; {cost or f'{len(kills)} kills'}; {rescued} jobs rescued; {poisoned} innocent jobs judged poison (killed twice while alone)")


def scenario_pg_restart(mode):
    """Two workers on a running queue; PostgreSQL restarted with -m fast or immediate mid-run."""
    w = World(f"pg_{mode}")
    w.add_items("image", 150)
    w.add_items("video", 10)
    w.start_worker("a", "--instance", "1")
    w.start_worker("b", "--instance", "2")
    w.wait_until(lambda: w.counts().get("completed", 0) >= 60, "some progress before the restart")
    pg_ctl("-m", mode, "-w", "-t", "60", "restart", "-o",
           f"-c listen_addresses=127.0.0.1 -p {PGPORT} -c unix_socket_directories={PG_DIR} -c max_connections=300 "
           f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    restarted = time.time()
    wait_db_up(w.db)
    # More work after the restart: the workers reconnect and LISTEN again without a restart.
    w.add_items("image", 20)
    done = w.wait_all_final()
    alive = all(proc.poll() is None for proc in w.workers.values())
    w.stop_all()
    row = w.audit(done - restarted, "workers kept running" if alive else "a worker EXITED")
    if not alive:
        row["lost"] += 1
    return row


def long_transcode_item(w):
    """An item with only a transcode job on the long video; returns (item, job)."""
    item = w.add_items("long", 1, types=["transcode"])[0]
    return item, w.job_of(item, "transcode")


def output_state(w, item):
    rendition = scalar(w.db, "SELECT processing_info #>> '{renditions,0,path}' FROM media_items WHERE id = :'v1'", item)
    if not rendition:
        return None
    full = os.path.join(w.root, rendition)
    st = os.stat(full)
    with open(full, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return rendition, st.st_ino, st.st_size, st.st_mtime_ns, digest


def wait_log(w, key, needles, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = w.log_text(key)
        for needle in needles:
            if needle in text:
                return needle
        time.sleep(0.3)
    return None


def fenced_takeover(name, freeze, thaw, db_port=None, proxy=None, stop_at=0.6):
    """The zombie and partition scenarios: worker A holds a long transcode; it is frozen
    (SIGSTOP of the worker, or of its TCP proxy to PostgreSQL) for longer than the lease; B
    rescues and finishes the job; A thaws. A's late result, heartbeats and outputs must be
    refused: the row and the rendition stay B's. A then serves new work without a restart."""
    w = World(name)
    if proxy:
        proxy(w)
    a = w.start_worker("a", "--instance", "1", "--transcode-mode", "always", db_port=db_port)
    item, job = long_transcode_item(w)
    # Late in the encode, so that the frozen run is close to committing when it thaws.
    def far_enough():
        state = w.job(job)
        if state["status"] in FINAL:
            raise RuntimeError(f"the long transcode is {state['status']} before it reached {stop_at:.0%}; raise CHAOS_LONG_SECONDS")
        return state["status"] == "running" and float(state["fraction"]) >= stop_at
    w.wait_until(far_enough, f"the long transcode past {stop_at:.0%} on worker A", snapshot=False, poll=0.05)
    before = w.job(job)
    frozen_at = time.time()
    freeze(w)
    if w.job(job)["status"] in FINAL:
        # A committed between the last look and the freeze: the scenario did not happen.
        raise RuntimeError(f"the long transcode ended on worker A before the freeze took hold (seen at {float(before['fraction']):.0%}); "
                           "lower stop_at or raise CHAOS_LONG_SECONDS")
    # B serves transcodes only, so the image item enqueued later can only be A's.
    w.start_worker("b", "--instance", "2", "--types", "transcode", "--transcode-mode", "always")
    w.wait_until(lambda: w.job(job)["status"] == "completed", "B to rescue and finish the transcode")
    recovered = time.time() - frozen_at
    after_b = w.job(job)
    files_b = output_state(w, item)
    w.snapshot_outputs()
    thaw(w)
    outcome = wait_log(w, "a", ["lost the lease", "result dropped", "no longer owns", "no longer ours", "lost its lease"], timeout=60)
    time.sleep(2 * HEARTBEAT + 1)
    final = w.job(job)
    files_final = output_state(w, item)
    problems = []
    if before["lease_id"] == after_b["lease_id"]:
        problems.append("B did not take the job over")
    for field in ("status", "worker_id", "lease_id", "completed_at", "output"):
        if final[field] != after_b[field]:
            problems.append(f"row {field} changed after the thaw")
    if files_final != files_b:
        problems.append(f"rendition changed after the thaw: {files_b} -> {files_final}")
    if outcome is None:
        problems.append("A never noticed it lost the job")
    # A reconnects (or resumes) and works on without a restart.
    probe_item = w.add_items("image", 1, types=["metadata"])[0]
    probe_job = w.job_of(probe_item, "metadata")
    w.wait_until(lambda: w.job(probe_job)["status"] in FINAL, "A to serve a new job after the thaw", timeout=90)
    if a.poll() is not None:
        problems.append(f"A exited ({a.returncode})")
    elif w.job(probe_job)["worker_id"].split(":")[1] != str(a.pid):
        problems.append("the new job was not run by A")
    done = w.wait_all_final()
    w.stop_all()
    for problem in problems:
        note(f"{name}: {problem}")
    row = w.audit(recovered, "; ".join(problems) or f"A: '{outcome}'; row and rendition stayed B's; A served new work")
    # A replaced rendition is already counted by the audit's file snapshots; a changed row is not.
    row["duplicated"] += sum(1 for p in problems if p.startswith("row "))
    row["lost"] += sum(1 for p in problems if "exited" in p or "not run by A" in p or "did not take" in p or "never noticed" in p)
    return row


def scenario_zombie():
    return fenced_takeover(
        "zombie",
        freeze=lambda w: (os.kill(w.workers["a"].pid, signal.SIGSTOP), time.sleep(LEASE * 2.5)),
        thaw=lambda w: os.kill(w.workers["a"].pid, signal.SIGCONT))


def scenario_partition(also_paused=False):
    """The proxy freeze. With `also_paused` (the `paused_partitioned` row) A is also stopped
    near the end of its encode and woken while its proxy is still frozen: its encode finishes
    and wants to commit with no way to hear from the database that the job is B's."""
    port = free_port()
    holder = {}

    def start_proxy(w):
        logfile = open(os.path.join(w.dir, "socat.log"), "w")
        proc = subprocess.Popen(["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"TCP:127.0.0.1:{PGPORT}"],
                                stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
        processes.append(proc)
        holder["proxy"] = proc
        time.sleep(0.5)

    def freeze(w):
        # Every socat of the group: the listener and one child per connection.
        os.killpg(holder["proxy"].pid, signal.SIGSTOP)
        if also_paused:
            os.kill(w.workers["a"].pid, signal.SIGSTOP)
        time.sleep(LEASE * 2.5)

    def thaw(w):
        if also_paused:
            os.kill(w.workers["a"].pid, signal.SIGCONT)
            time.sleep(LEASE * 1.5)
        os.killpg(holder["proxy"].pid, signal.SIGCONT)

    if also_paused:
        # Not later than 70 %: the fraction A reports moves once per heartbeat, a fifth of this
        # encode at a time, so a freeze decided at 85 % once came after A had already finished
        # (2026-12-04: "B did not take the job over"). From 70 % the rest still ends within the
        # 1.5 leases A runs, woken, behind its frozen proxy.
        return fenced_takeover("paused_partitioned", freeze, thaw, db_port=port, proxy=start_proxy, stop_at=0.7)
    return fenced_takeover("partition", freeze, thaw, db_port=port, proxy=start_proxy)


def scenario_disk_full():
    if not IS_ROOT:
        return skipped("disk_full", "needs root to mount a tmpfs")
    w = World("disk_full", derived_tmpfs_mb=16)
    w.add_items("image", 30)
    w.start_worker("a", "--instance", "1")
    w.start_worker("b", "--instance", "2")
    w.wait_until(lambda: w.counts().get("completed", 0) >= 30, "some progress before the disk fills")
    filler = os.path.join(w.derived, "filler")
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], stderr=subprocess.DEVNULL)
    items = w.add_items("image", 20)
    # Metadata writes nothing: it must complete while the disk is full.
    w.wait_until(lambda: int(scalar(w.db, """SELECT count(*) FROM processing_jobs WHERE job_type = 'metadata' AND status = 'completed'
                                              AND media_item_id = ANY(:'v1'::uuid[])""", "{" + ",".join(items) + "}")) == len(items),
                 "metadata jobs to complete while the disk is full", timeout=90)
    w.wait_until(lambda: int(scalar(w.db, "SELECT count(*) FROM processing_jobs WHERE output_data #>> '{error,code}' = 'disk_full'")) > 0,
                 "a job to fail with disk_full", timeout=90)
    full_failures = scalar(w.db, "SELECT count(*) FROM processing_jobs WHERE output_data #>> '{error,code}' = 'disk_full'")
    os.unlink(filler)
    freed = time.time()
    done = w.wait_all_final()
    w.stop_all()
    return w.audit(done - freed, f"{full_failures} jobs retrying on disk_full while full; metadata completed meanwhile")


def scenario_read_only():
    if not IS_ROOT:
        return skipped("read_only_root", "needs root to remount")
    w = World("read_only_root", storage_tmpfs=True)
    w.add_items("image", 30)
    w.start_worker("a", "--instance", "1")
    w.wait_until(lambda: w.counts().get("completed", 0) >= 20, "some progress before the remount")
    # The kernel refuses (EBUSY) while a file is open for writing: retry until a moment with none.
    deadline = time.time() + 30
    while subprocess.run(["mount", "-o", "remount,ro", w.root], stderr=subprocess.DEVNULL).returncode != 0:
        if time.time() > deadline:
            raise RuntimeError("could not remount the storage root read-only for 30 s")
        time.sleep(0.05)
    w.add_items("image", 20)
    w.add_items("video", 2)
    time.sleep(LEASE * 2)
    subprocess.run(["mount", "-o", "remount,rw", w.root], check=True)
    writable = time.time()
    done = w.wait_all_final()
    w.stop_all()
    return w.audit(done - writable, "read-only for 2 leases")


def scenario_sigterm():
    """SIGTERM while two transcodes run: released with attempts given back, finished after restart."""
    w = World("sigterm_transcodes")
    items = [long_transcode_item(w) for _ in range(2)]
    w.start_worker("a", "--instance", "1", "--transcode-mode", "always", "--type-limits", "transcode=2",
                   "--grace-period", "1")
    jobs = [job for _item, job in items]
    w.wait_until(lambda: all(w.job(j)["status"] == "running" and float(w.job(j)["fraction"]) > 0.1 for j in jobs),
                 "both transcodes running")
    attempts = {j: int(w.job(j)["attempts"]) for j in jobs}
    w.kill_worker("a", signal.SIGTERM)
    status = w.wait_exit("a", timeout=60)
    problems = []
    if status != 0:
        problems.append(f"exit status {status}")
    for j in jobs:
        state = w.job(j)
        if state["status"] != "pending":
            problems.append(f"job {j[:8]} {state['status']} after SIGTERM, not pending")
        if int(state["attempts"]) != attempts[j] - 1:
            problems.append(f"job {j[:8]} attempts {state['attempts']} (claimed at {attempts[j]}): charged")
    restarted = time.time()
    w.start_worker("a2", "--instance", "1", "--transcode-mode", "always", "--type-limits", "transcode=2")
    done = w.wait_all_final()
    w.stop_all()
    for problem in problems:
        note(f"sigterm: {problem}")
    row = w.audit(done - restarted, "; ".join(problems) or "released uncharged, exit 0, finished after restart")
    row["lost"] += len(problems)
    return row


def scenario_cancel():
    """`medianest-worker cancel` on a transcode that is deep in its decode/encode loop."""
    w = World("cancel_long_decode")
    # An uploaded video, with all four jobs: an item whose only job is cancelled has nothing
    # that settles it and stays `processing` (see docs/CHAOS.md, "Known limits").
    item = w.add_items("long", 1)[0]
    job = w.job_of(item, "transcode")
    w.expected_cancelled.add(job)
    w.start_worker("a", "--instance", "1", "--transcode-mode", "always", "--type-limits", "transcode=1")
    w.wait_until(lambda: (j := w.job(job))["status"] == "running" and float(j["fraction"]) >= 0.2, "the transcode running")
    cancelled_at = time.time()
    subprocess.run([WORKER, "cancel", job, "--database-url", url(w.db)], check=True, stdout=subprocess.DEVNULL)
    stopped = wait_log(w, "a", ["job cancelled by an operator"], timeout=30)
    # The one transcode slot is free again: a new transcode completes.
    item2 = w.add_items("video", 1, types=["transcode"])[0]
    job2 = w.job_of(item2, "transcode")
    w.wait_until(lambda: w.job(job2)["status"] in FINAL, "the next transcode after the cancel", timeout=120)
    done = time.time()
    w.wait_all_final()
    w.stop_all()
    row = w.audit(done - cancelled_at, "stopped in-process" if stopped else "the worker never stopped the run")
    if not stopped:
        row["lost"] += 1
    return row


def scenario_clock_skew():
    """Three workers, one an hour ahead and one an hour behind (faketime): leases are judged by
    the database's clock, so nothing is rescued and every worker gets work."""
    w = World("clock_skew")
    w.add_items("image", 100)
    w.add_items("video", 8)
    # Only the clocks: libfaketime also shifts the times stat(2) reports unless NO_FAKE_STAT,
    # and a host whose clock is off still reads the file system's own timestamps.
    env = {"FAKETIME_DONT_FAKE_MONOTONIC": "1", "NO_FAKE_STAT": "1"}
    w.start_worker("ahead", "--instance", "1", prefix=("faketime", "-f", "+1h"), env_extra=env)
    w.start_worker("behind", "--instance", "2", prefix=("faketime", "-f", "-1h"), env_extra=env)
    w.start_worker("true", "--instance", "3")
    start = time.time()
    done = w.wait_all_final()
    rescued = int(scalar(w.db, "SELECT count(*) FROM processing_jobs WHERE lost_count > 0"))
    retried = int(scalar(w.db, "SELECT count(*) FROM processing_jobs WHERE attempts > 1"))
    w.stop_all()
    # faketime runs the worker as its child: count completions from each worker's own log.
    by_worker = {key: w.log_text(key).count("job completed") for key in ("ahead", "behind", "true")}
    problems = []
    if rescued:
        problems.append(f"{rescued} jobs rescued (a skewed clock stole or lost work)")
    if retried:
        problems.append(f"{retried} jobs needed a second attempt")
    for key in ("ahead", "behind"):
        if by_worker[key] == 0:
            problems.append(f"the worker {key} completed nothing")
    for problem in problems:
        note(f"clock_skew: {problem}")
    row = w.audit(done - start, "; ".join(problems) or f"jobs completed per worker {by_worker}, none rescued or retried")
    row["lost"] += rescued + retried
    return row


def skipped(name, why):
    note(f"{name}: SKIPPED ({why})")
    return {"scenario": name, "jobs": 0, "lost": 0, "duplicated": 0, "stuck": 0, "stray_files": 0,
            "recover_s": None, "detail": f"SKIPPED: {why}"}


SCENARIOS = {
    "storm": scenario_storm,
    "pg_fast": lambda: scenario_pg_restart("fast"),
    "pg_immediate": lambda: scenario_pg_restart("immediate"),
    "zombie": scenario_zombie,
    "partition": scenario_partition,
    "paused_partitioned": lambda: scenario_partition(also_paused=True),
    "disk_full": scenario_disk_full,
    "read_only": scenario_read_only,
    "sigterm": scenario_sigterm,
    "cancel": scenario_cancel,
    "clock_skew": scenario_clock_skew,
}


def main():
    chosen = [s for s in os.environ.get("CHAOS_SCENARIOS", ",".join(SCENARIOS)).split(",") if s]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    make_media()
    rows = []
    started = time.time()
    for name in chosen:
        log(f"scenario {name}")
        t0 = time.time()
        try:
            row = SCENARIOS[name]()
        except KeyboardInterrupt:
            raise
        except Exception as error:  # a scenario that breaks is a failed row, never a silent pass
            traceback.print_exc()
            row = {"scenario": name, "jobs": 0, "lost": 1, "duplicated": 0, "stuck": 0, "stray_files": 0,
                   "recover_s": None, "detail": f"ERROR: {error}"}
        finally:
            for proc in list(processes):
                kill_group(proc)
            processes.clear()
            for path in reversed(mounts):
                subprocess.run(["umount", "-l", path], stderr=subprocess.DEVNULL)
            mounts.clear()
        note(f"{name}: {time.time() - t0:.0f} s; {row['detail']}")
        rows.append(row)
    print()
    print(f"chaos suite, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {time.time() - started:.0f} s, lease {LEASE:g} s")
    header = ("scenario", "jobs", "lost", "duplicated", "stuck", "stray_files", "recover_s")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        recover = "-" if row["recover_s"] is None else f"{row['recover_s']:.1f}"
        print(f"| {row['scenario']} | {row['jobs']} | {row['lost']} | {row['duplicated']} | {row['stuck']} | {row['stray_files']} | {recover} |")
    print()
    for row in rows:
        print(f"- {row['scenario']}: {row['detail']}")
    failed = [row["scenario"] for row in rows if row["lost"] or row["duplicated"] or row["stuck"] or row["stray_files"]]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    status = 1
    try:
        status = main()
    except KeyboardInterrupt as interrupt:
        print(f"interrupted ({interrupt})", file=sys.stderr)
        status = 130
    finally:
        cleanup()
    sys.exit(status)
