"""The data-stall benchmark's report: the "Data stall" section of
docs/benchmarks.md (between <!-- stall:begin --> and <!-- stall:end -->,
nothing else in the file is touched), its PNG plots, and the table printed at
the end of a run. Reasons for missed targets and the closing note come from
notes.md next to this file: analysis written by people after profiling,
keyed by target id, kept apart so that a rerun does not lose it.

  /usr/bin/python3 tests/bench/stall/report.py [RESULTS.json]   # redo the section from a JSON
"""
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MARK_BEGIN = "<!-- stall:begin -->"
MARK_END = "<!-- stall:end -->"

ORDER = ["local copy", "granary warm", "granary warm, NAS mount", "granary hinted",
         "granary cold", "rclone vfs full",
         "rclone vfs full, first read", "s3fs use_cache", "direct (rclone, no cache)"]


def rows(cfg):
    recs = {r["contender"]: r for r in cfg["contenders"]}
    return [recs[n] for n in ORDER if n in recs]


def fmt_pct(x):
    return "—" if x is None else "%.1f%%" % (100 * x)


def mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.mean(xs) if xs else None


def epoch_cell(e):
    if e is None:
        return "—"
    t = e["wall_s"] / e["fraction"] if e["cut"] and e["fraction"] else e["wall_s"]
    txt = "%.1f s, stall %.1f s, **%s**" % (t, e["stall_s"] / (e["fraction"] if e["cut"]
                                                                else 1), fmt_pct(e["gpu_util"]))
    if e["cut"]:
        txt += " (%d%% read, time extrapolated)" % round(100 * e["fraction"])
    return txt


def per_file(rec, nfiles):
    req = rec.get("requests") or {}
    n = sum(v for k, v in req.items() if k != "errors")
    return n, (n / nfiles if nfiles else 0)


def load_notes(path=os.path.join(HERE, "notes.md")):
    """{id: text} from '## id' headings."""
    notes, cur, buf = {}, None, []
    try:
        with open(path) as f:
            for ln in f:
                if ln.startswith("## "):
                    if cur:
                        notes[cur] = "".join(buf).strip()
                    cur, buf = ln[3:].strip(), []
                elif cur:
                    buf.append(ln)
    except OSError:
        return {}
    if cur:
        notes[cur] = "".join(buf).strip()
    return notes


# ---- plots ----

def plots(report, outdir):
    """PNG files written (paths); none when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.stderr.write("report: matplotlib missing (apt-get install python3-matplotlib): "
                         "no plots\n")
        return []
    os.makedirs(outdir, exist_ok=True)
    out = []
    for cfg in report["configs"]:
        rs = [r for r in rows(cfg) if r.get("epochs")]
        names = [r["contender"] for r in rs]
        cold = [100 * r["epochs"][0]["gpu_util"] for r in rs]
        warm = [100 * r["epochs"][-1]["gpu_util"] for r in rs]
        fig, ax = plt.subplots(figsize=(9, 4.2))
        x = range(len(rs))
        ax.bar([i - 0.2 for i in x], cold, 0.4,
               label="first epoch (cold; after `granary warm` for the warm ones)")
        ax.bar([i + 0.2 for i in x], warm, 0.4, label="last epoch")
        ax.axhline(90, color="grey", ls="--", lw=1)
        ax.axhline(40, color="grey", ls=":", lw=1)
        ax.set_xticks(list(x))
        ax.set_xticklabels([n.replace(" (", "\n(").replace(", ", ",\n") for n in names],
                           fontsize=8)
        ax.set_ylabel("GPU utilisation (%)")
        ax.set_ylim(0, 120)
        ax.set_yticks(range(0, 101, 20))
        ax.set_title("Trainer simulator, %d files, %s per request: GPU utilisation" % (
            cfg["files"], "%g ms" % cfg["delay_ms"]) + " (%s)" % cfg["kind"])
        ax.legend(fontsize=8, loc="upper center", ncol=2, frameon=False)
        fig.tight_layout()
        p = os.path.join(outdir, util_png(cfg))
        fig.savefig(p, dpi=90)
        plt.close(fig)
        out.append(p)

    # warm read rates, log scale
    fig, ax = plt.subplots(figsize=(9, 4.2))
    cfgs = report["configs"]
    names = [n for n in ORDER if any(by(c, n) and by(c, n).get("warm_rate") for c in cfgs)]
    width = 0.8 / max(1, len(cfgs))
    for j, cfg in enumerate(cfgs):
        vals = [(by(cfg, n) or {}).get("warm_rate", {}).get("files_per_s", 0) for n in names]
        ax.bar([i + (j - (len(cfgs) - 1) / 2) * width for i in range(len(names))], vals, width,
               label=cfg["name"])
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace(", ", ",\n") for n in names], fontsize=8)
    ax.set_ylabel("files/s (log scale)")
    ax.set_title("Warm small-file read rate (open, fstat, read, close; %d threads)" %
                 report["settings"]["rate_threads"])
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = os.path.join(outdir, "stall-read-rate.png")
    fig.savefig(p, dpi=90)
    plt.close(fig)
    out.append(p)

    # warming the whole dataset
    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels, g, r, c = [], [], [], []
    for cfg in cfgs:
        gw, rf = by(cfg, "granary warm"), by(cfg, "rclone vfs full, first read")
        if gw and rf:
            labels.append("%s\n%d files" % (cfg["name"], cfg["files"]))
            g.append(gw["warm"]["seconds"])
            r.append(rf["first_read"]["seconds"])
            ce = cfg.get("ceiling")
            c.append(ce["seconds"] if ce else 0)
    n = report["settings"]["warm_jobs"]
    ax.bar([i - 0.27 for i in range(len(labels))], g, 0.27, label="granary warm --jobs %d" % n)
    ax.bar([i for i in range(len(labels))], r, 0.27,
           label="rclone vfs full: first read, %d threads" % n)
    ax.bar([i + 0.27 for i in range(len(labels))], c, 0.27, color="grey",
           label="curl --parallel %d: one GET per object (backend ceiling)" % n)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("seconds")
    ax.set_title("Fetching the whole dataset into the cache")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = os.path.join(outdir, "stall-warm.png")
    fig.savefig(p, dpi=90)
    plt.close(fig)
    out.append(p)
    return out


def util_png(cfg):
    return "stall-util-%s.png" % cfg["name"].replace("+", "-")


def by(cfg, name):
    for r in cfg["contenders"]:
        if r["contender"] == name:
            return r
    return None


# ---- Markdown ----

def markdown(report, doc, pngs):
    s = report["settings"]
    m = report["machine"]
    v = report["versions"]
    ds = report["dataset"]
    notes = load_notes()
    docdir = os.path.dirname(os.path.abspath(doc)) if doc else None
    L = [MARK_BEGIN, "## Data stall", ""]
    res = report.get("results_path", "")
    link = os.path.relpath(res, docdir) if res and docdir else res
    L.append("Generated by `%s` (`%s`) on %s in %.0f s. Raw figures: [%s](%s). The "
             "harness is `tests/bench/stall/`; `make bench-quick` runs it on a tiny dataset "
             "(in CI, as the ctest `bench/quick`) to keep it working." % (
                 report["command"], report["argv"], report["date"], report["wall_s"],
                 report.get("results_name", "results"), link))
    L.append("")
    L.append("**Read these as ratios within one run.** The machine (%s, %d CPUs, %d MiB, "
             "Linux %s, %s) was shared with other test runs: load average %s at the start, "
             "%s at the end. Every server, proxy, FUSE daemon, granaryd and trainer ran on "
             "those %d CPUs." % (m["cpu"], m["nproc"], m["mem_mib"], m["kernel"], m["os"],
                                 "/".join("%.1f" % x for x in m["loadavg_start"]),
                                 "/".join("%.1f" % x for x in m.get("loadavg_end", [])),
                                 m["nproc"]))
    L.append("")
    L.append("### What runs")
    L.append("")
    L.append("- **Dataset**: %d files in ImageNet-like class directories (100 files each), "
             "log-normal sizes: mean %.0f KiB, median %.0f KiB, 99th percentile %.0f KiB, "
             "%.2f GiB in all. The s3 configuration uses its first %d files (s3rver, "
             "a Node.js program, serves a few hundred requests a second here)." % (
                 ds["files"], ds["mean_kib"], ds["median_kib"], ds["p99_kib"],
                 ds["bytes"] / 2**30, s["s3_files"]))
    L.append("- **Backends**: nginx (`/ds/` with the JSON autoindex granary lists, `/dsh/` "
             "with the HTML one rclone parses) and s3rver; each behind `tests/lib/servers.py`'s "
             "delaying proxy in a process of its own, restarted for each contender so that "
             "request counts are per contender. No bandwidth limit: with ~110 KiB objects the "
             "per-request delay and the request rate the proxy sustains are what bind.")
    L.append("- **Trainer simulator** (`trainer_sim.py`): %d forked loaders, batches of %d, "
             "%d batches queued per loader (a DataLoader's prefetch_factor 2), %g ms of "
             "compute per batch (a sleep standing for the GPU step); shuffled epochs, the same "
             "order for every contender. GPU utilisation = compute / wall; stall = time "
             "the trainer waited for a batch. %d epochs per contender; `direct` epochs are "
             "cut after %g s (every one of its epochs reads the backend) and their time is "
             "extrapolated from the share read. The torch column is the same loop through "
             "`torch.utils.data.DataLoader` (%d workers, `torchvision.io.read_file`)." % (
                 s["loaders"], s["batch"], 2, s["compute_ms"], s["epochs"], s["direct_cut"],
                 s["loaders"]))
    L.append("- **Warm read rate**: `granary-readbench` (open, fstat, read to the end, close) "
             "with %d threads over %d cached files, %d round(s), median." % (
                 s["rate_threads"], s["rate_files"], s["rate_rounds"]))
    L.append("- **Warming**: `granary warm MOUNT --jobs %d` against rclone's first full read "
             "of its mount (`granary-readbench` with %d threads on a fresh `--vfs-cache-mode "
             "full` mount)." % (s["warm_jobs"], s["warm_jobs"]))
    L.append("")
    L.append("| component | version |")
    L.append("|---|---|")
    for k in ("granary", "rclone", "s3fs", "fuse3", "nginx", "s3rver", "node", "python",
              "torch", "torchvision"):
        L.append("| %s | %s |" % (k, v.get(k, "?")))
    L.append("")
    L.append("Each contender, started fresh with nothing cached:")
    L.append("")
    L.append("| contender | settings |")
    L.append("|---|---|")
    seen = set()
    for cfg in report["configs"]:
        for r in rows(cfg):
            key = (r["contender"], cfg["kind"])
            if key in seen or not r.get("settings"):
                continue
            seen.add(key)
            L.append("| %s (%s) | `%s` |" % (r["contender"], cfg["kind"],
                                            r["settings"].replace("|", "\\|")))
    L.append("")

    # targets
    L.append("### Targets")
    L.append("")
    L.append("| target | configuration | measured | |")
    L.append("|---|---|---|---|")
    missed = []
    for cfg in report["configs"]:
        for t in cfg.get("targets", []):
            L.append("| %s | %s | %s | %s |" % (t["target"], t["config"], t["measured"],
                                               "met" if t["met"] else "**missed**"))
            if not t["met"]:
                missed.append(t)
    L.append("")

    # epochs
    for cfg in report["configs"]:
        L.append("### GPU utilisation: %s, %d files (%.2f GiB), %g ms added per request" % (
            cfg["kind"], cfg["files"], cfg["bytes"] / 2**30, cfg["delay_ms"]))
        L.append("")
        L.append("The first epoch is cold for every contender but the two `granary warm` ones, "
                 "which ran `granary warm` before it (its time is given with their name).")
        L.append("")
        L.append("| contender | first epoch | last epoch | torch DataLoader | "
                 "backend requests (per file) | CPU s: contender / proxy / origin |")
        L.append("|---|---|---|---|---|---|")
        for r in rows(cfg):
            ep = r.get("epochs") or []
            te = r.get("torch_epochs") or []
            n, pf = per_file(r, cfg["files"])
            extra = ""
            if r.get("warm"):
                extra = " (after `granary warm`: %.1f s)" % r["warm"]["seconds"]
            if r.get("first_read"):
                first = "first full read: %.1f s (%.0f files/s)" % (
                    r["first_read"]["seconds"], r["first_read"]["files_per_s"])
                L.append("| %s | %s | — | — | %d (%.2f) | %s |" % (
                    r["contender"], first, n, pf, cpu_cell(r)))
                continue
            L.append("| %s%s | %s | %s | %s | %d (%.2f) | %s |" % (
                r["contender"], extra, epoch_cell(ep[0] if ep else None),
                epoch_cell(ep[-1] if len(ep) > 1 else None),
                fmt_pct(mean([e["gpu_util"] for e in te])) if te else "—", n, pf,
                cpu_cell(r)))
        L.append("")
        png = util_png(cfg)
        if any(p.endswith(png) for p in pngs) and docdir:
            rel = os.path.relpath(os.path.join(os.path.dirname(pngs[0]), png), docdir)
            L.append("![GPU utilisation, %s](%s)" % (cfg["name"], rel))
            L.append("")

    # read rates
    L.append("### Warm small-file read rate")
    L.append("")
    L.append("Each round of a contender follows one on the local copy; \"vs local copy\" is "
             "the median of those paired ratios.")
    L.append("")
    L.append("| configuration | contender | files/s (rounds) | MB/s | local copy alongside, "
             "files/s | vs local copy | vs rclone vfs |")
    L.append("|---|---|---|---|---|---|---|")
    for cfg in report["configs"]:
        rcl = (by(cfg, "rclone vfs full") or {}).get("warm_rate", {}).get("files_per_s")
        for r in rows(cfg):
            w = r.get("warm_rate")
            if not w:
                continue
            L.append("| %s | %s | %.0f (%s) | %.0f | %s | %.2fx | %s |" % (
                cfg["name"], r["contender"], w["files_per_s"],
                ", ".join("%.0f" % x for x in w["rounds"]), w["mb_per_s"],
                ", ".join("%.0f" % x for x in w["local_rounds"]), w["vs_local"],
                "%.1fx" % (w["files_per_s"] / rcl) if rcl else "—"))
    L.append("")
    L.append("### Fetching the whole dataset")
    L.append("")
    L.append("The backend ceiling is what the proxy and origin serve to `curl --parallel` "
             "with %d GETs in flight in the same run." % report["settings"]["warm_jobs"])
    L.append("")
    L.append("| configuration | files | backend ceiling | `granary warm` | rclone's first full "
             "read | ratio |")
    L.append("|---|---|---|---|---|---|")
    for cfg in report["configs"]:
        gw, rf = by(cfg, "granary warm"), by(cfg, "rclone vfs full, first read")
        ce = cfg.get("ceiling") or {}
        if gw and rf:
            gw_req = gw.get("warm", {}).get("requests") or per_file(gw, 1)[0]
            rf_req = per_file(rf, 1)[0]

            def load(nreq, secs):
                rate = nreq / secs
                return "%d requests, %.0f/s%s" % (
                    nreq, rate, ", %.0f%% of the ceiling" % (100 * rate / ce["gets_per_s"])
                    if ce else "")
            L.append("| %s | %d | %s | %.1f s (%.0f files/s; %s) | %.1f s (%.0f files/s; "
                     "%s) | %.2fx |" % (
                         cfg["name"], cfg["files"],
                         "%.0f GET/s" % ce["gets_per_s"] if ce else "—",
                         gw["warm"]["seconds"], gw["warm"]["files_per_s"],
                         load(gw_req, gw["warm"]["seconds"]),
                         rf["first_read"]["seconds"], rf["first_read"]["files_per_s"],
                         load(rf_req, rf["first_read"]["seconds"]),
                         rf["first_read"]["seconds"] / gw["warm"]["seconds"]))
    L.append("")
    for name in ("stall-read-rate.png", "stall-warm.png"):
        if any(p.endswith(name) for p in pngs) and docdir:
            rel = os.path.relpath(os.path.join(os.path.dirname(pngs[0]), name), docdir)
            L.append("![%s](%s)" % (name[6:-4].replace("-", " "), rel))
            L.append("")

    sc = report.get("scale")
    if sc:
        L.append("### Scale: a catalog of many objects")
        L.append("")
        L.append("Made synthetically (`scale.py`): one real catalog row as a template, then N "
                 "rows and N empty cache files written directly (cache directory on %s), and "
                 "the daemon restarted over them. Memory per object = (VmRSS with N objects - "
                 "VmRSS with none, %d KiB) / N. Opens: a random sample through the shim, 8 "
                 "threads; the first round also runs the first-read checksum of each restored "
                 "object." % (sc["cache_fs"], sc["empty_rss_kib"]))
        L.append("")
        L.append("| objects | writing catalog + files | exec to serving (1st, 2nd start) | "
                 "restore in the daemon's log | VmRSS | per object | catalog.db | opens/s "
                 "(1st, 2nd round) |")
        L.append("|---|---|---|---|---|---|---|---|")
        for z in sc["sizes"]:
            L.append("| %d | %.1f s + %.1f s | %s | %s | %.0f MiB | %.0f B | %.0f MiB | "
                     "%.0f, %.0f (%d files) |" % (
                         z["objects"], z["create_catalog_s"], z["create_files_s"],
                         ", ".join("%.2f s" % x["to_serving_s"] for x in z["starts"]),
                         ", ".join("%.0f ms" % (x["restore_ms"] or 0) for x in z["starts"]),
                         z["rss_kib"] / 1024, z["rss_bytes_per_object"],
                         z["catalog_bytes"] / 2**20, z["opens_per_s_first"],
                         z["opens_per_s_second"], z["open_sample"]))
        L.append("")

    L.append("### Missed targets and why")
    L.append("")
    if not missed:
        L.append("Every target was met in this run.")
        L.append("")
    ids = []
    for t in missed:
        if t["id"] not in ids:
            ids.append(t["id"])
    for tid in ids:
        ts = [t for t in missed if t["id"] == tid]
        L.append("- **%s**: missed in %s." % (ts[0]["target"], "; ".join(
            "%s (measured %s)" % (t["config"], t["measured"]) for t in ts)))
        why = notes.get(tid)
        L.append("")
        if why:
            L.append("  " + why.replace("\n", "\n  "))
        else:
            L.append("  No profile of this miss is recorded in tests/bench/stall/notes.md yet.")
        L.append("")
    if notes.get("observations"):
        L.append("### Observations")
        L.append("")
        L.append(notes["observations"])
        L.append("")
    if notes.get("closing"):
        L.append("### Closing note")
        L.append("")
        L.append(notes["closing"])
        L.append("")
    L.append(MARK_END)
    return "\n".join(L) + "\n"


def cpu_cell(r):
    c = r.get("cpu_s") or {}
    return "%.1f / %.1f / %.1f" % (c.get("contender", 0), c.get("proxy", 0), c.get("origin", 0))


def replace_section(doc, section):
    """Put section between the markers of doc, or append it; nothing else changes."""
    try:
        with open(doc) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmarks\n\nMeasured on the machine named in each section; run them " \
               "with `make bench`.\n\n"
    b, e = text.find(MARK_BEGIN), text.find(MARK_END)
    if b >= 0 and e > b:
        text = text[:b] + section.rstrip("\n") + text[e + len(MARK_END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    os.makedirs(os.path.dirname(os.path.abspath(doc)), exist_ok=True)
    tmp = doc + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, doc)


def summary_table(report):
    L = []
    for cfg in report["configs"]:
        L.append("%s, %d files:" % (cfg["name"], cfg["files"]))
        L.append("| contender | epoch 1 GPU | last epoch GPU | warm files/s | requests |")
        L.append("|---|---|---|---|---|")
        for r in rows(cfg):
            ep = r.get("epochs") or []
            L.append("| %s | %s | %s | %s | %d |" % (
                r["contender"], fmt_pct(ep[0]["gpu_util"]) if ep else "—",
                fmt_pct(ep[-1]["gpu_util"]) if len(ep) > 1 else "—",
                "%.0f" % r["warm_rate"]["files_per_s"] if r.get("warm_rate") else "—",
                per_file(r, 1)[0]))
        for t in cfg.get("targets", []):
            L.append("  %s: %s: %s" % ("met" if t["met"] else "MISSED", t["target"],
                                       t["measured"]))
        L.append("")
    sc = report.get("scale")
    if sc:
        for z in sc["sizes"]:
            L.append("scale %d objects: serving in %s s, %.0f B/object, %.0f opens/s" % (
                z["objects"], "/".join("%.2f" % x["to_serving_s"] for x in z["starts"]),
                z["rss_bytes_per_object"], z["opens_per_s_second"]))
    return "\n".join(L)


if __name__ == "__main__":
    import json
    src = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(src, "tests", "bench", "results",
                                                              "stall.json")
    with open(path) as f:
        rep = json.load(f)
    doc = os.path.join(src, "docs", "benchmarks.md")
    pngs = plots(rep, os.path.join(src, "docs", "bench-plots"))
    replace_section(doc, markdown(rep, doc, pngs))
    print(summary_table(rep))
