#!/usr/bin/env python3
"""Counts test cases in meson's test logs and prints "N passed, N failed".

usage: test_summary.py BUILD_DIR [BUILD_DIR...]

Each gtest case is one test case (from meson-logs/testlog.junit.xml, where
meson expands gtest results). A meson test that failed (crash, timeout,
non-zero exit) without a failing case of its own counts as one more failure;
a test without cases (a script) counts as one case; CRSYNC_EXTRA_FAILED adds
failures found outside meson. Exits 1 when anything failed or nothing ran.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET

passed = failed = 0
for build in sys.argv[1:]:
    logs = os.path.join(build, "meson-logs")
    try:
        runs = [json.loads(l) for l in open(os.path.join(logs, "testlog.json"), encoding="utf-8")
                if l.strip()]
        suites = ET.parse(os.path.join(logs, "testlog.junit.xml")).getroot()
    except (OSError, ET.ParseError, ValueError) as e:
        print(f"test_summary: no usable test log in {build}: {e}", file=sys.stderr)
        failed += 1
        continue
    for run in runs:
        prefix = f".{run['name']}."
        cases_pass = cases_fail = 0
        for suite in suites.iter("testsuite"):
            if prefix not in suite.get("name", ""):
                continue
            for case in suite.iter("testcase"):
                if case.find("failure") is not None or case.find("error") is not None:
                    cases_fail += 1
                elif case.find("skipped") is None and case.get("status", "run") == "run":
                    cases_pass += 1
        ok = run.get("result") in ("OK", "EXPECTEDFAIL", "SKIP")
        if cases_pass + cases_fail == 0:
            cases_pass, cases_fail = (1, 0) if ok else (0, 1)
        elif not ok and cases_fail == 0:
            cases_fail = 1
        passed += cases_pass
        failed += cases_fail
# Checks that are not meson tests (the timed fuzzing runs of .ci/run) add
# their failures here.
failed += int(os.environ.get("CRSYNC_EXTRA_FAILED", "0") or 0)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or passed == 0 else 0)
