"""Boot-time decisions taken before the application is imported, so that they survive a broken one.

This module is never replaced over the air. It chooses the code an app update staged (`ota.json` in
the data directory), counts the boots a new version gets to prove itself and rolls it back when it
uses them up, and counts boots that fail early, for safe mode. Every state file is written to a
temporary name and renamed, so a power cut leaves the old state or the new one, never a torn one.

ota.json: {"active": slot or null (the factory code), "trial": slot or null, "tries": n,
           "cid": command id, "version": new version, "outcome": {"cid", "result", "detail"} or null}
"""

import json
import os
import sys

OTA_FILE = "ota.json"
BOOTS_FILE = "boots.json"
OTA_DIR = "ota"
SLOTS = ("a", "b")
# Boots a trial version gets to pass its self-test; a crash loop ends after this many.
TRIAL_BOOTS = 2


def read_json(path):
    """The JSON in `path`, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(path, value):
    """Replace `path` with `value` as JSON, atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.rename(tmp, path)


def raw_config(path):
    """The config file's JSON object, else its last good copy's, else {} (the app reports the problem)."""
    for candidate in (path, path + ".good"):
        raw = read_json(candidate)
        if isinstance(raw, dict):
            return raw
    return {}


def data_dir(raw):
    """The data directory a config names, or the platform's default."""
    given = raw.get("data_dir")
    if isinstance(given, str) and given:
        return given
    if sys.platform == "esp32":
        return "/data"
    return "data/" + str(raw.get("device_id"))


def slot_dir(ddir, slot):
    """Folder of an app slot."""
    return ddir + "/" + OTA_DIR + "/" + slot


def ota_state(ddir):
    """The OTA state, with every key present."""
    st = read_json(ddir + "/" + OTA_FILE)
    if not isinstance(st, dict):
        st = {}
    out = {"active": None, "trial": None, "tries": 0, "cid": None, "version": None, "outcome": None}
    for key in out:
        if key in st:
            out[key] = st[key]
    if out["active"] not in SLOTS:
        out["active"] = None
    if out["trial"] not in SLOTS:
        out["trial"] = None
    return out


def save_ota(ddir, st):
    """Write the OTA state."""
    write_json(ddir + "/" + OTA_FILE, st)


def select_code(ddir):
    """Put the code this boot should run first on sys.path; return the OTA state (trial set if on trial)."""
    st = ota_state(ddir)
    if st["trial"] is not None:
        st["tries"] += 1
        if st["tries"] > TRIAL_BOOTS:
            st["outcome"] = {"cid": st["cid"], "result": "error",
                             "detail": "rolled back: version %s did not start" % st["version"]}
            st["trial"] = None
            st["tries"] = 0
        save_ota(ddir, st)
    slot = st["trial"] or st["active"]
    if slot is not None:
        sys.path.insert(0, slot_dir(ddir, slot))
    return st


def finish_trial(ddir, ok, detail):
    """Commit (ok) or roll back the version on trial, and leave the outcome for the command's ack."""
    st = ota_state(ddir)
    if st["trial"] is None:
        return
    st["outcome"] = {"cid": st["cid"], "result": "ok" if ok else "error", "detail": detail}
    if ok:
        st["active"] = st["trial"]
    st["trial"] = None
    st["tries"] = 0
    save_ota(ddir, st)


def count_boot(ddir):
    """Count one more boot that has not yet proved itself; the count of such boots in a row."""
    path = ddir + "/" + BOOTS_FILE
    st = read_json(path)
    n = (st.get("failed", 0) if isinstance(st, dict) else 0) + 1
    try:
        write_json(path, {"failed": n})
    except OSError:
        pass
    return n


def boot_ok(ddir):
    """This boot ran long enough: the count of failed boots starts again."""
    write_json(ddir + "/" + BOOTS_FILE, {"failed": 0})
