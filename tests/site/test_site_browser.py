"""The built lesson site in a real browser: headless Chromium driven over the DevTools protocol.

Build the site first (``python -m sphinx -b html lessons lessons/_build/html``); the test serves
``lessons/_build/html`` on 127.0.0.1, opens every page and asserts that math is typeset by the
site's own MathJax (an ``mjx-container`` in every math element, no MathJax error, no raw ``$$``
left in the text), that the console has no error, that no request leaves 127.0.0.1 (Chromium's
DNS maps every other host to nothing, and every request the page makes is checked), and that
every internal link resolves (file and ``#anchor``). It saves a screenshot of one lesson page to
``tests/site/artifacts/``. Skipped when there is no built site, no Chromium or no
``websocket-client`` (``pip install -e '.[docs]'``; Debian: ``apt-get install chromium``).
"""
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from base64 import b64decode
from pathlib import Path

import pytest

try:
    import websocket  # websocket-client, in the docs extra
except ImportError:
    websocket = None

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "lessons" / "_build" / "html"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SCREENSHOT_PAGE = "01_scalar_autograd.html"  # a lesson with derivations, code and outputs

pytestmark = pytest.mark.browser


def _chromium():
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _unavailable(reason):
    # CI sets SITE_BROWSER_REQUIRED=1 after building the site: there a missing piece is a failure
    if os.environ.get("SITE_BROWSER_REQUIRED") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


if websocket is None:
    _unavailable("websocket-client is not installed (pip install -e '.[docs]')")
CHROMIUM = _chromium()
if CHROMIUM is None:
    _unavailable("no Chromium (Debian: apt-get install chromium)")
if not (SITE / "index.html").is_file():
    _unavailable("no built site: python -m sphinx -b html lessons lessons/_build/html")

# The flags that work on these machines: no sandbox as root, no GPU, and none of Chromium's own
# background traffic (updates, sync, QUIC probes) that a closed network would answer with errors.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    # any host but 127.0.0.1 resolves to nothing: a page that reaches out fails loudly
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
    "--window-size=1280,900",
]
PAGE_TIMEOUT = 60.0  # seconds for one page to load and typeset (MathJax on a long API page)


# --- the site on 127.0.0.1 ----------------------------------------------------------------------
SERVED = []  # (path, status) of every request the server answered (list.append is thread-safe)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_request(self, code="-", size="-"):
        SERVED.append((self.path, int(code) if str(code).isdigit() else code))

    def log_message(self, format, *args):  # keep pytest's output clean
        pass


@contextlib.contextmanager
def _serve(directory):
    """``directory`` over HTTP on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def site_url():
    with _serve(SITE) as url:
        yield url


# --- a tiny DevTools-protocol client ------------------------------------------------------------
class CDP:
    """One page target over its websocket: ``call`` waits for the reply, events are collected."""

    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=PAGE_TIMEOUT, suppress_origin=True)
        self.next_id = 0
        self.events = []

    def call(self, method, timeout=PAGE_TIMEOUT, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(method)

    def wait_event(self, method, timeout=PAGE_TIMEOUT):
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while time.monotonic() < deadline:
            for ev in self.events[seen:]:
                if ev["method"] == method:
                    return ev
            seen = len(self.events)
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(method)

    def evaluate(self, expression, timeout=PAGE_TIMEOUT):
        res = self.call("Runtime.evaluate", timeout=timeout, expression=expression,
                        awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression[:60]}...: {res['exceptionDetails']}")
        return res["result"].get("value")

    def close(self):
        self.ws.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh user-data-dir every run
    proc = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not start (exit {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        cdp = CDP(pages[0]["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Network", "Log"):
            cdp.call(f"{domain}.enable")
        cdp.call("Network.setCacheDisabled", cacheDisabled=True)
        yield cdp
        cdp.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- what one page shows ------------------------------------------------------------------------
# Waits for MathJax's first typeset (when the page loads it), then reports what the tests assert.
PAGE_REPORT_JS = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const math = [...document.querySelectorAll('.math')];
  const body = document.body.cloneNode(true);
  body.querySelectorAll('pre, code, script, style, .highlight, textarea').forEach(e => e.remove());
  return {
    mathjax: !!(window.MathJax && MathJax.version),
    mathjax_version: window.MathJax && MathJax.version || null,
    math_elements: math.length,
    containers: document.querySelectorAll('mjx-container').length,
    untypeset: math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
    tex_errors: [...document.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error') || e.textContent.slice(0, 80)),
    raw_display_dollars: body.textContent.includes('$$'),
    // a solution's code (a region's marker line in a code block) shown without a click
    solutions_shown: [...document.querySelectorAll('pre')].filter(
      e => /^\s*# BEGIN SOLUTION/m.test(e.textContent) && e.checkVisibility()).map(e => e.textContent.slice(0, 80)),
    solutions_folded: [...document.querySelectorAll('details pre')].filter(
      e => /^\s*# BEGIN SOLUTION/m.test(e.textContent)).length,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    title: document.title,
  };
})()
"""


def _html_pages(site):
    """Every page of the site: the HTML files, less the theme's and MathJax's own assets."""
    return sorted(
        p.relative_to(site).as_posix()
        for p in site.rglob("*.html")
        if not p.relative_to(site).parts[0].startswith("_")
    )


@functools.cache
def _ids(html_file):
    """The anchors a page defines (``id=`` and ``name=``)."""
    text = html_file.read_text(encoding="utf-8", errors="replace")
    return frozenset(re.findall(r"""\b(?:id|name)=["']([^"']+)["']""", text))


def _is_local(url, base):
    return url.startswith(base) or url.split(":", 1)[0] in ("data", "blob", "about")


def _console_errors(events):
    errors = []
    for ev in events:
        p = ev["params"]
        if ev["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif ev["method"] == "Runtime.exceptionThrown":
            errors.append(p["exceptionDetails"].get("exception", {}).get("description")
                          or p["exceptionDetails"].get("text"))
        elif ev["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}")
    return errors


def _visit(browser, url):
    browser.events.clear()
    browser.call("Page.navigate", url=url)
    browser.wait_event("Page.loadEventFired")
    report = browser.evaluate(PAGE_REPORT_JS)
    time.sleep(0.05)  # let late console messages and requests arrive
    browser.call("Runtime.evaluate", expression="0")  # drains the event queue up to now
    return report, list(browser.events)


def _site_problems(site, site_url, browser, pages):
    """Open each page; return (problems found, pages that have math, lesson page -> solutions folded
    behind a "show" element)."""
    problems, math_pages, links, folded = [], [], set(), {}
    for page in pages:
        url = site_url + page
        report, events = _visit(browser, url)
        where = f"{page}:"
        # math: typeset by the site's MathJax, every element, no TeX error, no raw $$ left
        if report["math_elements"]:
            math_pages.append(page)
            if not report["mathjax"]:
                problems.append(f"{where} {report['math_elements']} math elements but MathJax did not load")
            if report["untypeset"]:
                problems.append(f"{where} math not typeset: {report['untypeset'][:3]}")
            if report["tex_errors"]:
                problems.append(f"{where} MathJax errors: {report['tex_errors'][:3]}")
        if report["raw_display_dollars"]:
            problems.append(f"{where} raw $$ left in the page text")
        if report["solutions_shown"]:
            problems.append(f"{where} a solution shown without a click: {report['solutions_shown'][:2]}")
        if re.match(r"\d\d_", page):
            folded[page] = report["solutions_folded"]
        # the console
        for err in _console_errors(events):
            problems.append(f"{where} console error: {err}")
        # every request stays on 127.0.0.1 and succeeds
        for ev in events:
            if ev["method"] == "Network.requestWillBeSent":
                req = ev["params"]["request"]["url"]
                if not _is_local(req, site_url):
                    problems.append(f"{where} request leaves 127.0.0.1: {req}")
            elif ev["method"] == "Network.loadingFailed" and not ev["params"].get("canceled"):
                problems.append(f"{where} request failed: {ev['params'].get('errorText')}")
            elif ev["method"] == "Network.responseReceived" and ev["params"]["response"]["status"] >= 400:
                problems.append(f"{where} HTTP {ev['params']['response']['status']}: {ev['params']['response']['url']}")
        links.update((page, href) for href in report["links"])
    # every internal link resolves: the file exists and so does its #anchor
    for page, href in sorted(links):
        if not href.startswith(site_url):
            continue  # external links are allowed in the text; the browser never fetched them
        parsed = urllib.parse.urlsplit(href)
        rel = urllib.parse.unquote(parsed.path)[1:] or "index.html"
        target = site / rel
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"{page}: broken link {href}")
        elif parsed.fragment and target.suffix == ".html" and urllib.parse.unquote(parsed.fragment) not in _ids(target):
            problems.append(f"{page}: link to a missing anchor {href}")
    return problems, math_pages, folded


def test_every_page(site_url, browser):
    pages = _html_pages(SITE)
    assert "index.html" in pages and any(re.match(r"\d\d_", p) for p in pages), pages
    problems, math_pages, folded = _site_problems(SITE, site_url, browser, pages)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:60])
    # the site has math where it should: the lessons and the ops' derivations in the API pages
    assert "api/minitensor.html" in math_pages and SCREENSHOT_PAGE in math_pages, math_pages
    assert SERVED, "the server saw no request"
    # the check above is not vacuous: lessons with solutions on the page have them folded, not removed
    assert folded.get("06_masked_attention.html", 0) >= 2 and folded.get("10_relative_positions.html", 0) >= 2, folded


BAD_PAGE = """<!DOCTYPE html><html><head><title>bad</title>
<link rel="icon" href="data:,">
<script src="https://cdn.example.org/mathjax.js"></script></head>
<body><p>raw $$x^2$$ here</p><span class="math">\\(y\\)</span>
<pre># BEGIN SOLUTION lesson 01: a solution in the open</pre>
<a href="nowhere.html">a missing page</a> <a href="bad.html#no-such-anchor">a missing anchor</a>
<script>console.error("boom")</script></body></html>
"""


def test_the_checks_catch_a_bad_page(tmp_path, browser):
    """The checker itself: one page with every fault it looks for, each one reported."""
    (tmp_path / "bad.html").write_text(BAD_PAGE)
    with _serve(tmp_path) as url:
        problems, _, _ = _site_problems(tmp_path, url, browser, ["bad.html"])
    text = "\n".join(problems)
    for expected in ("MathJax did not load", "math not typeset", "raw $$ left", "console error: boom",
                     "request leaves 127.0.0.1: https://cdn.example.org/mathjax.js",
                     "broken link", "missing anchor", "a solution shown without a click"):
        assert expected in text, f"{expected!r} not reported in:\n{text}"


def test_screenshot_of_a_lesson(site_url, browser):
    report, _ = _visit(browser, site_url + SCREENSHOT_PAGE)
    assert report["containers"] > 0, "the lesson shows no typeset math"
    # show a derivation: the first typeset formula, mid-screen
    browser.evaluate("document.querySelector('mjx-container').scrollIntoView({block: 'center'})")
    time.sleep(0.2)
    shot = browser.call("Page.captureScreenshot", format="png")
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / SCREENSHOT_PAGE.replace(".html", ".png")
    out.write_bytes(b64decode(shot["data"]))
    assert out.stat().st_size > 10_000  # a rendered page, not a blank one
