"""Cost of secure aggregation (fedpipe.secagg): masking one market's vector and unmasking the sum.

    python benchmarks/secagg_timing.py      # writes benchmarks/results/secagg_timing.md

Vector lengths cover the ROI/metric sums (tens of numbers) up to fedavg leaf vectors (10^6 values); the number of
markets sets how many pairwise masks each market draws (n - 1). Medians of 5 runs, measured in one run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from fedpipe.keys import generate_identity, load_identity
from fedpipe.secagg import mask_vector, reveal_seeds, unmask_sum

RESULTS = Path(__file__).resolve().parent / "results" / "secagg_timing.md"
CTX = dict(federation="bench", round=1, label="weights")


def _median(fn, repeat=5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        names = [f"M{i:02d}" for i in range(8)]
        for n in names:
            generate_identity(Path(d), n)
        ids = {n: load_identity(Path(d), n) for n in names}
        for n_markets in (4, 8):
            roster = {n: ids[n].public for n in names[:n_markets]}
            for length in (16, 10_000, 1_000_000):
                values = {n: np.random.default_rng(i).normal(size=length) for i, n in enumerate(roster)}
                plain = lambda: np.sum(list(values.values()), axis=0)  # noqa: E731
                mask = lambda: mask_vector(values[names[0]], me=ids[names[0]], roster=roster, **CTX)  # noqa: E731
                masked = {n: mask_vector(values[n], me=ids[n], roster=roster, **CTX) for n in roster}
                unmask = lambda: unmask_sum(masked, roster=list(roster))  # noqa: E731
                survivors = {n: v for n, v in list(masked.items())[1:]}
                revealed = {n: reveal_seeds(me=ids[n], roster=roster, survivors=list(survivors), **CTX)
                            for n in survivors}
                recover = lambda: unmask_sum(survivors, roster=list(roster), revealed=revealed)  # noqa: E731
                assert np.allclose(unmask(), plain(), atol=n_markets * 2**-16)
                rows.append((n_markets, length, _median(plain), _median(mask), _median(unmask), _median(recover)))
    lines = ["# Secure aggregation timing", "",
             "Median of 5, seconds, on this machine (shared 2 cores). `mask` is one market's work; `unmask` and",
             "`unmask, 1 dropped` are the centre's (the latter removes the dropped market's masks from the survivors').",
             "", "| markets | vector length | plain sum | mask (one market) | unmask sum | unmask, 1 dropped | mask / plain |",
             "|---|---|---|---|---|---|---|"]
    for m, n, p, mk, um, rc in rows:
        lines.append(f"| {m} | {n:,} | {p:.2e} | {mk:.2e} | {um:.2e} | {rc:.2e} | {mk / p:.0f}× |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
