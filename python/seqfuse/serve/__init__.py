"""seqfuse.serve: inference on Ray with the native engine. `seqfuse serve` (Ray Serve, dynamic
batching) and `seqfuse predict-batch` (Ray Data). Needs the optional extra: pip install
".[serve]".

Nothing here imports Ray at import time: `import seqfuse` and the core install never need it.
seqfuse.serve.model (loading a model, checking and batching requests) is plain Python;
seqfuse.serve.app and seqfuse.serve.batch import Ray when called. Checked by
tests/test_serve.py.
"""
