#!/usr/bin/env python3
"""The soak driver behind `make soak` (scripts/soak.sh prepares the cluster and the media).

It runs one `medianest-worker run` with maintenance and metrics on, warms it up with one item
of each kind of a mixed library (outside the clock), enqueues items of that mix at a bounded
rate for SOAK_MINUTES, samples the worker every 10 s (RSS and anonymous RSS
from /proc/PID/status, descriptors from /proc/PID/fd, threads, the worker's PostgreSQL
connections), drains, lets the idle worker give memory back, stops it with SIGTERM, writes the
report and judges it:

  - RSS at the end more than 1.2x RSS at the end of the first third;
  - descriptors grew;
  - a job lost (not in a final state after the drain) or an item stuck in `processing`;
  - a job of a valid file failed, or the broken file did not fail with its stable code;
  - the worker did not exit 0 on SIGTERM.

Because one 10 s sample lands on whatever happens to run at that instant (a transcode at its
peak, or an idle pool that has just given its memory back), "RSS at" a moment is the median of
the samples of the minute before it (6 samples): a leak raises it, one busy or idle sample
does not. Descriptors grew when the median of the last third is above the highest sample
of the first third, or the idle worker at the end holds more than it held idle at start-up.

Only the standard library: psql (from the cluster's PG* environment) for SQL, /proc for the
process, urllib for /readyz and /metrics. Loopback only.
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

SAMPLE_SECONDS = 10
WINDOW_SAMPLES = 6  # "RSS at" a moment: the median of the samples of the minute before it
FINAL_STATES = ("completed", "failed", "cancelled")

# The mix, one item each per round, in this order: (source file, declared MIME type, expected
# failure code or None). The job set comes from the MIME type (enqueue_media_processing):
# images get metadata, thumbnail and preview; videos also transcode; audio metadata, thumbnail.
MIX = [
    ("photo-12mp.jpg", "image/jpeg", None),
    ("phone.mov", "video/quicktime", None),
    ("photo-1080p.jpg", "image/jpeg", None),
    ("song.mp3", "audio/mpeg", None),
    ("alpha.png", "image/png", None),
    ("photo.heic", "image/heic", None),
    ("clip-hevc10.mkv", "video/x-matroska", None),
    ("image.webp", "image/webp", None),
    ("animated.gif", "image/gif", None),
    ("a440.flac", "audio/flac", None),
    ("scan-16bit.tiff", "image/tiff", None),
    ("camera.dng", "image/x-adobe-dng", None),
    ("rotated.avif", "image/avif", None),
    # Not the JPEG XL fixture yet: its preview job fails (corrupt_media, "has no known duration,
    # so trickplay frames cannot be placed"): the still path does not recognise a bare JXL
    # codestream, so the preview takes it for a video. The thumbnail job renders it.
    ("broken.mov", "video/quicktime", "corrupt_media"),
]

OWNER = "00000000-0000-4000-8000-00000000500a"


def log(message):
    print(f"\033[1m==> {message}\033[0m", file=sys.stderr, flush=True)


def psql(sql, variables=None):
    """Runs `sql` (one or more statements) and returns the rows of the last one, as lists."""
    command = ["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
    for name, value in (variables or {}).items():
        command += ["-v", f"{name}={value}"]
    result = subprocess.run(command, input=sql, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}\n{sql}")
    return [line.split("\t") for line in result.stdout.splitlines() if line]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return None, ""


class Worker:
    """One `medianest-worker run` child and what /proc says about it."""

    def __init__(self, binary, storage, log_path, concurrency):
        self.port = free_port()
        arguments = [binary, "run", "--storage-root", storage, "--maintenance-interval", "60",
                     "--metrics-address", f"127.0.0.1:{self.port}", "--log-level", "warning", "--log-format", "text"]
        if concurrency:
            arguments += ["--concurrency", str(concurrency)]
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=self.log)

    @property
    def pid(self):
        return self.process.pid

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited with status {self.process.returncode} before it was ready")
            status, _ = http_get(f"http://127.0.0.1:{self.port}/readyz", timeout=2)
            if status == 200:
                return
            time.sleep(0.2)
        raise RuntimeError("the worker was not ready within 60 s")

    def status(self):
        fields = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        kib = lambda key: int(fields.get(key, "0 kB").split()[0])
        return {"rss_kib": kib("VmRSS"), "rss_anon_kib": kib("RssAnon"), "threads": int(fields["Threads"])}

    def fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def metrics(self):
        _, body = http_get(f"http://127.0.0.1:{self.port}/metrics")
        return body

    def stop(self, timeout=60):
        """SIGTERM, then wait; SIGKILL if it does not exit. Returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def connections():
    rows = psql("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'medianest-worker%';")
    return int(rows[0][0])


def table_sizes():
    sizes = {}
    for table in ("processing_jobs", "notifications", "audit_logs"):
        # The table and, for audit_logs, its partitions (the partitioned parent itself is empty).
        rows = psql(f"""
            WITH relations AS (SELECT relid FROM pg_partition_tree('{table}') UNION SELECT '{table}'::regclass)
            SELECT coalesce(sum(pg_table_size(relid)), 0)::int8, coalesce(sum(pg_indexes_size(relid)), 0)::int8,
                   (SELECT count(*) FROM {table})::int8
              FROM relations;""")
        table_bytes, index_bytes, rows_count = (int(value) for value in rows[0])
        sizes[table] = {"table_bytes": table_bytes, "index_bytes": index_bytes, "rows": rows_count}
    return sizes


class Enqueuer:
    """Adds one item of the mix at a time: a hard link of its source under the storage root, the
    media_items row and enqueue_media_processing, in one transaction, as the upload service does."""

    def __init__(self, storage, sources):
        self.storage = storage
        self.sources = sources
        self.count = 0
        self.expected_failures = {}
        os.makedirs(os.path.join(storage, "uploads"), exist_ok=True)
        psql(f"INSERT INTO users (id, email, password_hash) VALUES ('{OWNER}', 'soak@medianest.local', 'x') ON CONFLICT DO NOTHING;")

    def add(self):
        source, mime, expected_code = MIX[self.count % len(MIX)]
        self.count += 1
        name = f"{self.count:06d}-{source}"
        relative = f"uploads/{name}"
        os.link(os.path.join(self.sources, source), os.path.join(self.storage, relative))
        size = os.path.getsize(os.path.join(self.storage, relative))
        rows = psql("""
            BEGIN;
            INSERT INTO media_items (owner_id, filename, original_filename, mime_type, file_size, storage_path)
            VALUES (:'owner', :'name', :'name', :'mime', :'size', :'path') RETURNING id;
            SELECT count(*) FROM enqueue_media_processing((SELECT id FROM media_items WHERE storage_path = :'path'));
            COMMIT;""", {"owner": OWNER, "name": name, "mime": mime, "size": size, "path": relative})
        if expected_code:
            self.expected_failures[relative] = expected_code
        return int(rows[-1][0])


def backlog():
    """Items enqueued and not yet settled."""
    return int(psql("SELECT count(*) FROM media_items WHERE status = 'processing';")[0][0])


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def window_median(samples, end_index):
    """The median of the samples of the minute up to and including samples[end_index]."""
    start = max(0, end_index - WINDOW_SAMPLES + 1)
    return statistics.median(samples[start:end_index + 1])


def job_figures():
    latency = [float(row[0]) for row in psql("""
        SELECT extract(epoch FROM started_at - created_at) * 1000 FROM processing_jobs WHERE started_at IS NOT NULL;""")]
    durations = {}
    for job_type, count, p50, p99, maximum, mean in psql("""
        SELECT job_type, count(*),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at) * 1000),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at) * 1000),
               max(extract(epoch FROM completed_at - started_at) * 1000),
               avg(extract(epoch FROM completed_at - started_at) * 1000)
          FROM processing_jobs WHERE status = 'completed' GROUP BY job_type ORDER BY job_type;"""):
        durations[job_type] = {"completed": int(count), "p50_ms": round(float(p50), 1), "p99_ms": round(float(p99), 1),
                               "max_ms": round(float(maximum), 1), "mean_ms": round(float(mean), 1)}
    by_status = {status: int(count) for status, count in psql(
        "SELECT status::text, count(*) FROM processing_jobs GROUP BY 1 ORDER BY 1;")}
    failures = psql("""
        SELECT m.storage_path, j.job_type, coalesce(j.output_data #>> '{error,code}', ''), coalesce(j.error_message, '')
          FROM processing_jobs j JOIN media_items m ON m.id = j.media_item_id WHERE j.status = 'failed' ORDER BY 1, 2;""")
    lost = int(psql(f"SELECT count(*) FROM processing_jobs WHERE status::text NOT IN {FINAL_STATES};")[0][0])
    stuck = int(psql("SELECT count(*) FROM media_items WHERE status = 'processing';")[0][0])
    retried = int(psql("SELECT count(*) FROM processing_jobs WHERE attempts > 1;")[0][0])
    return {
        "latency_ms": {"p50": round(percentile(latency, 0.5) or 0, 1), "p99": round(percentile(latency, 0.99) or 0, 1),
                       "max": round(max(latency, default=0), 1), "jobs": len(latency)},
        "durations_ms": durations,
        "jobs_by_status": by_status,
        "failures": failures,
        "lost": lost,
        "stuck": stuck,
        "retried": retried,
    }


def metric_total(body, name, labels=""):
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and labels in line and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--sources", required=True)
    parser.add_argument("--report", required=True)
    parser.add_argument("--worker-log", required=True)
    arguments = parser.parse_args()
    minutes = float(os.environ.get("SOAK_MINUTES", "10"))
    per_minute = float(os.environ.get("SOAK_ITEMS_PER_MINUTE", "30"))
    max_backlog = int(os.environ.get("SOAK_MAX_BACKLOG", "6"))
    concurrency = os.environ.get("SOAK_CONCURRENCY") or None
    idle_seconds = float(os.environ.get("SOAK_IDLE_SECONDS", "30"))

    # The worker goes with this process, whatever ends it.
    worker = None

    def on_signal(number, _frame):
        raise SystemExit(128 + number)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        enqueuer = Enqueuer(arguments.storage, arguments.sources)
        sizes_start = table_sizes()
        worker = Worker(arguments.worker, arguments.storage, arguments.worker_log, concurrency)
        worker.wait_ready()
        time.sleep(1)
        start_status = worker.status()
        start_fds = worker.fds()
        log(f"worker {worker.pid} ready: RSS {start_status['rss_kib'] / 1024:.0f} MiB, {start_fds} descriptors, "
            f"{start_status['threads']} threads; enqueueing for {minutes:g} min at up to {per_minute:g} items/min, "
            f"backlog at most {max_backlog} items")

        # Warm-up, outside the clock: one item of each kind, drained. The first third then
        # measures a worker that has paged in its codecs and grown its arenas for every kind
        # once, not its start-up.
        warmup_started = time.monotonic()
        warmup_jobs = sum(enqueuer.add() for _ in MIX)
        while time.monotonic() - warmup_started < 300:
            if int(psql("SELECT count(*) FROM processing_jobs WHERE status IN ('pending', 'running');")[0][0]) == 0:
                break
            time.sleep(0.5)
        warmup_seconds = time.monotonic() - warmup_started
        log(f"warm-up: {len(MIX)} items ({warmup_jobs} jobs) in {warmup_seconds:.0f} s, RSS {worker.status()['rss_kib'] / 1024:.0f} MiB")

        samples = {"t_s": [], "rss_mib": [], "rss_anon_mib": [], "fds": [], "threads": [], "pg_connections": [], "backlog": []}

        def sample(now, started, pending):
            status = worker.status()
            samples["t_s"].append(round(now - started, 1))
            samples["rss_mib"].append(round(status["rss_kib"] / 1024, 1))
            samples["rss_anon_mib"].append(round(status["rss_anon_kib"] / 1024, 1))
            samples["fds"].append(worker.fds())
            samples["threads"].append(status["threads"])
            samples["pg_connections"].append(connections())
            samples["backlog"].append(pending)

        started = time.monotonic()
        run_until = started + minutes * 60
        next_sample = started
        next_enqueue = started
        throttled = 0
        jobs = warmup_jobs
        pending = 0
        while True:
            now = time.monotonic()
            if now >= run_until:
                break
            if worker.process.poll() is not None:
                raise RuntimeError(f"the worker exited with status {worker.process.returncode} during the run; see {arguments.worker_log}")
            if now >= next_enqueue:
                pending = backlog()
                if pending < max_backlog:
                    jobs += enqueuer.add()
                    next_enqueue += 60 / per_minute
                    # A late tick does not turn into a burst.
                    next_enqueue = max(next_enqueue, now - 60 / per_minute)
                else:
                    throttled += 1
                    next_enqueue = now + 0.5
            if now >= next_sample:
                sample(now, started, pending)
                next_sample += SAMPLE_SECONDS
                s = len(samples["t_s"])
                if s % 6 == 1:
                    log(f"{samples['t_s'][-1]:5.0f} s: {enqueuer.count} items, {jobs} jobs, RSS {samples['rss_mib'][-1]:.0f} MiB, "
                        f"{samples['fds'][-1]} fds, {samples['threads'][-1]} threads, backlog {pending}")
            time.sleep(max(0.0, min(next_enqueue, next_sample, run_until) - time.monotonic()))
        run_samples = len(samples["t_s"])

        log(f"enqueued {enqueuer.count} items ({jobs} jobs); draining")
        drain_started = time.monotonic()
        drain_deadline = drain_started + max(300, minutes * 30)
        while time.monotonic() < drain_deadline:
            left = int(psql("SELECT count(*) FROM processing_jobs WHERE status IN ('pending', 'running');")[0][0])
            if left == 0:
                break
            if time.monotonic() >= next_sample:
                sample(time.monotonic(), started, backlog())
                next_sample += SAMPLE_SECONDS
            time.sleep(0.5)
        drain_seconds = time.monotonic() - drain_started

        # The idle worker: how far does RSS fall once nothing runs?
        idle_started = time.monotonic()
        idle_rss = []
        while time.monotonic() - idle_started < idle_seconds:
            idle_rss.append(worker.status()["rss_kib"] / 1024)
            time.sleep(1)
        idle_status = worker.status()
        idle_fds = worker.fds()
        # Where the idle worker's memory is, mapping by mapping, for whoever reads the report.
        with open(f"/proc/{worker.pid}/smaps") as smaps, open(os.path.join(os.path.dirname(arguments.report), "idle-smaps.txt"), "w") as out:
            out.write(smaps.read())
        body = worker.metrics()
        maintenance_ok = metric_total(body, "medianest_maintenance_runs_total", 'outcome="ok"')
        exit_status = worker.stop()
        worker = None

        figures = job_figures()
        sizes_end = table_sizes()
        third = max(1, run_samples // 3)
        rss = samples["rss_mib"]
        fds = samples["fds"]
        rss_first_third = window_median(rss, third - 1)
        rss_end = window_median(rss, run_samples - 1)
        fds_first_third_max = max(fds[:third])
        fds_last_third_median = statistics.median(fds[run_samples - third:run_samples])

        unexpected = [row for row in figures["failures"] if enqueuer.expected_failures.get(row[0]) != row[2]]
        expected_failed_items = {row[0] for row in figures["failures"] if enqueuer.expected_failures.get(row[0]) == row[2]}
        missing_expected = sorted(set(enqueuer.expected_failures) - expected_failed_items)

        report = {
            "minutes": minutes,
            "items": enqueuer.count,
            "jobs": jobs,
            "items_per_minute_target": per_minute,
            "max_backlog": max_backlog,
            "throttled_ticks": throttled,
            "warmup_items": len(MIX),
            "warmup_s": round(warmup_seconds, 1),
            "drain_s": round(drain_seconds, 1),
            "sample_interval_s": SAMPLE_SECONDS,
            "t_s": samples["t_s"],
            "rss_mib": rss,
            "rss_anon_mib": samples["rss_anon_mib"],
            "fds": fds,
            "threads": samples["threads"],
            "pg_connections": samples["pg_connections"],
            "backlog": samples["backlog"],
            "rss_summary_mib": {
                "start": round(start_status["rss_kib"] / 1024, 1),
                "first_third": rss_first_third,
                "end": rss_end,
                "peak": max(rss),
                "idle": round(idle_status["rss_kib"] / 1024, 1),
                "idle_anon": round(idle_status["rss_anon_kib"] / 1024, 1),
                "idle_after_s": [round(value, 1) for value in idle_rss],
            },
            "fds_summary": {"start": start_fds, "first_third_max": fds_first_third_max,
                            "last_third_median": fds_last_third_median, "idle": idle_fds},
            "threads_summary": {"start": start_status["threads"], "max": max(samples["threads"]), "idle": idle_status["threads"]},
            "tables": {"start": sizes_start, "end": sizes_end},
            "maintenance_runs_ok": int(maintenance_ok),
            "exit_status": exit_status,
            **figures,
            "expected_failures": len(enqueuer.expected_failures),
        }

        broken = []
        if rss_end > 1.2 * rss_first_third:
            broken.append(f"RSS at the end ({rss_end:.0f} MiB) is more than 1.2x RSS at the end of the first third ({rss_first_third:.0f} MiB).")
        if fds_last_third_median > fds_first_third_max:
            broken.append(f"The descriptor count grew: the median of the last third ({fds_last_third_median:g}) is above the highest of the first third ({fds_first_third_max}).")
        if idle_fds > start_fds:
            broken.append(f"The idle worker holds {idle_fds} descriptors at the end against {start_fds} at start-up.")
        if figures["lost"] > 0:
            broken.append(f"{figures['lost']} jobs are lost: not in a final state after the drain.")
        if figures["stuck"] > 0:
            broken.append(f"{figures['stuck']} items are stuck in processing after the drain.")
        if unexpected:
            broken.append(f"{len(unexpected)} jobs failed that should not have, first: {unexpected[0]}.")
        if missing_expected:
            broken.append(f"{len(missing_expected)} broken files did not fail with their stable code, first: {missing_expected[0]}.")
        if exit_status != 0:
            broken.append(f"The worker exited with status {exit_status} on SIGTERM instead of 0.")
        if maintenance_ok < 1:
            broken.append("Maintenance never ran successfully inside the worker.")
        report["passed"] = not broken
        report["broken_rules"] = broken
        with open(arguments.report, "w") as out:
            json.dump(report, out, indent=1)
            out.write("\n")

        summary = report["rss_summary_mib"]
        print(f"soak: {minutes:g} min, {enqueuer.count} items, {jobs} jobs ({report['jobs_by_status']}), drain {drain_seconds:.0f} s")
        print(f"  RSS MiB: start {summary['start']:.0f}, first third {rss_first_third:.0f}, end {rss_end:.0f}, peak {summary['peak']:.0f}, idle {summary['idle']:.0f}")
        print(f"  descriptors: start {start_fds}, first third max {fds_first_third_max}, last third median {fds_last_third_median:g}, idle {idle_fds}")
        print(f"  threads: start {start_status['threads']}, max {max(samples['threads'])}, idle {idle_status['threads']}; "
              f"connections: {min(samples['pg_connections'])}-{max(samples['pg_connections'])}")
        print(f"  latency enqueue to start: p50 {figures['latency_ms']['p50']:.0f} ms, p99 {figures['latency_ms']['p99']:.0f} ms")
        for job_type, d in figures["durations_ms"].items():
            print(f"  {job_type}: {d['completed']} completed, p50 {d['p50_ms']:.0f} ms, p99 {d['p99_ms']:.0f} ms, max {d['max_ms']:.0f} ms")
        for table, size in sizes_end.items():
            print(f"  {table}: {size['rows']} rows, table {size['table_bytes'] / 1024:.0f} KiB, indexes {size['index_bytes'] / 1024:.0f} KiB")
        print(f"  lost {figures['lost']}, stuck {figures['stuck']}, maintenance runs ok {int(maintenance_ok)}; report: {arguments.report}")
        if broken:
            for sentence in broken:
                print(f"soak FAILED: {sentence}", file=sys.stderr)
            return 1
        print("soak passed")
        return 0
    finally:
        if worker is not None:
            worker.stop(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
