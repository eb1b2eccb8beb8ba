"""The routes, one module per family: text-embeddings-inference's (tei.py), OpenAI's (openai_compat.py),
M3-native (native.py) and operations (ops.py). Handlers are module-level functions on APIRouters; what they
share (the context, encode-then-answer) is in common.py."""

from m3rt.serve.routes import native, openai_compat, ops, tei

ROUTERS = (tei.router, openai_compat.router, native.router, ops.router)
