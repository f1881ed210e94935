"""Training pipeline of the default vlad model: demonstrations -> future-state-aware
flow matching + language -> a MODEL.md checkpoint. See training/README.md."""
import os

# torch runs its own OpenMP threads (--threads); OpenBLAS, which Debian's torch calls for
# matrix products, must not start a second pool on top: on this 2-core machine 2+2 threads
# made each step 2.4x slower (1.27 s vs 0.52 s at batch 32). Set before torch loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
