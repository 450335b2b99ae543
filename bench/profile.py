#!/usr/bin/env python3
"""`make profile`: where put and get spend their time, on this machine.

1. A local put and get of a file (1 GiB by default, `CAS_PROFILE_MIB`), each
   under `perf record`, the samples sorted into kinds of work (hashing, the
   chunk cipher, the kernel's copies, file metadata...).
2. The CPU-seconds of every process of a network put and get on a loopback
   cluster (4 node processes, the putting client, the getting client),
   against those of the local put and get: what the network adds, whatever
   the machine's load (CPU time, not wall time).
3. Another network put and get on that cluster under a system-wide
   `perf record -a`: every process's samples (and the idle ones) sorted into
   the same kinds, to show what bounds the network rows on this machine.

The operations run as the bench's hidden child subcommand, so they are the
real `Node::put_file` / `get_file` of the release build. Needs `perf`
(Debian: linux-perf) for part 1; part 2 needs nothing but Linux.

Usage: bench/profile.py PATH/TO/cas-bench
(`CAS_BENCH_KEEP_FETCHED=0`: the getter does not keep the blobs it fetches.)
"""

import collections
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile

# Kinds of work, by symbol; the first pattern that matches a symbol wins.
KINDS = [
    ("SHA-256", r"sha2::|sha256"),
    ("AES-GCM (ring's: of chunks and of the transport)", r"ring_core|aes_gcm_(enc|dec)|gcm_|aead"),
    ("kernel: copy into the page cache (write)", r"copy_folio_from_iter|generic_perform_write"),
    ("kernel: copy out of the page cache or a socket (read)", r"_copy_to_iter|copy_user"),
    ("user-space memcpy / memset", r"__memset|__memmove|memcpy"),
    ("page faults, page zeroing", r"clear_page|exc_page_fault|do_anonymous|handle_mm_fault"),
    ("file create / link / ext4 metadata", r"ext4|d_lookup|recently_deleted|find_get_block|__brelse|mark_buffer_dirty|inode"),
    ("scheduling, wake-ups, locks", r"finish_task_switch|spin|futex|try_to_wake|schedule|parking_lot|mutex|condvar"),
    ("idle (system-wide profiles only)", r"safe_halt|default_idle|cpu_idle|poll_idle|intel_idle"),
]
TICK = os.sysconf("SC_CLK_TCK")


def measure(bench, args, perf_data=None, system_wide=False):
    """Runs one child operation; returns its fields and its CPU-seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = [bench, "__measure"] + args
    if perf_data:
        cmd = ["perf", "record", "-q", "-F", "999", "-g", "-o", perf_data] + (["-a"] if system_wide else []) + cmd
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    fields = dict(w.split("=", 1) for w in out.stdout.split() if "=" in w)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return fields, cpu


def kinds(perf_data):
    """Share of the samples of each kind of work."""
    report = subprocess.run(
        ["perf", "report", "-i", perf_data, "--no-children", "--sort", "sym", "-g", "none", "--percent-limit", "0"],
        capture_output=True, text=True, check=True,
    ).stdout
    shares = collections.Counter()
    for line in report.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+\[[.k]\]\s+(.*)", line)
        if not m:
            continue
        kind = next((k for k, pattern in KINDS if re.search(pattern, m.group(2))), "other")
        shares[kind] += float(m.group(1))
    return shares


def process_cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def sync():
    subprocess.run(["sync"], check=True)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    bench = os.path.abspath(sys.argv[1])
    mib = int(os.environ.get("CAS_PROFILE_MIB", "1024"))
    have_perf = shutil.which("perf") is not None and subprocess.run(
        ["perf", "record", "-q", "-o", "/dev/null", "true"], capture_output=True).returncode == 0
    work = tempfile.mkdtemp(prefix="cas-profile-", dir=os.environ.get("CAS_BENCH_DIR"))
    try:
        source = os.path.join(work, "input.bin")
        with open(source, "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))
        print(f"# Where put and get spend their time ({mib} MiB, 1 MiB chunks, fsync off)\n")
        # Part 1: local put and get, profiled.
        sync()
        put, put_cpu = measure(bench, ["put", f"{work}/local", source, "no-fsync"],
                               f"{work}/put.data" if have_perf else None)
        sync()
        get, get_cpu = measure(bench, ["get", f"{work}/local", put["key"], f"{work}/out.bin", "no-fsync"],
                               f"{work}/get.data" if have_perf else None)
        os.remove(f"{work}/out.bin")
        shutil.rmtree(f"{work}/local")
        if have_perf:
            shares = {"put": kinds(f"{work}/put.data"), "get": kinds(f"{work}/get.data")}
            print("## Local put and get: share of CPU samples (perf record)\n")
            print("| kind of work | put | get |\n|---|---:|---:|")
            for kind in [k for k, _ in KINDS] + ["other"]:
                print(f"| {kind} | {shares['put'][kind]:.1f}% | {shares['get'][kind]:.1f}% |")
            print()
        else:
            print("(perf is not installed or not allowed: no sample profile; Debian: apt-get install linux-perf)\n")
        # Part 2: CPU-seconds of every process, network against local.
        servers = []

        def start(i, boot=None):
            p = subprocess.Popen([bench, "__measure", "serve", f"{work}/n{i}"] + ([boot] if boot else []),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            servers.append(p)
            return p.stdout.readline().strip().split("=", 1)[1]

        boot = start(0)
        for i in range(1, 4):
            start(i, boot)
        sync()
        s0 = [process_cpu(p.pid) for p in servers]
        nput, nput_cpu = measure(bench, ["put", f"{work}/owner", source, "no-fsync", boot, "4"])
        put_nodes = [process_cpu(p.pid) - before for p, before in zip(servers, s0)]
        sync()
        s1 = [process_cpu(p.pid) for p in servers]
        nget, nget_cpu = measure(bench, ["get", f"{work}/getter", nput["key"], f"{work}/nout.bin", "no-fsync", boot, "4"])
        s2 = [process_cpu(p.pid) for p in servers]
        if have_perf:
            # Part 3: the same again, every process of the machine sampled
            # (not counted in the CPU-seconds above: perf's own work would be).
            # A new data dir has a secret of its own: new blobs, all written again.
            sync()
            measure(bench, ["put", f"{work}/owner2", source, "no-fsync", boot, "4"], f"{work}/nput.data", True)
            sync()
            measure(bench, ["get", f"{work}/getter2", nput["key"], f"{work}/nout2.bin", "no-fsync", boot, "4"],
                    f"{work}/nget.data", True)
            wide = {"put": kinds(f"{work}/nput.data"), "get": kinds(f"{work}/nget.data")}
        for p in servers:
            p.stdin.close()
        for p in servers:
            p.wait()
        keeps = (" (does not keep what it fetches)" if os.environ.get("CAS_BENCH_KEEP_FETCHED") == "0"
                 else " (keeps what it fetches)")
        rows = [
            ("local put", float(put["seconds"]), put_cpu, None),
            ("local get", float(get["seconds"]), get_cpu, None),
            ("network put, 3 replicas", float(nput["seconds"]), nput_cpu, put_nodes),
            ("network get, from non-owners" + keeps, float(nget["seconds"]), nget_cpu,
             [b - a for a, b in zip(s1, s2)]),
        ]
        print("## CPU-seconds of every process (user + system)\n")
        print("| operation | wall s | client CPU-s | node processes CPU-s | total CPU-s | total vs local |")
        print("|---|---:|---:|---|---:|---:|")
        for name, wall, client, nodes in rows:
            total = client + sum(nodes or [])
            local = put_cpu if "put" in name else get_cpu
            node_cells = " ".join(f"{n:.2f}" for n in nodes) if nodes else "-"
            print(f"| {name} | {wall:.2f} | {client:.2f} | {node_cells} | {total:.2f} | {total / local:.2f} |")
        cores = os.cpu_count() or 1
        print(f"\nOn {cores} cores, an operation that needs T CPU-seconds takes at least T/{cores} s: "
              "the last column bounds network throughput against local, whatever the code does.")
        if have_perf:
            print("\n## Network put and get: share of the samples of the whole machine (perf record -a)\n")
            print("| kind of work | network put | network get |\n|---|---:|---:|")
            for kind in [k for k, _ in KINDS] + ["other"]:
                print(f"| {kind} | {wide['put'][kind]:.1f}% | {wide['get'][kind]:.1f}% |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
