"""The audit report as JUnit XML for CI systems: a testsuite per level, a testcase per check.

A failing check is a ``<failure>``; a warning is ``<skipped>`` (visible, but it does not fail the build);
every testcase carries its evidence and remediation in ``<system-out>``.
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET


def to_junit(report: dict[str, Any]) -> str:
    """The XML document (UTF-8, with its declaration) for a report from ``ctx.audit.report.judge``."""
    counts = report["counts"]
    root = ET.Element("testsuites", name="ctx audit", tests=str(len(report["checks"])),
                      failures=str(counts["fail"]), skipped=str(counts["warn"]), errors="0")
    for level in report["levels"]:
        checks = [c for c in report["checks"] if c["level"] == level["level"]]
        suite = ET.SubElement(root, "testsuite", name=f"L{level['level']} {level['name']}",
                              tests=str(len(checks)), failures=str(level["counts"]["fail"]),
                              skipped=str(level["counts"]["warn"]), errors="0", timestamp=report["at"][:19])
        for check in checks:
            case = ET.SubElement(suite, "testcase", name=check["title"], classname=f"ctx.audit.L{check['level']}."
                                 f"{check['id']}", time="0")
            if check["status"] == "fail":
                failure = ET.SubElement(case, "failure", message=check["evidence"], type="fail")
                failure.text = f"{check['evidence']}\nremediation: {check['remediation']}"
            elif check["status"] == "warn":
                ET.SubElement(case, "skipped", message=f"warn: {check['evidence']}")
            out = ET.SubElement(case, "system-out")
            out.text = check["evidence"] + (f"\nremediation: {check['remediation']}" if check["remediation"] else "")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
