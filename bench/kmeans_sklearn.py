"""scikit-learn's KMeans on the same points as uniroute's k-means (bench/kmeans.ts): one JSON line on stdout.

    python3 bench/kmeans_sklearn.py POINTS.f32 N D K N_INIT SEED [wall|cpu]

POINTS.f32 holds N x D float32 values, row-major. The inertia is recomputed in float64 from the labels and centres,
as bench/kmeans.ts does for uniroute, so the two are computed alike. "cpu" times by the process's CPU clock (for
one-thread runs: bench/kmeans.ts sets OMP_NUM_THREADS=1 and OPENBLAS_NUM_THREADS=1), "wall" (the default) by the
wall clock.
"""
import json
import sys
import time

import numpy as np
from sklearn.cluster import KMeans

path, n, d, k, n_init, seed = sys.argv[1], *map(int, sys.argv[2:7])
clock = time.process_time if len(sys.argv) > 7 and sys.argv[7] == "cpu" else time.perf_counter
X = np.fromfile(path, dtype=np.float32).reshape(n, d)
km = KMeans(n_clusters=k, n_init=n_init, init="k-means++", algorithm="lloyd", random_state=seed)
km.fit(X[:2000])  # warm-up: OpenMP threads and imports, outside the timed run
t0 = clock()
km = KMeans(n_clusters=k, n_init=n_init, init="k-means++", algorithm="lloyd", random_state=seed).fit(X)
seconds = clock() - t0
C = km.cluster_centers_.astype(np.float64)
inertia = float(((X.astype(np.float64) - C[km.labels_]) ** 2).sum())
print(json.dumps({"seconds": seconds, "inertia": inertia, "iterations": int(km.n_iter_)}))
