"""The documentation site: built by the real command from the test pipeline's runs, then opened page by page in a real
headless Chromium (tests/browser.py): no console error, no failed request, every sidebar and in-page link resolves,
every image loads; screenshots are kept in test-artifacts/site/."""
import os, re, stat, threading, urllib.error, urllib.parse, urllib.request

import pytest

from conftest import cli
from browser import Browser
from mlops_nb.core.config import workspace_root
from mlops_nb.site.docs import site_server
from mlops_nb.site.pages import site_config, sidebar_pages

ARTIFACTS = workspace_root()/'test-artifacts'/'site'
PHASE_PAGES = ['scoping.html', 'data.html', 'modeling.html', 'deployment.html', 'monitoring.html']


@pytest.fixture(scope='module')
def site(monitored, tmp_path_factory):
    "`mlops_nb docs` on the store of the test runs (all five phases ran): the site, its work folder and the command's output."
    runs, env, mon = monitored
    assert mon.returncode == 0, mon.stderr[-3000:]
    tmp = tmp_path_factory.mktemp('site')
    out = cli('docs', '--out', str(tmp/'_docs'), '--work', str(tmp/'work'), '--no-run', '--no-progress', env=env, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return tmp/'_docs', tmp/'work', env, out


@pytest.fixture(scope='module')
def served(site):
    "The built site on a loopback HTTP server."
    srv = site_server(site[0])
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}/'
    srv.shutdown(); srv.server_close()


def test_build_says_what_it_did(site):
    docs, work, env, out = site
    assert 'renderer nbconvert (Quarto is not on PATH)' in out.stdout, out.stdout
    # each phase page comes from the newest completed run of that phase in the store, and the build names those runs
    from mlops_nb.site.docs import executed_phases
    from mlops_nb.core.store import Store
    shown = executed_phases(Store(f"sqlite:///{env['MLOPS_NB_RUNS']}/mlmd.sqlite"))
    newest = sorted({f"run {r}" for _, r, _ in shown.values()})
    assert {'run full', 'run monitor'} <= set(newest) and f"phase pages from {', '.join(newest)};" in out.stdout, (newest, out.stdout)
    assert 'changed since the run shown' not in out.stdout, out.stdout   # the runs used today's notebooks
    cfg = site_config(work/'_proc')
    # every sidebar entry is a page, a piece in its part's folder as Quarto would put it (core/store.html), the lessons at the top
    assert {p.href for p in sidebar_pages(cfg)} <= {f.relative_to(docs).as_posix() for f in docs.rglob('*.html')}
    assert {f'{part}/' for part in ('core', 'data', 'modeling', 'serving', 'monitoring', 'site')} <= {p.href.split('/')[0] + '/' for p in sidebar_pages(cfg)}
    # the phase pages carry the run's real outputs: every plot the executed notebook holds is an image on the page
    # (a run that deployed nothing new has none to show), the library pages their API entries
    import json
    figures = {nb: sum('image/png' in o.get('data', {}) for c in json.loads(path.read_text())['cells'] for o in c.get('outputs', []))
               for nb, (path, _, _) in shown.items()}
    assert figures['01_scoping.ipynb'] and figures['02_data.ipynb'] and figures['05_monitoring.ipynb'], figures
    for page in PHASE_PAGES:
        html = (docs/page).read_text()
        n = figures[next(nb for nb in figures if nb.endswith(f"_{page.removesuffix('.html')}.ipynb"))]
        assert html.count('src="data:image/png;base64,') >= n, (page, n)
        assert 'Parameters of run ' in html, page
    store = (docs/'core'/'store.html').read_text()
    assert '<h3 id="store">' in store and '<h3 id="connection_config">' in store and '#|' not in store
    home = re.sub(r'<[^>]+>', '', (docs/'index.html').read_text())
    assert 'make run' in home and 'make test' in home
    # README and home page come from the same notebook: the commands stay at the top
    readme = (workspace_root()/'README.md').read_text()
    assert readme.index('make run') < readme.index('## ')


def _internal(url: str, base: str) -> bool:
    return url.startswith(base)


def test_every_page_in_a_real_browser(served):
    base = served
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Browser() as b:
        home = b.visit(base + 'index.html')
        pages = [l['href'] for l in home.links if l['in_sidebar']]
        assert len(pages) >= 30 and base + 'monitoring.html' in pages, pages
        b.screenshot(ARTIFACTS/'home.png')
        seen, links = {}, []
        for url in pages:
            rep = b.visit(url)
            assert rep.problems == [], f"{url}: {rep.problems}"
            assert all(i['loaded'] for i in rep.images), f"{url}: an image did not load: {[i for i in rep.images if not i['loaded']]}"
            seen[url.split('#')[0]] = set(rep.ids)
            links += [(url, l['href']) for l in rep.links if _internal(l['href'], base)]
            if url.endswith('monitoring.html'):
                assert len(rep.images) >= 3, rep.images
                b.screenshot(ARTIFACTS/'monitoring.png')
                b.screenshot(ARTIFACTS/'monitoring-full.png', full_page=True)
        # every internal link: the page exists (200 from the server) and the #fragment is an element on it
        broken = []
        for src, href in sorted(set(links)):
            page, _, frag = href.partition('#')
            if page not in seen:
                try: urllib.request.urlopen(page, timeout=10).close(); seen[page] = None
                except urllib.error.HTTPError as e: broken.append(f"{src} → {href}: HTTP {e.code}"); continue
            if frag and seen[page] is not None and urllib.parse.unquote(frag) not in seen[page]:
                broken.append(f"{src} → {href}: no element #{frag}")
        assert not broken, '\n'.join(broken[:20])
        # the search box finds a page by its content
        b.visit(base + 'index.html')
        hits = b.eval("""(() => { const s = document.getElementById('search'); s.value = 'canary';
                          s.dispatchEvent(new Event('input')); return [...document.querySelectorAll('#search-results a')].map(a => a.href); })()""")
        assert base + 'deployment.html' in hits, hits
    assert (ARTIFACTS/'home.png').stat().st_size > 10_000 and (ARTIFACTS/'monitoring.png').stat().st_size > 10_000


def test_quarto_is_used_when_on_path(site, tmp_path):
    """Quarto cannot be installed here: a stand-in `quarto` on PATH checks only our side of the contract: that the
    build picks it, runs `quarto render` in the processed folder, and moves its output into place."""
    docs, work, env, _ = site
    fake = tmp_path/'bin'/'quarto'
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$PWD $*" > "$PWD/../quarto-called"\nmkdir -p _docs && echo "<html>by quarto</html>" > _docs/index.html\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**env, 'PATH': f"{fake.parent}{os.pathsep}{env.get('PATH', os.environ['PATH'])}"}
    out = cli('docs', '--out', str(tmp_path/'q'), '--work', str(work), '--no-run', '--no-progress', env=env, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert 'renderer quarto (found at' in out.stdout and (tmp_path/'q'/'index.html').read_text().strip() == '<html>by quarto</html>'
    assert (work/'quarto-called').read_text().split() == [str(work/'_proc'), 'render', '--no-cache']
    assert '; 0 notebooks executed now' in out.stdout, out.stdout  # the executed notebooks were reused
    bad = cli('docs', '--renderer', 'quarto', '--work', str(work), '--no-run', env={k: v for k, v in env.items() if k != 'PATH'} | {'PATH': '/usr/bin:/bin'})
    assert bad.returncode == 2 and 'quarto is not on PATH' in bad.stderr, bad.stderr
