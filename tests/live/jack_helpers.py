"""Live-test helpers on top of `sao_live.testing.jack`: recording again when the recorder lost a
period, and finding a reference clip inside a recording."""

from __future__ import annotations

import numpy as np

from sao_live.testing.jack import Recorder

RECORD_ATTEMPTS = 3


def attempts(recorder: Recorder, n: int = RECORD_ATTEMPTS):
    """Yields attempt numbers; the test records in each and `break`s once `recorder.skipped` finds
    no gap. After `n` gapped recordings the last one is checked anyway (and the test fails)."""
    for i in range(n):
        yield i == n - 1


def best_lag(recorded: np.ndarray, reference: np.ndarray) -> tuple[int, float]:
    """(lag, normalised cross-correlation) of `reference` inside `recorded` (mono sums, by FFT)."""
    a, b = recorded.sum(axis=1), reference.sum(axis=1)
    n = len(a) + len(b)
    corr = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)[: len(a) - len(b) + 1]
    lag = int(np.argmax(corr))
    seg = a[lag : lag + len(b)]
    return lag, float(corr[lag] / (np.linalg.norm(seg) * np.linalg.norm(b) + 1e-12))
