"""`aivo site ...` and `aivo federation ...` as a user runs them (real subprocesses). Commands
that do not depend on each other's effects run side by side (each `aivo` process spends
seconds importing, so the checks are grouped in three waves instead of fourteen serial runs)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from aivo.brain.checkpoint import save_checkpoint


def _together(run_cli, *calls):
    """Run independent `aivo` commands concurrently; each call is (args, env or None)."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: run_cli(*call[0], env=call[1]), calls))


def test_site_init_enroll_register_brain_status_and_refusals(run_cli, tmp_path, small_world):
    site_home = tmp_path / "north"
    site_env = {"AIVO_HOME": str(site_home)}
    save_checkpoint(small_world.brain, tmp_path / "brain")
    # Wave 1: the site's identity (its own home) and the coordinator's brain (the coordinator's home).
    made, registered = _together(run_cli, (("site", "init", "north", "--json"), site_env),
                                 (("federation", "register-brain", str(tmp_path / "brain"), "--json"), None))
    assert made.returncode == 0, made.stderr
    info = json.loads(made.stdout)
    assert info["public_key_text"].startswith("ecdsa-sha2-nistp384")
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["version"] == "aivo-main-v1"

    # Wave 2: the site refuses a second init and reports itself; the coordinator enrolls it and
    # refuses a key that is not one.
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    again, status, enrolled, refused = _together(
        run_cli, (("site", "init", "north"), site_env), (("site", "status", "--json"), site_env),
        (("federation", "enroll", "north", "--public-key", info["public_key"], "--json"), None),
        (("federation", "enroll", "south", "--public-key", str(bad)), None))
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr and "Traceback" not in again.stderr
    assert status.returncode == 0 and json.loads(status.stdout)["name"] == "north"
    assert enrolled.returncode == 0, enrolled.stderr
    assert json.loads(enrolled.stdout)["status"] == "enrolled"
    assert refused.returncode == 3 and "OpenSSH public key" in refused.stderr

    # Wave 3: the federation's status (south was not enrolled) and refusals that change nothing.
    (federation, no_certs, robust, insecure_auth, no_files, not_a_site, dropout) = _together(
        run_cli,
        (("federation", "status", "--json"), None),
        (("federation", "run", "--rounds", "1"), None),
        (("federation", "run", "--strategy", "median", "--insecure"), None),
        (("federation", "serve", "--insecure"), None),
        (("federation", "serve"), None),
        (("site", "serve", "--insecure"), None),
        (("federation", "simulate", "--max-dropout", "0.5"), None))
    federation = json.loads(federation.stdout)
    assert federation["version"] == "aivo-main-v1" and [s["name"] for s in federation["sites"]] == ["north"]
    assert federation["interactions"] == 0

    assert no_certs.returncode == 2 and "CA certificate" in no_certs.stderr
    assert robust.returncode == 2 and "secure aggregation gives the coordinator only their total" in robust.stderr
    assert insecure_auth.returncode == 2 and "needs TLS" in insecure_auth.stderr
    assert no_files.returncode == 2 and "aivo federation certificates" in no_files.stderr
    assert not_a_site.returncode == 2 and "aivo site init" in not_a_site.stderr
    assert dropout.returncode == 2 and "unmask" in dropout.stderr
