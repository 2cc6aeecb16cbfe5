"""`openblip serve`: an HTTP API over openblip.api, with dynamic micro-batching, an
OpenAI-compatible chat endpoint, quality signals (ITM scores, drift) and a web page.

Data flow::

    request ─► security (API key, body limit) ─► schemas (validate) ─► images (decode, limits)
            ─► batcher (one queue, groups by task + settings, max_batch / max_wait) ─► engine
               (openblip.tasks on one model thread) ─► quality (ITM score, drift, low-score keep)
            ─► JSON response; metrics on every step

FastAPI and uvicorn are imported only here (the `serve` extra): the rest of openblip does not
need them.
"""
