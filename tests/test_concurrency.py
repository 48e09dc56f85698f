"""Many clients at once on loopback: one download at a time, no duplicate package, no job
state lost or going backwards. Bounded: a fixed number of requests per client."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import defaultdict

from pkgfactory import make_package
from servers import Fault

DOWNLOAD = "/api/cluster/software/download"
PACKAGES = "/api/cluster/software/packages"
CLIENTS = 6
REQUESTS_PER_CLIENT = 60
ALLOWED_REFUSALS = {"10551382", "10551327"}  # already running / already stored


def test_many_clients_never_run_two_downloads_or_store_a_package_twice(
        swdepot, http_server_noauth, content_dir):
    api = swdepot.api
    names = [f"pkg{i}.tgz" for i in range(10)]
    files = {name: make_package(content_dir, name, f"9.{i}.1", size=96 * 1024)
             for i, name in enumerate(names)}
    for name in names:  # slow enough that downloads overlap with the other clients' posts
        http_server_noauth.faults[f"/{name}"] = Fault("trickle", bytes_per_second=1 << 20)
    started: list[str] = []
    problems: list[str] = []
    # uuid -> (sent, answered, state) per sighting: threads take the lock in any order
    # after their answers arrive, so only sightings whose requests did not overlap are
    # known to be in the service's order
    history: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(REQUESTS_PER_CLIENT):
            time.sleep(rng.uniform(0, 0.03))  # spread the clients over several downloads
            action = rng.random()
            if action < 0.4:
                r = api.post(DOWNLOAD, json={"url": http_server_noauth.url(rng.choice(names))})
                if r.status_code == 202:
                    with lock:
                        started.append(r.json()["job"]["uuid"])
                elif r.status_code != 400 or r.json()["error"]["code"] not in ALLOWED_REFUSALS:
                    problems.append(f"POST {r.status_code} {r.text}")
            elif action < 0.7:
                sent = time.monotonic()
                jobs = api.get("/api/cluster/jobs?fields=state,description")
                answered = time.monotonic()
                if jobs.status_code != 200:
                    problems.append(f"GET jobs {jobs.status_code}")
                    continue
                records = jobs.json()["records"]
                active = [j for j in records if j["description"] == f"POST {DOWNLOAD}"
                          and j["state"] in ("queued", "running")]
                if len(active) > 1:
                    problems.append(f"{len(active)} downloads active at once")
                with lock:
                    for job in records:
                        history[job["uuid"]].append((sent, answered, job["state"]))
            else:
                r = api.get(PACKAGES if action < 0.85 else DOWNLOAD)
                if r.status_code != 200:
                    problems.append(f"GET {r.status_code} {r.text}")

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    finished = [api.wait_job(uuid) for uuid in started]

    assert problems == []
    assert started, "no download ever started"
    for sightings in history.values():  # a finished job never goes back to running
        ends = [(answered, state) for _, answered, state in sightings
                if state in ("success", "failure")]
        if ends:
            ended_by, final = min(ends)
            later = {state for sent, _, state in sightings if sent > ended_by}
            assert later <= {final}, sorted(sightings)
    records = api.get(f"{PACKAGES}?fields=*").json()["records"]
    file_names = [r["file_name"] for r in records]
    assert len(file_names) == len(set(file_names))
    assert len({r["version"] for r in records}) == len(records)
    successes = [j for j in finished if j["state"] == "success"]
    assert len(successes) == len(records)  # every success left exactly one package
    for job in finished:
        if job["state"] == "failure":  # lost a race on the name, never anything else
            assert job["code"] == 10551327, job
    for record in records:
        expected = hashlib.sha256(files[record["file_name"]].read_bytes()).hexdigest()
        assert record["sha256"] == expected
        copies = [p for root in swdepot.settings.store_roots
                  for p in root.rglob(record["file_name"])]
        assert len(copies) == 2
        assert all(hashlib.sha256(c.read_bytes()).hexdigest() == expected for c in copies)
