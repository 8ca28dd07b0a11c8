"""A real headless Chromium driven over the DevTools protocol (no Selenium, no downloads): open a page, collect what
went wrong while it loaded (console errors, uncaught exceptions, failed or 4xx/5xx requests), list its links and
images as the browser sees them, and take screenshots. Test helper, not part of the library."""
from __future__ import annotations
import base64, itertools, json, shutil, subprocess, tempfile, time
from dataclasses import dataclass, field
from pathlib import Path

import websocket  # websocket-client, already in the lock (via jupyter)

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                  '--disable-extensions', '--no-first-run', '--disable-dev-shm-usage', '--hide-scrollbars',
                  '--remote-debugging-port=0', '--remote-allow-origins=*', '--window-size=1400,1000']

def chromium_path() -> str | None:
    "The Debian `chromium` (or another Chrome) on PATH."
    return next(filter(None, map(shutil.which, ('chromium', 'chromium-browser', 'google-chrome'))), None)

@dataclass
class PageReport:
    "What one page load showed."
    url: str
    title: str = ''
    problems: list[str] = field(default_factory=list)   # console errors, exceptions, failed requests
    links: list[dict] = field(default_factory=list)     # {'href', 'text', 'in_sidebar'}
    images: list[dict] = field(default_factory=list)    # {'src', 'loaded', 'width'}
    ids: list[str] = field(default_factory=list)        # element ids (in-page link targets)

class Browser:
    "One headless Chromium with one tab."
    def __init__(self, timeout: float = 30):
        exe = chromium_path()
        if not exe: raise RuntimeError("chromium is not installed (tests/system_deps.sh installs it: apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix='mlops-nb-chromium-')
        self.proc = subprocess.Popen([exe, *CHROMIUM_FLAGS, f'--user-data-dir={self.profile}', 'about:blank'],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, deadline = Path(self.profile)/'DevToolsActivePort', time.time() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None: raise RuntimeError(f"chromium exited with {self.proc.returncode} at start")
            if time.time() > deadline: raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        import urllib.request
        for _ in range(100):
            try: targets = json.loads(urllib.request.urlopen(f'http://127.0.0.1:{port}/json/list', timeout=5).read()); break
            except OSError: time.sleep(0.05)
        page = next(t for t in targets if t['type'] == 'page')
        self.ws = websocket.create_connection(page['webSocketDebuggerUrl'], timeout=timeout, suppress_origin=True)
        self.ids, self.events, self.timeout = itertools.count(1), [], timeout
        for domain in ('Page', 'Runtime', 'Log', 'Network'): self.call(f'{domain}.enable')

    def call(self, method: str, **params) -> dict:
        "Send one command and wait for its answer (events that arrive meanwhile are kept)."
        i = next(self.ids)
        self.ws.send(json.dumps({'id': i, 'method': method, 'params': params}))
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get('id') == i:
                if 'error' in msg: raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get('result', {})
            self.events.append(msg)
        raise TimeoutError(method)

    def _wait_event(self, name: str):
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            for k, e in enumerate(self.events):
                if e.get('method') == name: return self.events.pop(k)
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(f"no {name} within {self.timeout} s")

    def eval(self, js: str):
        res = self.call('Runtime.evaluate', expression=js, returnByValue=True, awaitPromise=True)
        if 'exceptionDetails' in res: raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res['result'].get('value')

    def visit(self, url: str, settle: float = 0.3) -> PageReport:
        "Load a page and report what the browser saw."
        self.events.clear()
        self.call('Page.navigate', url=url)
        self._wait_event('Page.loadEventFired')
        time.sleep(settle)  # late console messages, lazy images
        self.ws.settimeout(0.2)
        try:
            while True: self.events.append(json.loads(self.ws.recv()))
        except websocket.WebSocketTimeoutException: pass
        finally: self.ws.settimeout(self.timeout)
        rep = PageReport(url)
        for e in self.events:
            m, p = e.get('method'), e.get('params', {})
            if m == 'Runtime.exceptionThrown':
                d = p['exceptionDetails']; rep.problems.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
            elif m == 'Runtime.consoleAPICalled' and p.get('type') in ('error', 'assert'):
                rep.problems.append('console.' + p['type'] + ': ' + ' '.join(str(a.get('value', a.get('description', ''))) for a in p.get('args', [])))
            elif m == 'Log.entryAdded' and p['entry'].get('level') == 'error':
                rep.problems.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif m == 'Network.responseReceived' and p['response'].get('status', 200) >= 400:
                rep.problems.append(f"HTTP {p['response']['status']}: {p['response']['url']}")
            elif m == 'Network.loadingFailed' and not p.get('canceled'):
                rep.problems.append(f"request failed: {p.get('errorText')} ({p.get('type')})")
        info = self.eval("""(() => ({
            title: document.title,
            links: [...document.querySelectorAll('a[href]')].map(a => ({href: a.href, text: a.textContent.trim(), in_sidebar: !!a.closest('.sidebar')})),
            images: [...document.images].map(i => ({src: i.currentSrc.slice(0, 80), loaded: i.complete && i.naturalWidth > 0, width: i.naturalWidth})),
            ids: [...document.querySelectorAll('[id]')].map(e => e.id)}))()""")
        rep.title, rep.links, rep.images, rep.ids = info['title'], info['links'], info['images'], info['ids']
        return rep

    def screenshot(self, path: str | Path, full_page: bool = False) -> Path:
        "A PNG of the current page (the first screen, or the whole page)."
        params = {'format': 'png'}
        if full_page:
            m = self.call('Page.getLayoutMetrics')['cssContentSize']
            params.update(captureBeyondViewport=True, clip=dict(x=0, y=0, width=m['width'], height=min(m['height'], 8000), scale=1))
        data = self.call('Page.captureScreenshot', **params)['data']
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self):
        try: self.ws.close()
        except Exception: pass
        self.proc.terminate()
        try: self.proc.wait(10)
        except subprocess.TimeoutExpired: self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self): return self
    def __exit__(self, *exc): self.close()
