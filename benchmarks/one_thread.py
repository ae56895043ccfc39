"""Imported first by the benchmarks that run one process per core (``--jobs``): one BLAS, OpenMP and
minitensor thread per process, set before NumPy loads; the repository on ``sys.path``; where figures go."""
import os
import sys

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MINITENSOR_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # MINITENSOR_NUM_THREADS: minitensor/kernels/threads.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
OUT_DIR = os.path.join(ROOT, "benchmarks", "out")
