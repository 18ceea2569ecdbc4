"""Run axe-core (vendored, offline) on a page in headless Chromium and return its violations.

The page is copied into a scratch folder beside axe.min.js with two scripts appended: axe runs
over the whole document (WCAG 2.0, 2.1 and 2.2 A and AA rules, and axe's best practices) and
writes its result into the page, which Chromium then prints with `--dump-dom`. A page where axe
did not run raises instead of passing.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

from tests.browser import dump_dom

AXE = Path(__file__).parent / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa", "best-practice"]
# Virtual time lets axe's asynchronous run finish before the DOM is printed.
VIRTUAL_TIME = "--virtual-time-budget=30000"
_RUNNER = """
<script src="axe.min.js"></script>
<script>
axe.run(document, {runOnly: {type: "tag", values: %s}}).then(function (result) {
  var out = document.createElement("pre");
  out.id = "axe-results";
  out.textContent = JSON.stringify({
    version: axe.version,
    passes: result.passes.length,
    violations: result.violations.map(function (v) {
      return {id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help};
    })
  });
  document.body.appendChild(out);
});
</script>
"""
_RESULT = re.compile(r'<pre id="axe-results">(.*?)</pre>', re.S)


def run_axe(page: Path, scratch: Path) -> dict:
    """axe's result for `page`: {version, passes, violations: [{id, impact, nodes, help}]}."""
    scratch.mkdir(parents=True, exist_ok=True)
    shutil.copy(AXE, scratch / AXE.name)
    text = Path(page).read_text(encoding="utf-8")
    runner = _RUNNER % json.dumps(TAGS)
    checked = scratch / "page.html"
    checked.write_text(text.replace("</body>", runner + "</body>", 1), encoding="utf-8")
    dom = dump_dom(checked, scratch / "profile", VIRTUAL_TIME)
    found = _RESULT.search(dom)
    if found is None:
        raise AssertionError("axe-core did not run on the page (no result in the DOM)")
    return json.loads(html.unescape(found.group(1)))
