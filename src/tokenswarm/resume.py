"""Picking up an interrupted sweep: ``tokenswarm sweep --resume DIR``.

A sweep started by the ``tokenswarm`` command leaves ``resume.json`` in its run folder: the run's settings in
their wire form (:func:`tokenswarm.settings.to_wire`) *without* their headers (the API key is never written
down: only the headers' names are), the ``--host`` as given (or that the embedded simulated engine served it,
with its ``--sim-args``) and the local ``--workers``.

``--resume DIR`` of a sweep that did not complete (Ctrl-C, a crash; run.json's ``"complete": false``):

1. The levels run to their end are those of run.json's timeline but the last, which the stop cut short. The
   continuation runs the plan from that level on, with the same settings and seed (the seed run.json
   records). Its prompts come from the seed's next stream (the dataset's seed + the part's number - 1, as
   ``--repeat`` does): a continuation that resent the first part's prompts would be served from the engine's
   prefix cache, flattering its TTFT. Headers come from this command line again (``--api-key`` or
   ``$TOKENSWARM_API_KEY``, ``--header``); a header the sweep sent and this one lacks is one error line.
2. The first resume moves the run folder's raw files into ``DIR/part-1/``; each continuation writes its own
   into ``DIR/part-<n>/``.
3. :func:`join` writes ``DIR/requests.csv`` and ``DIR/run.json`` (and the engine's and the client's samples)
   from the parts: every part's levels run to their end, plus the last part's last level as it is. The cut
   level's records stay in their part's requests.csv. The report of ``DIR`` is then one sweep's report;
   run.json's ``resumed`` lists the parts.

No Locust here: the command line calls it, the tests reach it directly.
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import dataclass, replace
from typing import Any

from tokenswarm import runfolder
from tokenswarm.settings import Settings, SettingsError, from_wire, parse_header, to_wire

RESUME_JSON = "resume.json"
RESUME_VERSION = 1
PART_PREFIX = "part-"
#: a part's raw files that :func:`join` puts together (time-stamped rows: each part's own stay in the part)
JOINED_CSVS = (runfolder.REQUESTS_CSV, "server_metrics.csv", "gpu_metrics.csv", "client_health.csv")
#: files a part leaves that are its own alone (moved into part-1 on the first resume)
RAW_FILES = ("requests.csv", "run.json", "server_metrics.csv", "gpu_metrics.csv", "client_health.csv",
             "simengine.log")


@dataclass(frozen=True)
class Resumption:
    """What ``--resume`` runs: ``settings`` (the remaining levels, into ``part_dir``), the target as the sweep
    had it (``host``: the ``--host`` given, "" with the embedded engine), and which levels it continues from."""

    run_dir: str
    part_dir: str
    part: int
    settings: Settings
    host: str
    embedded_sim: bool
    sim_args: str
    workers: int
    done_levels: list[float]
    remaining_levels: list[float]


def write_info(run_dir: str, settings: Settings, host: str, embedded_sim: bool, sim_args: str, workers: int
               ) -> None:
    """``run_dir/resume.json``: what ``--resume`` needs to continue this sweep; no header values."""
    wire = to_wire(replace(settings, headers={}))
    runfolder.write_json(os.path.join(run_dir, RESUME_JSON), {
        "version": RESUME_VERSION, "settings": wire, "header_names": sorted(settings.headers),
        "host": host, "embedded_sim": embedded_sim, "sim_args": sim_args, "workers": workers,
    })


def _read(path: str, what: str) -> dict[str, Any]:
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"bad --resume: {path} is missing ({what})") from None
    except (OSError, ValueError) as e:
        raise SettingsError(f"bad --resume: cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"bad --resume: {path} is not a JSON object")
    return data


def parts(run_dir: str) -> list[str]:
    """The part folders of a resumed sweep, in order (``part-1``, ``part-2``, ...); [] before its first resume."""
    found = []
    for name in os.listdir(run_dir):
        tail = name[len(PART_PREFIX):]
        if name.startswith(PART_PREFIX) and tail.isdigit() and os.path.isdir(os.path.join(run_dir, name)):
            found.append((int(tail), os.path.join(run_dir, name)))
    return [path for _, path in sorted(found)]


def prepare(run_dir: str, api_key: str, header_lines: list[str]) -> Resumption:
    """The continuation of the sweep in ``run_dir``: SettingsError (one line naming the folder or the field)
    when there is nothing to resume or it cannot be. ``api_key`` and ``header_lines`` (``Name: value``) give
    the headers again. Moves nothing yet (:func:`start_part` does)."""
    if not os.path.isdir(run_dir):
        raise SettingsError(f"bad --resume {run_dir!r}: no such folder")
    info = _read(os.path.join(run_dir, RESUME_JSON), "a sweep started by `tokenswarm sweep` writes it")
    run = _read(os.path.join(run_dir, runfolder.RUN_JSON), "the sweep never started")
    if info.get("version") != RESUME_VERSION:
        raise SettingsError(f"bad --resume {run_dir!r}: resume.json is of layout {info.get('version')!r}; this "
                            f"tokenswarm reads layout {RESUME_VERSION}")
    if run.get("complete"):
        raise SettingsError(f"bad --resume {run_dir!r}: that sweep completed; nothing to resume")
    settings = from_wire(info.get("settings"))
    plan = settings.plan
    if plan is None or plan.capacity or settings.trace:
        raise SettingsError(f"bad --resume {run_dir!r}: only a sweep (--levels or --rates) can be resumed")
    timeline = [seg for seg in run.get("timeline") or [] if isinstance(seg, dict)]
    done = [float(seg["level"]) for seg in timeline[:-1]]  # the last one was cut by the stop
    start = len(done)
    if start >= len(plan.levels) or done != [float(x) for x in plan.levels[:start]]:
        raise SettingsError(f"bad --resume {run_dir!r}: run.json's timeline ({', '.join(f'{x:g}' for x in done)}) "
                            f"does not follow the plan ({', '.join(f'{x:g}' for x in plan.levels)})")
    headers = _headers(api_key, header_lines)
    missing = [n for n in info.get("header_names") or [] if n.lower() not in {h.lower() for h in headers}]
    if missing:
        how = "--api-key or $TOKENSWARM_API_KEY" if [n.lower() for n in missing] == ["authorization"] else \
            "--header 'Name: value' (--api-key for Authorization)"
        raise SettingsError(f"bad --resume {run_dir!r}: the sweep sent the header(s) {', '.join(missing)}, whose "
                            f"values are never written down: give them again ({how})")
    n = len(parts(run_dir)) + 1 if parts(run_dir) else 2
    rest = replace(plan, levels=plan.levels[start:],
                   level_durations_s=plan.level_durations_s[start:] if plan.level_durations_s else None,
                   level_requests_each=plan.level_requests_each[start:] if plan.level_requests_each else None)
    part_dir = os.path.join(run_dir, f"{PART_PREFIX}{n}")
    base = settings.seed
    if settings.seed_drawn:  # resume.json was written before the seed was drawn: run.json holds the one it ran with
        recorded = ((run.get("settings") or {}).get("dataset") or {}).get("seed")
        if not isinstance(recorded, int) or isinstance(recorded, bool) or recorded <= 0:
            raise SettingsError(f"bad --resume {run_dir!r}: run.json records no seed (settings.dataset.seed "
                                f"{recorded!r}), so the continuation's prompts cannot follow the first part's")
        base = recorded
    seed = base + n - 1
    settings = replace(settings, plan=rest, headers=headers, out=part_dir, seed=base, seed_drawn=False,
                       warmups_s=settings.warmups_s[start:] if settings.warmups_s else None,
                       dataset=replace(settings.dataset, seed=seed), preflight=True, model_from_server=False)
    return Resumption(run_dir, part_dir, n, settings, str(info.get("host") or ""), bool(info.get("embedded_sim")),
                      str(info.get("sim_args") or ""), int(info.get("workers") or 0), done,
                      [float(x) for x in rest.levels])


def _headers(api_key: str, header_lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw in header_lines:
        name, value = parse_header(raw)
        headers[name] = value
    if api_key and not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def start_part(r: Resumption) -> None:
    """Before the continuation runs: on the first resume, the run folder's raw files move into ``part-1/``."""
    if parts(r.run_dir):
        return
    first = os.path.join(r.run_dir, f"{PART_PREFIX}1")
    os.makedirs(first)
    for name in os.listdir(r.run_dir):
        path = os.path.join(r.run_dir, name)
        if name in RAW_FILES or (name.startswith(runfolder.LOCUST_PREFIX + "_") and name.endswith(".csv")) or (
                name.startswith("worker-") and name.endswith(".log")):
            shutil.move(path, os.path.join(first, name))


def join(run_dir: str) -> None:
    """``run_dir``'s requests.csv, run.json and samples from its parts (module docstring, step 3)."""
    folders = parts(run_dir)
    runs = [_read(os.path.join(p, runfolder.RUN_JSON), "a part's run.json") if os.path.exists(
        os.path.join(p, runfolder.RUN_JSON)) else None for p in folders]
    kept = [(p, r) for p, r in zip(folders, runs) if r is not None]
    if not kept:
        return
    timeline: list[dict[str, Any]] = []
    keep_levels: list[set[str]] = []
    for i, (_, r) in enumerate(kept):
        segs = [s for s in r.get("timeline") or [] if isinstance(s, dict)]
        if i < len(kept) - 1 and not r.get("complete"):
            segs = segs[:-1]  # cut short by the stop; the next part ran it again
        timeline += segs
        keep_levels.append({f"{float(s['level']):g}" for s in segs})
    counts: dict[str, int] = {}
    records = 0
    for name in JOINED_CSVS:
        out_path = os.path.join(run_dir, name)
        header: list[str] | None = None
        tmp = out_path + ".tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            for (p, _), levels in zip(kept, keep_levels):
                src = os.path.join(p, name)
                if not os.path.exists(src):
                    continue
                with open(src, newline="", encoding="utf-8") as fh:
                    reader = csv.reader(fh)
                    head = next(reader, None)
                    if head is None:
                        continue
                    if header is None:
                        header = head
                        writer.writerow(head)
                    idx = head.index("level") if name == runfolder.REQUESTS_CSV and "level" in head else None
                    status = head.index("status") if idx is not None and "status" in head else None
                    for row in reader:
                        if idx is not None:
                            if _level_key(row[idx]) not in levels:
                                continue
                            records += 1
                            if status is not None:
                                counts[row[status]] = counts.get(row[status], 0) + 1
                        writer.writerow(row)
        if header is None:
            os.unlink(tmp)
        else:
            os.replace(tmp, out_path)
    first, last = kept[0][1], kept[-1][1]
    joined = {**last, "run_id": first.get("run_id"), "started": first.get("started"), "settings":
              first.get("settings"), "timeline": timeline, "records": records, "status_counts": counts,
              "resumed": [{"part": os.path.basename(p), "run_id": r.get("run_id"), "started": r.get("started"),
                           "ended": r.get("ended"), "complete": r.get("complete"),
                           "levels": [s.get("level") for s in r.get("timeline") or [] if isinstance(s, dict)],
                           "seed": (r.get("settings") or {}).get("dataset", {}).get("seed")}
                          for p, r in kept]}
    runfolder.write_json(os.path.join(run_dir, runfolder.RUN_JSON), joined)


def _level_key(text: str) -> str:
    try:
        return f"{float(text):g}"
    except ValueError:
        return text
