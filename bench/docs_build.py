"""How long `make docs` takes: a full build (every non-phase notebook executed, nbdev's processing, rendering) and a
rebuild from the execution cache, into a throw-away folder. The phase pages come from the newest completed runs in
the store (`$MLOPS_NB_RUNS`); if a phase never ran, the build runs the pipeline once first (reported apart).

    python bench/docs_build.py [--workers 2]
"""
from __future__ import annotations
import argparse, shutil, tempfile, time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--workers', type=int, default=2, help='processes executing notebooks (default 2)')
    args = ap.parse_args()
    from mlops_nb.site.docs import build_site, executed_phases
    from mlops_nb.core.runner import discover_phases, run_pipeline
    if len(executed_phases()) < len(discover_phases()):
        t = time.perf_counter()
        run_pipeline(run_id='bench-docs', progress=False, echo=lambda *a: None)
        print(f"pipeline run first (no completed run of every phase): {time.perf_counter() - t:.1f} s")
    tmp = Path(tempfile.mkdtemp(prefix='mlops_nb-bench-docs-'))
    try:
        for label in ('full build', 'cached rebuild'):
            t = time.perf_counter()
            b = build_site(out=tmp/'_docs', work=tmp/'work', run_missing=False, n_workers=args.workers, progress=False)
            secs = time.perf_counter() - t
            size = sum(f.stat().st_size for f in b.out.rglob('*') if f.is_file())
            executed = sum(v.startswith('executed') for v in b.sources.values())
            print(f"{label:<15} {secs:6.1f} s   {len(b.sources)} pages, {executed} notebooks executed, "
                  f"renderer {b.renderer}, site {size / 1e6:.1f} MB", flush=True)
    finally: shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
