"""`aivo site ...` and `aivo federation ...` as a user runs them (real subprocesses)."""

from __future__ import annotations

import json

from aivo.brain.checkpoint import save_checkpoint


def test_site_init_enroll_register_brain_status_and_refusals(run_cli, tmp_path, small_world):
    site_home = tmp_path / "north"
    made = run_cli("site", "init", "north", "--json", env={"AIVO_HOME": str(site_home)})
    assert made.returncode == 0, made.stderr
    info = json.loads(made.stdout)
    assert info["public_key_text"].startswith("ecdsa-sha2-nistp384")
    again = run_cli("site", "init", "north", env={"AIVO_HOME": str(site_home)})
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr and "Traceback" not in again.stderr
    status = run_cli("site", "status", "--json", env={"AIVO_HOME": str(site_home)})
    assert status.returncode == 0 and json.loads(status.stdout)["name"] == "north"

    save_checkpoint(small_world.brain, tmp_path / "brain")
    registered = run_cli("federation", "register-brain", str(tmp_path / "brain"), "--json")
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["version"] == "aivo-main-v1"
    enrolled = run_cli("federation", "enroll", "north", "--public-key", info["public_key"], "--json")
    assert enrolled.returncode == 0, enrolled.stderr
    assert json.loads(enrolled.stdout)["status"] == "enrolled"
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    refused = run_cli("federation", "enroll", "south", "--public-key", str(bad))
    assert refused.returncode == 3 and "OpenSSH public key" in refused.stderr
    federation = json.loads(run_cli("federation", "status", "--json").stdout)
    assert federation["version"] == "aivo-main-v1" and [s["name"] for s in federation["sites"]] == ["north"]
    assert federation["interactions"] == 0

    no_certs = run_cli("federation", "run", "--rounds", "1")
    assert no_certs.returncode == 2 and "CA certificate" in no_certs.stderr
    robust = run_cli("federation", "run", "--strategy", "median", "--insecure")
    assert robust.returncode == 2 and "secure aggregation gives the coordinator only their total" in robust.stderr
    insecure_auth = run_cli("federation", "serve", "--insecure")
    assert insecure_auth.returncode == 2 and "needs TLS" in insecure_auth.stderr
    no_files = run_cli("federation", "serve")
    assert no_files.returncode == 2 and "aivo federation certificates" in no_files.stderr
    not_a_site = run_cli("site", "serve", "--insecure")
    assert not_a_site.returncode == 2 and "aivo site init" in not_a_site.stderr
    dropout = run_cli("federation", "simulate", "--max-dropout", "0.5")
    assert dropout.returncode == 2 and "unmask" in dropout.stderr
